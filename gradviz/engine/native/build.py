"""Compiling ``_native.c`` into the cache folder, loading the result, pruning old builds.

A build is named after everything it depends on — the source, the compiler, its flags,
the platform and the CPU (``-march=native``) — so a cached library is reused only where
it was built for, and never half-written: the compiler writes a temporary file beside
the target, which is renamed into place (:func:`gradviz.engine.runs.files.write_atomic`;
another process may be building the same library at the same time). It is flushed to disk
before the rename, and a record of its size and SHA-256 written beside it after; a build
is loaded only when it matches its record, so a library cut short (a power loss between
the write and the rename of an unflushed file) is rebuilt, never mapped (SIGBUS).

Loading a library runs its code, so a build is loaded only from a folder of this user's
that no one else may enter (mode 0700: :func:`cache_dir`), and only if it is a regular
file of this user's that no one else may write (:func:`distrust`). The cache's file names
can be computed by anyone; a folder planted at the fallback path in the temporary
directory, or a symbolic link there, is refused, and a build others could have written
is rebuilt.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from gradviz.engine.runs.files import write_atomic, write_bytes_atomic

SOURCE = Path(__file__).with_name("_native.c")
# Tried in turn: the first that builds is used.
FLAG_SETS = (["-O3", "-march=native", "-fno-math-errno"], ["-O3", "-fno-math-errno"], ["-O2"])
# Builds of other sources (older gradviz versions) unused this long are removed.
PRUNE_AFTER_S = 30 * 24 * 3600


def find_compiler() -> str | None:
    """$CC, else the first of cc, gcc and clang on the PATH."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def cache_dir() -> tuple[Path | None, list[str]]:
    """The folder to build in and notes on what was refused or repaired on the way.

    ~/.cache/gradviz (or $XDG_CACHE_HOME/gradviz); where that cannot be used (a read-only
    home), gradviz-cache-<uid> in the temporary directory. Either is used only as a folder
    of this user's that no one else may enter (:func:`_make_private`); None where neither
    is one, and the notes say why.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    notes: list[str] = []
    for folder, parents in ((Path(base) / "gradviz", True),
                            (Path(tempfile.gettempdir()) / f"gradviz-cache-{user}", False)):
        problem = _make_private(folder, parents, notes)
        if problem is None:
            return folder, notes
        notes.append(problem)
    return None, notes


def _make_private(folder: Path, parents: bool, notes: list[str]) -> str | None:
    """Create ``folder`` (mode 0700) or check the one there; None if it is now a real folder
    (not a symbolic link) of this user's with mode 0700, else why not.

    One that belongs to this user but was open to others is made private, and the builds in
    it are removed: anyone could have put a file there, or renamed an old build to the name
    of the current one. The checks are made on the opened folder, so that nothing can be
    swapped in between; afterwards no one else can rename or replace it (the temporary
    directory has the sticky bit, and the home is the user's).
    """
    try:
        if parents:
            folder.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        return f"cannot create {folder} ({exc.strerror or exc})"
    if not hasattr(os, "getuid"):          # Windows: a per-user temporary folder, no modes
        return None if os.access(folder, os.W_OK | os.X_OK) else f"cannot write to {folder}"
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        if os.path.islink(folder):
            return f"{folder} is a symbolic link, not a folder of yours"
        return f"cannot open {folder} ({exc.strerror or exc})"
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            return f"{folder} belongs to uid {st.st_uid}, not to you"
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o700)
            for old in folder.glob("native-*"):
                old.unlink()
            notes.append(f"{folder} was open to others (mode {st.st_mode & 0o777:o}): made "
                         "private, its builds removed")
    except OSError as exc:
        return f"cannot make {folder} private ({exc.strerror or exc})"
    finally:
        os.close(fd)
    return None if os.access(folder, os.W_OK | os.X_OK) else f"cannot write to {folder}"


def distrust(target: Path) -> str | None:
    """Why the file at ``target`` must not be loaded, or None if it is a regular file of
    this user's that no one else may write (or if there is none)."""
    try:
        return _distrust(os.lstat(target))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot check it ({exc.strerror or exc})"


def _distrust(st: os.stat_result) -> str | None:
    """:func:`distrust` of a file with the status ``st``."""
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    if not hasattr(os, "getuid"):
        return None
    if st.st_uid != os.getuid():
        return f"it belongs to uid {st.st_uid}, not to you"
    if st.st_mode & 0o022:
        return f"others may write it (mode {st.st_mode & 0o777:o})"
    return None


def _cpu_signature() -> str:
    """What -march=native depends on: a cached build must not move to another CPU."""
    sig = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features", "model name")):
                    sig += line
    except OSError:
        sig += platform.processor()
    return sig


def library_name(source: bytes, compiler: str, flags: list[str]) -> str:
    """The file name of the build of ``source`` with ``compiler`` and ``flags``."""
    key = hashlib.sha256(source + repr((compiler, flags, sys.platform)).encode()
                         + _cpu_signature().encode()).hexdigest()[:16]
    suffix = ".dll" if sys.platform == "win32" else ".so"
    return f"native-{key}{suffix}"


class _CompileError(Exception):
    """The compiler could not run or refused the source; the message says which."""


def compile_into(compiler: str, flags: list[str], target: Path) -> str | None:
    """Compile into ``target``; None, or what went wrong."""
    def write(temp: str) -> None:
        name = Path(compiler).name
        # libm for sqrt, where the flags do not let the compiler inline it.
        cmd = [compiler, *flags, "-shared", "-fPIC", "-o", temp, str(SOURCE), "-lm"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            raise _CompileError(f"{name} could not run: {exc}") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise _CompileError(f"{name} exited with {done.returncode}: {last}")
        # The linker makes its output anew with the umask's mode (0775 under umask 002):
        # a library that others may write would not be loaded (distrust).
        os.chmod(temp, 0o700)

    try:
        # On disk before the rename, and its record after it: a crash or power loss on the
        # way leaves no library, or a library whose record is missing or does not match
        # (rebuilt on the next load), never a cut one that would be loaded.
        write_atomic(target, write, durable=True)
        with open(target, "rb") as built:
            size, digest = _digest(built)
        write_bytes_atomic(record_path(target),
                           json.dumps({"size": size, "sha256": digest}).encode(), mode=0o600)
    except _CompileError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot write to {target.parent}: {exc.strerror or exc}"
    return None


def record_path(target: Path) -> Path:
    """Where the record of the build at ``target`` (its size and SHA-256) is kept."""
    return target.with_name(target.name + ".record")


def _digest(f) -> tuple[int, str]:
    """(size, SHA-256 hex) of the open binary file ``f``, read from its start."""
    f.seek(0)
    h, size = hashlib.sha256(), 0
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
        size += len(block)
    return size, h.hexdigest()


class DamagedLibrary(OSError):
    """A build whose record is missing or does not match it (cut short, say); ``reason``
    says which."""

    def __init__(self, target: Path, reason: str):
        super().__init__(f"{target}: {reason}")
        self.reason = reason


def _check_record(target: Path, f) -> str:
    """The SHA-256 of the open build ``f`` at ``target``; DamagedLibrary unless it is the
    size and SHA-256 its record says. A cut library would otherwise be mapped and crash the
    process with SIGBUS inside ctypes.CDLL."""
    try:
        fd = os.open(record_path(target), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as rec:
            record = json.loads(rec.read(4096).decode("ascii"))
        want = (int(record["size"]), str(record["sha256"]))
    except FileNotFoundError:
        raise DamagedLibrary(target, "it has no record of a whole build") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise DamagedLibrary(target, "its record is damaged") from None
    size, digest = _digest(f)
    if size != want[0]:
        raise DamagedLibrary(target, f"it is {size} bytes, its build wrote {want[0]}")
    if digest != want[1]:
        raise DamagedLibrary(target, "its contents differ from its build's")
    return digest


class UntrustedLibrary(OSError):
    """A file at a library's path that :func:`distrust` refuses."""


def load_library(target: Path) -> ctypes.CDLL:
    """The library at ``target``: :func:`load_hashed` without the hash."""
    return load_hashed(target)[0]


def load_hashed(target: Path) -> tuple[ctypes.CDLL, str]:
    """The library at ``target`` and the SHA-256 of its file, read as it was checked just
    before loading; OSError where it cannot be loaded, UntrustedLibrary where
    it is not a regular file of this user's that only this user may write, DamagedLibrary
    where it is not the whole build its record describes.

    The file is checked as opened (O_NOFOLLOW: not through a symbolic link) and then loaded
    by its path, which only this user can change: its folder is private
    (:func:`cache_dir`)."""
    fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        problem = _distrust(os.fstat(fd))
        if problem:
            raise UntrustedLibrary(f"{target}: {problem}")
        digest = _check_record(target, f)
    return ctypes.CDLL(str(target)), digest


def prune(in_use: Path) -> None:
    """Mark ``in_use`` as used now and remove the cache's builds unused for PRUNE_AFTER_S."""
    try:
        os.utime(in_use)
        os.utime(record_path(in_use))
        cutoff = in_use.stat().st_mtime - PRUNE_AFTER_S
        for old in in_use.parent.glob("native-*"):
            # The build in use, its record and its self-check's result stay.
            if not old.name.startswith(in_use.name) and old.stat().st_mtime < cutoff:
                old.unlink()
    except OSError:
        pass           # a read-only or shared cache: leave it as it is
