"""The thread count of the BLAS library under numpy, for training processes.

``torch.set_num_threads`` reaches torch's own pool, not the OpenBLAS that numpy brings:
that one starts a thread per core and uses them for products as small as a batch of
eight 128 x 128 matrices, and for ``eigvalsh`` of 32 x 32. The spectrum of the recurrent
weights (:mod:`gradviz.engine.analysis.spectrum`) is computed with numpy, so a training process
that torch keeps on one thread would otherwise take a second core for it: faster in a
benchmark on an idle machine, and, on a busy one (the window's process on the other
core, another run), the contention that made torch's own pool ~40x slower here.

:func:`set_blas_threads` finds the BLAS libraries loaded into this process (Linux: from
``/proc/self/maps``) and calls their own setter. Where none is found (another system, a
numpy without a known BLAS), nothing changes, and it says so by returning 0.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

# The thread-count setters and getters of the BLAS builds numpy ships or links: OpenBLAS
# (numpy's wheels bundle it with a "scipy_" prefix and 64-bit integers), MKL and BLIS.
SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
           "openblas_set_num_threads64_", "openblas_set_num_threads",
           "MKL_Set_Num_Threads", "bli_thread_set_num_threads")
GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
           "openblas_get_num_threads64_", "openblas_get_num_threads",
           "MKL_Get_Max_Threads", "bli_thread_get_num_threads")
_NAMES = ("openblas", "mkl_rt", "libblis", "libblas")


def loaded_blas_libraries(maps: Path = Path("/proc/self/maps")) -> list[str]:
    """Paths of the BLAS libraries mapped into this process; empty where that cannot be
    read (not Linux)."""
    try:
        lines = maps.read_text(errors="replace").splitlines()
    except OSError:
        return []
    paths = {line.split(maxsplit=5)[-1] for line in lines if line.count(" ") >= 5}
    return sorted(p for p in paths
                  if p.startswith("/") and any(n in Path(p).name.lower() for n in _NAMES))


def _first(lib: ctypes.CDLL, names: tuple[str, ...]):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def set_blas_threads(n: int) -> int:
    """Let every loaded BLAS use ``n`` threads; how many libraries took the setting."""
    __import__("numpy")           # its BLAS must be loaded to be found
    done = 0
    for path in loaded_blas_libraries():
        try:
            lib = ctypes.CDLL(path)     # already loaded: this only finds its symbols
        except OSError:
            continue
        setter = _first(lib, SETTERS)
        if setter is not None:
            setter.argtypes, setter.restype = [ctypes.c_int], None
            setter(int(n))
            done += 1
    return done


def blas_threads() -> list[int]:
    """The thread count each loaded BLAS reports (for the tests)."""
    counts = []
    for path in loaded_blas_libraries():
        try:
            getter = _first(ctypes.CDLL(path), GETTERS)
        except OSError:
            continue
        if getter is not None:
            getter.restype = ctypes.c_int
            counts.append(int(getter()))
    return counts


__all__ = ["set_blas_threads", "blas_threads", "loaded_blas_libraries"]
