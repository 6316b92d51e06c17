"""The compiled loops of ``_native.c``: built on first use, cached, optional.

PyTorch dispatches each small per-timestep operation separately, and for a small network
the dispatch costs more than the arithmetic. ``_native.c`` runs the loops that cannot be
batched over time (the LSTM's cell-state recurrence, the reverse scans of the LSTM, GRU and
RNN) in one call each. It is compiled with the system's C compiler the first time a cell
needs it and cached in ``~/.cache/gradviz`` (or ``$XDG_CACHE_HOME/gradviz``).

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


# Entry points of _native.c and their arguments after (T, B, H): "t" a tensor, "i" an int.
_SIGNATURES = {
    "lstm_cell_forward": "tttittt",
    "lstm_cell_backward": "ttttttitttt",
    "gru_cell_backward": "ttttitt",
    "rnn_cell_backward": "tttitt",
}


class Kernels:
    """Typed entry points of the loaded library, one set per dtype. Each method takes the
    tensors in the order of the C function and checks them before they reach it."""

    def __init__(self, lib: ctypes.CDLL):
        kinds = {"t": ctypes.c_void_p, "i": ctypes.c_int}
        self._fns: dict[tuple[str, torch.dtype], ctypes._CFuncPtr] = {}
        for dtype, suffix in ((torch.float32, "f32"), (torch.float64, "f64")):
            for name, sig in _SIGNATURES.items():
                fn = getattr(lib, f"{name}_{suffix}")
                fn.argtypes = [ctypes.c_int] * 3 + [kinds[k] for k in sig]
                fn.restype = None
                self._fns[name, dtype] = fn

    def supports(self, t: torch.Tensor) -> bool:
        return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)

    def _call(self, name: str, T: int, B: int, H: int, *args) -> None:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        _check(*tensors)
        ptrs = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]
        self._fns[name, tensors[0].dtype](T, B, H, *ptrs)

    def lstm_forward(self, acts, c_init, c, rows=0, mean=None, low=None, high=None) -> None:
        """In place on ``acts`` (T, B, 4, H), g on the sigmoid scale: see _native.c."""
        T, B, _, H = acts.shape
        self._call("lstm_cell_forward", T, B, H, acts, c_init, c, rows, mean, low, high)

    def lstm_backward(self, acts, c, c0, tanh_c, dout, w_hh, tbptt, dh, dc, dz, carry) -> None:
        T, B, _, H = acts.shape
        self._call("lstm_cell_backward", T, B, H, acts, c, c0, tanh_c, dout, w_hh, tbptt,
                   dh, dc, dz, carry)

    def gru_backward(self, z, kh, dout, w_hh, tbptt, dh, dzh) -> None:
        T, B, H = dout.shape
        self._call("gru_cell_backward", T, B, H, z, kh, dout, w_hh, tbptt, dh, dzh)

    def rnn_backward(self, dphi, dout, w_hh, tbptt, dh, dz) -> None:
        T, B, H = dout.shape
        self._call("rnn_cell_backward", T, B, H, dphi, dout, w_hh, tbptt, dh, dz)


def _check(first: torch.Tensor, *rest: torch.Tensor) -> None:
    # The C code trusts its pointers: wrong layouts must never reach it.
    for t in (first, *rest):
        if not t.is_contiguous() or t.dtype != first.dtype or t.device.type != "cpu":
            raise ValueError("the compiled loops need contiguous CPU tensors of one dtype")


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
        return None, "compiled loops off (GRADVIZ_NATIVE=0); using PyTorch operations"
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
            return None, f"compiled loops failed their self-check ({problem}); using PyTorch operations"
        return found, f"compiled loops in use ({' '.join(flags)}, {target})"
    return None, f"building the compiled loops failed ({errors[-1]}); using PyTorch operations"


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
        problem = _check_scans(k, dtype, tol, gen)
        if problem:
            return problem
    return None


def _check_scans(k: Kernels, dtype: torch.dtype, tol: float, gen: torch.Generator) -> str | None:
    """The GRU and RNN scans, with a truncation point (tbptt 2 cuts between t = 1 and 2)."""
    T, B, H, tbptt = 4, 5, 19, 2
    dout = torch.randn((T, B, H), generator=gen, dtype=dtype)
    for cell, G in (("gru", 3), ("rnn", 1)):
        w = torch.randn((G * H, H), generator=gen, dtype=dtype)
        gate = torch.rand((T, B, H), generator=gen, dtype=dtype)       # z, or φ'
        kh = torch.randn((T, B, G, H), generator=gen, dtype=dtype)
        dh, dz = torch.empty_like(dout), dout.new_empty((T, B, G * H))
        if cell == "gru":
            k.gru_backward(gate, kh, dout, w, tbptt, dh, dz)
        else:
            k.rnn_backward(gate, dout, w, tbptt, dh, dz)
        for t in range(T - 1, -1, -1):
            flows = t < T - 1 and (t + 1) % tbptt != 0
            ref = dout[t] + (dz[t + 1] @ w if flows else 0)
            if cell == "gru":
                ref = ref + (dh[t + 1] * gate[t + 1] if flows else 0)
                ref_dz = (ref.unsqueeze(1) * kh[t]).reshape(B, G * H)
            else:
                ref_dz = ref * gate[t]
            if not (torch.allclose(dh[t], ref, rtol=tol, atol=tol)
                    and torch.allclose(dz[t], ref_dz, rtol=tol, atol=tol)):
                return f"{cell} backward, {dtype}"
    return None
