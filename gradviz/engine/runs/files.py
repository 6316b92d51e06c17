"""Writing files atomically, and opening only regular files for reading.

:func:`write_atomic` is the one temp-file-and-rename that run files, exports and the
compiled-library cache all use. A write goes to a temporary file in the destination
folder (same file system, so the rename is atomic), is flushed to disk, given the mode a
plain ``open()`` would have given it, and renamed over the target. If anything fails the
temporary file is removed and the target is left exactly as it was; the error propagates
unchanged (an :class:`OSError` keeps its ``strerror``, which callers put in their own
message).

:func:`open_regular` is how every file a user names is opened for reading (run files, the
text task's text): a FIFO, a device such as /dev/zero or a socket, or a symbolic link to
one, would make a reader wait forever or read without end, so it is refused, before any
byte is read, with :class:`NotRegularFileError`.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator


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


def replace_together(pairs: list[tuple[str, Path]],
                     on_abort: Callable[[], None] | None = None) -> None:
    """Rename each (temporary file, target) into place, in order. Renames are not one
    atomic step: each old target but the last keeps a second name (a hard link) until the
    last is in place, so that a failure on the way puts the old files back (``on_abort`` is
    called first). The last target (a run's run.json, which names the others) is the one
    that commits; :func:`gradviz.engine.runs.runsave.commit` makes a kill on the way safe."""
    with ExitStack() as stack:
        kept = []
        for _, target in pairs[:-1]:
            aside = stack.enter_context(temp_beside(target))
            kept.append((aside, target, _link(target, aside)))
        done: list[Path] = []
        try:
            for temp, target in pairs:
                os.replace(temp, target)
                done.append(target)
        except BaseException:
            if on_abort is not None:
                on_abort()
            for aside, target, linked in kept:
                if linked and target in done:
                    os.replace(aside, target)
            raise


def _link(path: Path, aside: str) -> bool:
    """Give ``path`` the second name ``aside``, a temporary file's; False if ``path`` does
    not exist or the file system has no hard links."""
    if not path.exists():
        return False
    os.remove(aside)
    try:
        os.link(path, aside)
    except OSError:
        return False
    return True


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


class NotRegularFileError(OSError):
    """A path names something other than a regular file; ``strerror`` says what it is:
    "not a regular file (a FIFO)"."""


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def open_regular(path: str | os.PathLike) -> tuple[BinaryIO, int]:
    """``path`` opened for binary reading, and its size, if it is a regular file (a symbolic
    link is followed to one); :class:`NotRegularFileError` if it is not, other OSErrors as
    ``open`` raises them.

    The file is opened without waiting (O_NONBLOCK: opening a FIFO would wait for a writer)
    and its kind is checked on the open descriptor, so nothing can be swapped in between.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((word for test, word in _KINDS if test(st.st_mode)), "not a file")
            raise NotRegularFileError(errno.EINVAL, f"not a regular file ({kind})", str(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_head(path: str | os.PathLike, max_bytes: int) -> tuple[bytes, bool, int]:
    """The first ``max_bytes`` of the regular file at ``path``, whether it holds more, and
    its size when opened; errors as :func:`open_regular` raises them. Never reads more than
    ``max_bytes + 1`` bytes."""
    handle, size = open_regular(path)
    with handle:
        data = handle.read(max_bytes)
        return data, bool(handle.read(1)), size


__all__ = ["new_file_mode", "temp_beside", "replace_together", "write_atomic", "write_bytes_atomic",
           "NotRegularFileError", "open_regular", "read_head"]
