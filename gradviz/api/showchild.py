"""The process :func:`gradviz.show` starts: ``python -m gradviz.api.showchild RUN LOG
[--remove FOLDER]`` opens the app on RUN, its output going to the file LOG (show() gives
it that file as stdout and stderr, never the caller's streams, so a piped script or a
notebook is not held), and on leaving removes what show() made in the temporary folder:
FOLDER (the run it saved there), and LOG if nothing was written to it.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--remove"):
        print("usage: python -m gradviz.api.showchild RUN LOG [--remove FOLDER]",
              file=sys.stderr)
        return 2
    run, log = argv[0], argv[1]
    # SIGTERM before the app's own handler is in place still cleans up (finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        from gradviz.api.show import open_command
        return open_command([run])
    finally:
        if len(argv) == 4:
            shutil.rmtree(argv[3], ignore_errors=True)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            if os.path.getsize(log) == 0:
                os.unlink(log)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
