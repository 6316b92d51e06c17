"""The compiled loops' self-check passed once per build, not once per launch.

The self-check (:mod:`~gradviz.engine.native.selfcheck`) runs when a build is first loaded;
a pass is written beside the build, in the private cache folder
(:func:`~gradviz.engine.native.build.cache_dir`), as ``<library>.selfcheck``. A later
load skips the check only where that file names

* the SHA-256 of the library's file, as read just before loading it
  (:func:`~gradviz.engine.native.build.load_hashed`: every load hashes the whole file,
  so a library changed or cut short since, even one whose record was changed to match,
  is checked again, or refused when it no longer matches its record), and
* a key of the check itself: the sources of the self-check, of the equations it compares
  with, of the registry's gate ranges and of the typed entry points, and the PyTorch
  version that computes the expected numbers. A new gradviz or PyTorch checks again.

A failed check is never kept: it runs again at the next load. The file is written
atomically, readable by this user only, and read only if it is a regular file of this
user's that no one else may write, as the library itself.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from gradviz.engine.native.build import _distrust
from gradviz.engine.runs.files import write_bytes_atomic

SUFFIX = ".selfcheck"
_key: str | None = None


def result_path(target: Path) -> Path:
    """Where the self-check's pass of the build at ``target`` is kept."""
    return target.with_name(target.name + SUFFIX)


def check_key() -> str:
    """The SHA-256 of what the self-check's verdict depends on besides the library."""
    global _key
    if _key is None:
        import torch

        from gradviz import registry
        from gradviz.engine.model import reference

        here = Path(__file__)
        h = hashlib.sha256(torch.__version__.encode())
        for path in (here.with_name("selfcheck.py"), reference.__file__, registry.__file__,
                     here.with_name("__init__.py")):
            h.update(Path(path).read_bytes())
        _key = h.hexdigest()
    return _key


def _record(digest: str) -> dict:
    return {"library_sha256": digest, "check": check_key(), "passed": True}


def passed_before(target: Path, digest: str) -> bool:
    """Whether the build at ``target``, whose file has the SHA-256 ``digest`` now, passed
    the self-check as it is now (see the module's doc)."""
    try:
        fd = os.open(result_path(target), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            if _distrust(os.fstat(fd)):
                return False
            return json.loads(f.read(4096).decode("ascii")) == _record(digest)
    except (OSError, ValueError):
        return False


def remember_pass(target: Path, digest: str) -> None:
    """Keep that the build at ``target`` with the SHA-256 ``digest`` passed; a cache that
    cannot be written only means the check runs again next time."""
    try:
        write_bytes_atomic(result_path(target), json.dumps(_record(digest)).encode(),
                           mode=0o600)
    except OSError:
        pass


__all__ = ["SUFFIX", "result_path", "check_key", "passed_before", "remember_pass"]
