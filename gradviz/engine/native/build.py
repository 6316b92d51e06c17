"""Compiling ``_native.c`` into the cache folder, loading the result, pruning old builds.

A build is named after everything it depends on — the source, the compiler, its flags,
the platform and the CPU (``-march=native``) — so a cached library is reused only where
it was built for, and never half-written: the compiler writes a temporary file beside
the target, which is renamed into place (:func:`gradviz.engine.files.write_atomic`;
another process may be building the same library at the same time).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gradviz.engine.files import write_atomic

SOURCE = Path(__file__).with_name("_native.c")
# Tried in turn: the first that builds is used.
FLAG_SETS = (["-O3", "-march=native", "-fno-math-errno"], ["-O3", "-fno-math-errno"], ["-O2"])
# Builds of other sources (older gradviz versions) unused this long are removed.
PRUNE_AFTER_S = 30 * 24 * 3600


def find_compiler() -> str | None:
    """$CC, else the first of cc, gcc and clang on the PATH."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def cache_dir() -> Path:
    """~/.cache/gradviz (or $XDG_CACHE_HOME/gradviz); where that cannot be written (a
    read-only home), a folder of this user's in the temporary directory."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    for folder in (Path(base) / "gradviz", Path(tempfile.gettempdir()) / f"gradviz-cache-{user}"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK | os.X_OK):
            return folder
    return Path(base) / "gradviz"          # the build then reports why it cannot write


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


def target_for(source: bytes, compiler: str, flags: list[str]) -> Path:
    """Where the build of ``source`` with ``compiler`` and ``flags`` is cached."""
    key = hashlib.sha256(source + repr((compiler, flags, sys.platform)).encode()
                         + _cpu_signature().encode()).hexdigest()[:16]
    suffix = ".dll" if sys.platform == "win32" else ".so"
    return cache_dir() / f"native-{key}{suffix}"


class _CompileError(Exception):
    """The compiler could not run or refused the source; the message says which."""


def compile_into(compiler: str, flags: list[str], target: Path) -> str | None:
    """Compile into ``target``; None, or what went wrong."""
    def write(temp: str) -> None:
        name = Path(compiler).name
        cmd = [compiler, *flags, "-shared", "-fPIC", "-o", temp, str(SOURCE)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            raise _CompileError(f"{name} could not run: {exc}") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise _CompileError(f"{name} exited with {done.returncode}: {last}")

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A cache that can be rebuilt: no fsync.
        write_atomic(target, write, durable=False)
    except _CompileError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot write to {target.parent}: {exc.strerror or exc}"
    return None


def load_library(target: Path) -> ctypes.CDLL:
    """The library at ``target``; OSError where it cannot be loaded."""
    return ctypes.CDLL(str(target))


def prune(in_use: Path) -> None:
    """Mark ``in_use`` as used now and remove the cache's builds unused for PRUNE_AFTER_S."""
    try:
        os.utime(in_use)
        cutoff = in_use.stat().st_mtime - PRUNE_AFTER_S
        for old in in_use.parent.glob("native-*"):
            if old != in_use and old.stat().st_mtime < cutoff:
                old.unlink()
    except OSError:
        pass           # a read-only or shared cache: leave it as it is
