"""The compiled LSTM loops of ``_native.c``: built on first use, cached, optional.

PyTorch dispatches each small per-timestep operation separately, and for a small LSTM the
dispatch costs more than the arithmetic. ``_native.c`` runs the two loops that cannot be
batched over time in one call each. It is compiled with the system's C compiler the first
time an LSTM runs and cached in ``~/.cache/gradviz`` (or ``$XDG_CACHE_HOME/gradviz``).

It is optional. Without a C compiler, when the build fails, when the result fails its
self-check, or with ``GRADVIZ_NATIVE=0`` in the environment, :func:`kernels` returns None
and the cells use their PyTorch code, which computes the same numbers; :func:`status` says
which path is in use and why.
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
import threading
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("_native.c")
_FLAG_SETS = (["-O3", "-march=native", "-fno-math-errno"], ["-O3", "-fno-math-errno"], ["-O2"])

_lock = threading.Lock()
_loaded = False
_kernels: "Kernels | None" = None
_status = "not built yet"


class Kernels:
    """Typed entry points of the loaded library, one pair per dtype."""

    def __init__(self, lib: ctypes.CDLL):
        p, i = ctypes.c_void_p, ctypes.c_int
        self._fwd, self._bwd = {}, {}
        for dtype, suffix in ((torch.float32, "f32"), (torch.float64, "f64")):
            fwd = getattr(lib, f"lstm_cell_forward_{suffix}")
            fwd.argtypes = [i, i, i, p, p, p, i, p, p, p]
            fwd.restype = None
            bwd = getattr(lib, f"lstm_cell_backward_{suffix}")
            bwd.argtypes = [i, i, i, p, p, p, p, p, p, i, p, p, p, p]
            bwd.restype = None
            self._fwd[dtype], self._bwd[dtype] = fwd, bwd

    def supports(self, t: torch.Tensor) -> bool:
        return t.device.type == "cpu" and t.dtype in self._fwd

    def lstm_forward(self, acts, c_init, c, rows=0, mean=None, low=None, high=None) -> None:
        """In place on ``acts`` (n, B, 4, H), g on the sigmoid scale: see _native.c."""
        n, B, _, H = acts.shape
        _check(acts, c_init, c, mean, low, high)
        ptr = _ptr
        self._fwd[acts.dtype](n, B, H, ptr(acts), ptr(c_init), ptr(c), rows,
                              ptr(mean), ptr(low), ptr(high))

    def lstm_backward(self, acts, c, c0, tanh_c, dout, w_hh, tbptt, dh, dc, dz, carry) -> None:
        T, B, _, H = acts.shape
        _check(acts, c, c0, tanh_c, dout, w_hh, dh, dc, dz, carry)
        ptr = _ptr
        self._bwd[acts.dtype](T, B, H, ptr(acts), ptr(c), ptr(c0), ptr(tanh_c), ptr(dout),
                              ptr(w_hh), tbptt, ptr(dh), ptr(dc), ptr(dz), ptr(carry))


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _check(first: torch.Tensor, *rest: torch.Tensor | None) -> None:
    # The C code trusts its pointers: wrong layouts must never reach it.
    for t in (first, *rest):
        if t is not None and (not t.is_contiguous() or t.dtype != first.dtype
                              or t.device.type != "cpu"):
            raise ValueError("native LSTM kernels need contiguous CPU tensors of one dtype")


def kernels() -> Kernels | None:
    """The compiled kernels, building them on first use; None where they cannot be had."""
    global _loaded, _kernels, _status
    if _loaded:
        return _kernels
    with _lock:
        if not _loaded:
            _kernels, _status = _load()
            _loaded = True
    return _kernels


def status() -> str:
    """One line: whether the compiled kernels are in use, and if not, why."""
    kernels()
    return _status


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gradviz"


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


def _load() -> tuple[Kernels | None, str]:
    if os.environ.get("GRADVIZ_NATIVE", "1") == "0":
        return None, "compiled LSTM kernels off (GRADVIZ_NATIVE=0); using PyTorch operations"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        return None, "no C compiler found (set CC or install gcc); using PyTorch operations"
    try:
        source = _SOURCE.read_bytes()
    except OSError as exc:
        return None, f"cannot read {_SOURCE.name}: {exc.strerror}; using PyTorch operations"
    suffix = ".dll" if sys.platform == "win32" else ".so"
    errors = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256(source + repr((compiler, flags, sys.platform)).encode()
                             + _cpu_signature().encode()).hexdigest()[:16]
        target = _cache_dir() / f"native-{key}{suffix}"
        if not target.exists():
            error = _build(compiler, flags, target)
            if error:
                errors.append(error)
                continue
        try:
            found = Kernels(ctypes.CDLL(str(target)))
        except (OSError, AttributeError) as exc:
            errors.append(f"cannot load {target}: {exc}")
            continue
        problem = _self_check(found)
        if problem:
            return None, f"compiled kernels failed their self-check ({problem}); using PyTorch operations"
        return found, f"compiled LSTM kernels in use ({' '.join(flags)}, {target})"
    return None, f"building the LSTM kernels failed ({errors[-1]}); using PyTorch operations"


def _build(compiler: str, flags: list[str], target: Path) -> str | None:
    """Compile into ``target`` atomically (another process may be building it too)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=target.suffix, dir=target.parent)
        os.close(fd)
    except OSError as exc:
        return f"cannot write to {target.parent}: {exc.strerror}"
    cmd = [compiler, *flags, "-shared", "-fPIC", "-o", tmp, str(_SOURCE)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            return f"{Path(compiler).name} exited with {done.returncode}: {last}"
        os.replace(tmp, target)
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{Path(compiler).name} could not run: {exc}"
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _self_check(k: Kernels) -> str | None:
    """Run both kernels on a small odd-sized case against the same formulas in PyTorch."""
    gen = torch.Generator().manual_seed(0)
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        T, B, H = 3, 5, 19          # 19: both the vector blocks and the leftover columns
        acts = torch.rand((T, B, 4, H), generator=gen, dtype=dtype)
        c0 = torch.randn((B, H), generator=gen, dtype=dtype)
        i, f, s, o = acts.unbind(2)
        g = 2 * s - 1
        c_ref, cp = [], c0
        for t in range(T):
            cp = f[t] * cp + i[t] * g[t]
            c_ref.append(cp)
        c_ref = torch.stack(c_ref)
        c = torch.empty_like(c_ref)
        got = acts.clone()
        mean = acts.new_empty((T, 4, H))
        low, high = acts.new_empty((T, 4)), acts.new_empty((T, 4))
        k.lstm_forward(got, c0, c, B - 1, mean, low, high)
        ref_acts = torch.stack([i, f, g, o], 2)
        if not (torch.allclose(c, c_ref, rtol=tol, atol=tol)
                and torch.allclose(got, ref_acts, rtol=tol, atol=tol)
                and torch.allclose(mean, ref_acts[:, :B - 1].mean(1), rtol=tol, atol=tol)
                and torch.equal(low, (acts[:, :B - 1] < 0.1).to(dtype).mean((1, 3)))
                and torch.equal(high, (acts[:, :B - 1] > 0.9).to(dtype).mean((1, 3)))):
            return f"forward, {dtype}"
        w = torch.randn((4 * H, H), generator=gen, dtype=dtype)
        dout = torch.randn((T, B, H), generator=gen, dtype=dtype)
        tanh_c = torch.tanh(c)
        dh, dc = torch.empty_like(dout), torch.empty_like(dout)
        dz = acts.new_empty((T, B, 4 * H))
        k.lstm_backward(got, c, c0, tanh_c, dout, w, 0, dh, dc, dz, torch.empty_like(c0))
        i, f, g, o = got.unbind(2)
        c_prev = torch.cat([c0[None], c[:-1]])
        nz, ndc = None, None
        for t in range(T - 1, -1, -1):
            dh_t = dout[t] if nz is None else dout[t] + nz @ w
            dc_t = dh_t * o[t] * (1 - tanh_c[t] ** 2) + (0 if ndc is None else ndc * f[t + 1])
            nz = torch.cat([dc_t * g[t] * i[t] * (1 - i[t]), dc_t * c_prev[t] * f[t] * (1 - f[t]),
                            dc_t * i[t] * (1 - g[t] ** 2), dh_t * tanh_c[t] * o[t] * (1 - o[t])], 1)
            ndc = dc_t
            if not (torch.allclose(dh[t], dh_t, rtol=tol, atol=tol)
                    and torch.allclose(dc[t], dc_t, rtol=tol, atol=tol)
                    and torch.allclose(dz[t], nz, rtol=tol, atol=tol)):
                return f"backward, {dtype}"
    return None
