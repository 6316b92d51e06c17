"""The app on a run, from Python: :func:`show` starts ``python -m gradviz open RUN`` in a
process of its own and returns at once (a notebook goes on running); :func:`open_command`
is that command's side, which checks the run before any window opens.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gradviz.engine.runs.runformat import RunFileError


def show(run_or_history, *, config=None) -> subprocess.Popen:
    """Open the app on ``run_or_history``: a run folder (or its run.json), or a Session,
    Watch, SavedRun or History (with ``config``), which is first saved to a new temporary
    folder. Returns the app's process; a run that cannot be read raises RunFileError here,
    before anything starts.

    The app gets none of the caller's standard streams: its output goes to a log file
    (``show.log`` in the temporary run folder, or a ``gradviz-show-*.log`` in the temporary
    directory), so ``python script.py | tail`` and a notebook are not held while it is
    open; when it closes, what show() made in the temporary directory is removed (the log
    is kept if the app wrote to it)."""
    from gradviz.engine.runs.runfile import check_run

    made = None
    if isinstance(run_or_history, (str, os.PathLike)):
        path = Path(run_or_history)
        check_run(path)
        fd, log = tempfile.mkstemp(prefix="gradviz-show-", suffix=".log")
        os.close(fd)
    else:
        from gradviz.api.runs import save_run
        made = tempfile.mkdtemp(prefix="gradviz-show-")
        try:
            path = save_run(run_or_history, made, config=config)
            check_run(path)
        except BaseException:
            shutil.rmtree(made, ignore_errors=True)
            raise
        log = os.path.join(made, "show.log")
    args = [sys.executable, "-m", "gradviz.api.showchild", str(path), log]
    if made is not None:
        args += ["--remove", made]
    with open(log, "ab") as out:
        # A session of its own: the app outlives an interrupted notebook cell or script.
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True)


def open_command(args: list[str]) -> int:
    """``gradviz open RUN``: the app on the run in RUN; exit status 2, with one line, if
    RUN is not given or not a readable run."""
    if len(args) != 1 or args[0].startswith("-"):
        print("gradviz open: give one run folder (or its run.json): gradviz open runs/demo",
              file=sys.stderr)
        return 2
    from gradviz.engine.runs.runfile import check_run

    try:
        check_run(args[0])
    except RunFileError as exc:
        print(f"gradviz open: {exc}", file=sys.stderr)
        return 2
    from gradviz.ui.app import run_app

    return run_app(run=args[0])


__all__ = ["show", "open_command"]
