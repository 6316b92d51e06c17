"""Writing files atomically: the one temp-file-and-rename that run files, exports and the
compiled-library cache all use.

A write goes to a temporary file in the destination folder (same file system, so the
rename is atomic), is flushed to disk, given the mode a plain ``open()`` would have
given it, and renamed over the target. If anything fails the temporary file is removed
and the target is left exactly as it was; the error propagates unchanged (an
:class:`OSError` keeps its ``strerror``, which callers put in their own message).
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def new_file_mode(target: Path) -> int:
    """The mode ``target`` has, or the one a new file gets under the current umask."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def temp_beside(target: str | os.PathLike, mode: int | None = None) -> Iterator[str]:
    """A temporary file's path in ``target``'s folder, removed on leaving unless it was
    renamed. ``mode``: what to chmod it to (default: :func:`new_file_mode`)."""
    target = Path(target)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(temp, new_file_mode(target) if mode is None else mode)
        yield temp
    finally:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, write: Callable[[str], None], *,
                 mode: int | None = None, durable: bool = True) -> Path:
    """Call ``write(temp_path)`` for a temporary file beside ``path``, then rename it to
    ``path``. ``durable``: fsync the file before the rename (what a document needs; a
    cache that can be rebuilt may skip it)."""
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(21, "a folder of that name is in the way", str(target))
    with temp_beside(target, mode) as temp:
        write(temp)
        if durable:
            _fsync(temp)
        os.replace(temp, target)
    return target


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> Path:
    def write(temp: str) -> None:
        with open(temp, "wb") as fh:
            fh.write(data)
    return write_atomic(path, write, mode=mode)


__all__ = ["new_file_mode", "temp_beside", "write_atomic", "write_bytes_atomic"]
