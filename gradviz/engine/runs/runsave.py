"""A run folder changes as a unit, and one writer at a time.

A save writes its files (state.npz, capture.npz, run.json) to temporary files beside them,
each flushed to disk and marked with the save's *generation* (a random name, also in
run.json). Then :func:`commit` writes a journal, ``.gradviz-save.json``, naming each
temporary file and its target, renames them into place, run.json last, and removes the
journal. A save killed before the journal is complete leaves the old run whole (its
temporary files are leftovers); one killed after it leaves a journal, and the next open or
save of the folder (:func:`recover`) finishes the renames. Either way the folder holds one
complete run, and :func:`recover` removes the leftover temporary files (about 33 MB each
for a large run). A reader that still finds files of two generations (a copy made by
hand) is told so (:mod:`gradviz.engine.runs.runfile`).

:func:`folder_lock` holds an exclusive lock (``flock``) on the folder itself while a
process writes it: a second writer waits up to ``wait_s`` and then gets
:class:`RunFolderBusy`, one line; the lock goes with the process that held it, however it
ends. Within one process the lock is re-entrant. Where ``flock`` does not exist (Windows),
or the folder cannot be opened for reading, there is no lock.
"""
from __future__ import annotations

import errno
import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from gradviz.engine.runs.runformat import RunFileError

try:
    import fcntl
except ImportError:           # pragma: no cover - Windows
    fcntl = None

JOURNAL = ".gradviz-save.json"
_RUN_FILES = ("run.json", "capture.npz", "state.npz", JOURNAL)
# temp_beside's names: ".<target>.<random>.tmp"
_LEFTOVER = re.compile(r"^\.(%s)\.[A-Za-z0-9_]+\.tmp$" % "|".join(re.escape(n) for n in _RUN_FILES))
_held: dict[tuple[int, int], tuple[int, int]] = {}     # (dev, inode): (fd, depth)
_POLL_S = 0.05


class RunFolderBusy(OSError):
    """Another process is writing the run folder; ``strerror`` says so."""


def new_generation() -> str:
    return os.urandom(8).hex()


@contextmanager
def folder_lock(folder: str | os.PathLike, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the exclusive lock of the existing ``folder`` (re-entrant in this process);
    :class:`RunFolderBusy` if another process holds it for ``wait_s`` seconds."""
    try:
        fd = -1 if fcntl is None else os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except PermissionError:        # a folder one may write but not read: no lock to be had
        fd = -1
    if fd < 0:
        yield
        return
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    if key in _held:
        os.close(fd)
        held_fd, depth = _held[key]
        _held[key] = (held_fd, depth + 1)
    else:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)     # a file system without locks: go on without
                    fd = -1
                    break
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise RunFolderBusy(errno.EBUSY, "another gradviz process is writing this "
                                        "run folder; wait for it to finish, or choose another "
                                        "folder", str(folder)) from None
                time.sleep(_POLL_S)
        _held[key] = (fd, 1)
    try:
        yield
    finally:
        held_fd, depth = _held[key]
        if depth > 1:
            _held[key] = (held_fd, depth - 1)
        else:
            del _held[key]
            if held_fd >= 0:
                os.close(held_fd)          # releases the lock


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass                               # some file systems cannot sync a folder
    finally:
        os.close(fd)


def commit(folder: Path, pairs: list[tuple[str, Path]], replace) -> None:
    """Rename each (temporary file, target) of ``folder`` into place with ``replace``
    (:func:`gradviz.engine.runs.files.replace_together`, given ``on_abort``), as one unit:
    a journal names them first, so that a kill on the way is finished by :func:`recover`."""
    from gradviz.engine.runs.files import write_bytes_atomic

    journal = folder / JOURNAL
    names = [[Path(temp).name, Path(target).name] for temp, target in pairs]
    write_bytes_atomic(journal, json.dumps({"rename": names}).encode())
    _fsync_folder(folder)

    def abort() -> None:           # before the old files go back: nothing to finish then
        journal.unlink(missing_ok=True)
        _fsync_folder(folder)

    replace(pairs, on_abort=abort)
    journal.unlink(missing_ok=True)
    _fsync_folder(folder)


def recover(folder: str | os.PathLike) -> None:
    """Finish the renames of a save that was killed after its journal was written, and
    remove the temporary files of killed saves, if no other process is writing ``folder``
    (else, and where the folder cannot be written, leave it as it is)."""
    folder = Path(folder)
    try:
        with folder_lock(folder):
            _finish(folder)
            for entry in os.scandir(folder):
                if _LEFTOVER.match(entry.name) and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
    except OSError:
        return


def same_save(path: Path, want: str | None, got: str | None) -> None:
    """RunFileError unless the file ``path``, of the save ``got``, is of the save run.json
    names (``want``; a run.json from before saves were named accepts any)."""
    if want is not None and got != want:
        raise RunFileError(f"{path}: from another save than the run.json beside it (the folder "
                           "holds parts of two runs, e.g. files copied in by hand); save the "
                           "run again, or put back the files of one save")


def _finish(folder: Path) -> None:
    journal = folder / JOURNAL
    try:
        with open(journal, "rb") as fh:
            doc = json.loads(fh.read(65536))
        pairs = [(str(a), str(b)) for a, b in doc["rename"]]
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError):
        pairs = []                   # a journal that is not whole was never acted on
    for temp, target in pairs:
        if not (_LEFTOVER.match(temp) and target in _RUN_FILES and "/" not in temp + target):
            continue                 # only names a save writes
        if (folder / temp).is_file():
            os.replace(folder / temp, folder / target)
    journal.unlink(missing_ok=True)
    _fsync_folder(folder)


__all__ = ["JOURNAL", "RunFolderBusy", "folder_lock", "commit", "recover", "new_generation",
           "same_save"]
