"""The compiled loops of ``_native.c``: built on first use, cached, optional.

PyTorch dispatches each small per-timestep operation separately, and for a small network
the dispatch costs more than the arithmetic. ``_native.c`` runs each layer's loops over
time in one call: the forward passes of the LSTMs and the GRU, and the reverse scans of
every cell. It is compiled with the system's C compiler the first time a cell needs it and
cached in ``~/.cache/gradviz`` (or ``$XDG_CACHE_HOME/gradviz``; a folder in the temporary
directory where that cannot be written).

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
    "lstm_cell_forward": "iii" + "t" * 10 + "ittt",
    "lstm_cell_backward": "ttttttitttt",
    "gru_cell_forward": "t" * 8 + "ittt",
    "gru_cell_backward": "tttttittt",
    "rnn_cell_backward": "tttitt",
    "lstm_family_scan": "i" + "tttt" + "i" + "tt",
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

    def lstm_forward(self, I, fold, zx, w_t, h0, c0, acts, c, tanh_c, h, xh, rows=0,
                     mean=None, low=None, high=None, kind="lstm", w_c=None) -> None:
        """The forward pass of the LSTM, or with ``kind`` "peephole" (``w_c`` the peepholes)
        or "coupled" (acts (T, B, 3, H)): see lstm_cell_forward in _native.c."""
        T, B, G, H = acts.shape
        kinds = {"lstm": 0, "peephole": 1, "coupled": 2}
        if kind not in kinds or G != (3 if kind == "coupled" else 4):
            raise ValueError(f"lstm_forward: {G} gate blocks do not fit kind {kind!r}")
        if tuple(zx.shape) != ((B, G * H) if fold else (T, B, G * H)) or tuple(w_t.shape) != (
                (I + H) if fold else H, G * H):
            raise ValueError("lstm_forward: zx and w_t do not match fold")
        if kind == "peephole" and (w_c is None or tuple(w_c.shape) != (3 * H,)):
            raise ValueError("lstm_forward: the peephole LSTM needs w_c (3H,)")
        self._call("lstm_cell_forward", T, B, H, I, int(fold), kinds[kind], zx, w_t,
                   zx if w_c is None else w_c, h0, c0, acts, c, tanh_c, h, xh, rows, mean,
                   low, high)

    def lstm_backward(self, acts, c, c0, tanh_c, dout, w_hh, tbptt, dh, dc, dz, carry) -> None:
        T, B, _, H = acts.shape
        self._call("lstm_cell_backward", T, B, H, acts, c, c0, tanh_c, dout, w_hh, tbptt,
                   dh, dc, dz, carry)

    def gru_forward(self, zx, w_t, b_rows, h0, gates, un, h, u, rows=0, mean=None, low=None,
                    high=None) -> None:
        T, B, H = h.shape
        self._call("gru_cell_forward", T, B, H, zx, w_t, b_rows, h0, gates, un, h, u, rows,
                   mean, low, high)

    def gru_backward(self, gates, un, h_prev, dout, w_hh, tbptt, dh, dzh, dzx) -> None:
        T, B, H = dout.shape
        self._call("gru_cell_backward", T, B, H, gates, un, h_prev, dout, w_hh, tbptt, dh,
                   dzh, dzx)

    def family_scan(self, M, N, dout, w_hh, tbptt, dh, R) -> None:
        T, B, G1, H = M.shape
        self._call("lstm_family_scan", T, B, H, G1 - 1, M, N, dout, w_hh, tbptt, dh, R)

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


def fallback_notice(device: str) -> str | None:
    """A line for the user when training on ``device`` goes without the compiled loops
    (slower; every cell has them on the CPU), else None. Builds them first if that has not
    happened yet."""
    if device != "cpu" or kernels() is not None:
        return None
    return f"{status()}, which is slower"


def _cache_dir() -> Path:
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
        _prune(target)
        return found, f"compiled loops in use ({' '.join(flags)}, {target})"
    return None, f"building the compiled loops failed ({errors[-1]}); using PyTorch operations"


# Builds of other sources (older gradviz versions) unused this long are removed.
_PRUNE_AFTER_S = 30 * 24 * 3600


def _prune(in_use: Path) -> None:
    """Mark ``in_use`` as used now and remove the cache's builds unused for 30 days."""
    try:
        os.utime(in_use)
        cutoff = in_use.stat().st_mtime - _PRUNE_AFTER_S
        for old in in_use.parent.glob("native-*"):
            if old != in_use and old.stat().st_mtime < cutoff:
                old.unlink()
    except OSError:
        pass           # a read-only or shared cache: leave it as it is


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
    """Every loop on a small odd-sized case (H 19: vector blocks and leftover columns; B 5:
    blocks of 4 rows and a leftover; a truncation point) against the same equations in
    PyTorch. Returns what disagreed, or None."""
    gen = torch.Generator().manual_seed(0)
    for dtype, tol in ((torch.float32, 2e-5), (torch.float64, 1e-12)):
        for check in (_check_lstm, _check_gru, _check_rnn, _check_variants):
            problem = check(k, dtype, tol, gen)
            if problem:
                return f"{problem}, {dtype}"
    return None


T_, B_, H_, I_, ROWS_, TBPTT_ = 4, 5, 19, 3, 4, 2


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    return bool(torch.allclose(a, b, rtol=tol, atol=tol))


def _stats_close(mean, low, high, acts, lo, hi, tol) -> bool:
    """Means to tol; fractions within one unit of a step (a value on a band's edge may fall
    either side at float32's last bit)."""
    a = acts[:, :ROWS_]
    lo, hi = torch.tensor(lo, dtype=a.dtype).view(1, 1, -1, 1), torch.tensor(hi, dtype=a.dtype).view(1, 1, -1, 1)
    step = 1.01 / (ROWS_ * H_)
    return (_close(mean, a.mean(1), tol)
            and bool((low - (a < lo).to(a.dtype).mean((1, 3))).abs().max() <= step)
            and bool((high - (a > hi).to(a.dtype).mean((1, 3))).abs().max() <= step))


def _flows(t: int) -> bool:
    return t < T_ - 1 and (t + 1) % TBPTT_ != 0


def _check_lstm(k: Kernels, dtype, tol, gen) -> str | None:
    T, B, H, I = T_, B_, H_, I_
    rnd = lambda *shape: torch.randn(shape, generator=gen, dtype=dtype)  # noqa: E731
    x, h0, c0 = rnd(T, B, I), rnd(B, H), rnd(B, H)
    w_ih, w_hh, bias = rnd(4 * H, I), rnd(4 * H, H) * 0.3, rnd(4 * H)
    acts_ref, c_ref, h_ref = [], [], []
    h, c = h0, c0
    for t in range(T):
        i, f, g, o = (x[t] @ w_ih.t() + bias + h @ w_hh.t()).split(H, 1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        acts_ref.append(torch.stack([i, f, g, o], 1))
        c_ref.append(c)
        h_ref.append(h)
    acts_ref, c_ref, h_ref = torch.stack(acts_ref), torch.stack(c_ref), torch.stack(h_ref)
    h_prev = torch.cat([h0[None], h_ref[:-1]])
    for fold in (False, True):
        if fold:
            zx = bias.expand(B, 4 * H).contiguous()
            w_t = torch.cat([w_ih, w_hh], 1).t().contiguous()
        else:
            zx = (x.reshape(T * B, I) @ w_ih.t() + bias).view(T, B, 4 * H)
            w_t = w_hh.t().contiguous()
        acts, c, tanh_c, h = x.new_empty((T, B, 4, H)), *(x.new_empty((T, B, H)) for _ in range(3))
        xh = torch.cat([x, torch.zeros_like(h)], 2)
        mean, low, high = x.new_empty((T, 4, H)), x.new_empty((T, 4)), x.new_empty((T, 4))
        k.lstm_forward(I, fold, zx, w_t, h0, c0, acts, c, tanh_c, h, xh, ROWS_, mean, low, high)
        if not (_close(acts, acts_ref, tol) and _close(c, c_ref, tol) and _close(h, h_ref, tol)
                and _close(tanh_c, torch.tanh(c_ref), tol) and _close(xh[:, :, I:], h_prev, tol)
                and _close(xh[:, :, :I], x, 0) and _stats_close(mean, low, high, acts_ref,
                                                                [0.1, 0.1, -0.8, 0.1],
                                                                [0.9, 0.9, 0.8, 0.9], tol)):
            return f"lstm forward{' (folded input)' if fold else ''}"
    dout = rnd(T, B, H)
    dh, dc, dz = torch.empty_like(dout), torch.empty_like(dout), x.new_empty((T, B, 4 * H))
    k.lstm_backward(acts, c, c0, tanh_c, dout, w_hh, TBPTT_, dh, dc, dz, torch.empty_like(c0))
    i, f, g, o = acts.unbind(2)
    c_prev = torch.cat([c0[None], c[:-1]])
    for t in range(T - 1, -1, -1):
        flows = _flows(t)
        dh_t = dout[t] + (dz[t + 1] @ w_hh if flows else 0)
        dc_t = dh_t * o[t] * (1 - tanh_c[t] ** 2) + (dc[t + 1] * f[t + 1] if flows else 0)
        dz_t = torch.cat([dc_t * g[t] * i[t] * (1 - i[t]), dc_t * c_prev[t] * f[t] * (1 - f[t]),
                          dc_t * i[t] * (1 - g[t] ** 2), dh_t * tanh_c[t] * o[t] * (1 - o[t])], 1)
        if not (_close(dh[t], dh_t, tol) and _close(dc[t], dc_t, tol) and _close(dz[t], dz_t, tol)):
            return "lstm backward"
    return None


def _check_gru(k: Kernels, dtype, tol, gen) -> str | None:
    T, B, H, I = T_, B_, H_, I_
    rnd = lambda *shape: torch.randn(shape, generator=gen, dtype=dtype)  # noqa: E731
    x, h0 = rnd(T, B, I), rnd(B, H)
    w_ih, w_hh, b_ih, b_hh = rnd(3 * H, I), rnd(3 * H, H) * 0.3, rnd(3 * H), rnd(3 * H)
    gates_ref, un_ref, h_ref = [], [], []
    h = h0
    for t in range(T):
        zr, zz, zn = (x[t] @ w_ih.t() + b_ih).split(H, 1)
        ur, uz, un = (h @ w_hh.t() + b_hh).split(H, 1)
        r, z = torch.sigmoid(zr + ur), torch.sigmoid(zz + uz)
        n = torch.tanh(zn + r * un)
        h = (1 - z) * n + z * h
        gates_ref.append(torch.stack([r, z, n], 1))
        un_ref.append(un)
        h_ref.append(h)
    gates_ref, un_ref, h_ref = torch.stack(gates_ref), torch.stack(un_ref), torch.stack(h_ref)
    zx = (x.reshape(T * B, I) @ w_ih.t() + b_ih).view(T, B, 3 * H)
    gates, un, h = x.new_empty((T, B, 3, H)), x.new_empty((T, B, H)), x.new_empty((T, B, H))
    mean, low, high = x.new_empty((T, 3, H)), x.new_empty((T, 3)), x.new_empty((T, 3))
    k.gru_forward(zx, w_hh.t().contiguous(), b_hh.expand(B, 3 * H).contiguous(), h0, gates, un,
                  h, x.new_empty((B, 3 * H)), ROWS_, mean, low, high)
    if not (_close(gates, gates_ref, tol) and _close(un, un_ref, tol) and _close(h, h_ref, tol)
            and _stats_close(mean, low, high, gates_ref, [0.1, 0.1, -0.8], [0.9, 0.9, 0.8], tol)):
        return "gru forward"
    dout = rnd(T, B, H)
    h_prev = torch.cat([h0[None], h[:-1]])
    dh, dzh, dzx = torch.empty_like(dout), x.new_empty((T, B, 3 * H)), x.new_empty((T, B, 3 * H))
    k.gru_backward(gates, un, h_prev, dout, w_hh, TBPTT_, dh, dzh, dzx)
    r, z, n = gates.unbind(2)
    for t in range(T - 1, -1, -1):
        flows = _flows(t)
        dh_t = dout[t] + (dzh[t + 1] @ w_hh + dh[t + 1] * z[t + 1] if flows else 0)
        cn = (1 - z[t]) * (1 - n[t] ** 2)
        cz = (h_prev[t] - n[t]) * z[t] * (1 - z[t])
        cr = cn * un[t] * r[t] * (1 - r[t])
        if not (_close(dh[t], dh_t, tol)
                and _close(dzh[t], torch.cat([dh_t * cr, dh_t * cz, dh_t * cn * r[t]], 1), tol)
                and _close(dzx[t], torch.cat([dh_t * cr, dh_t * cz, dh_t * cn], 1), tol)):
            return "gru backward"
    return None


def _check_rnn(k: Kernels, dtype, tol, gen) -> str | None:
    T, B, H = T_, B_, H_
    dout = torch.randn((T, B, H), generator=gen, dtype=dtype)
    w = torch.randn((H, H), generator=gen, dtype=dtype)
    dphi = torch.rand((T, B, H), generator=gen, dtype=dtype)
    dh, dz = torch.empty_like(dout), torch.empty_like(dout)
    k.rnn_backward(dphi, dout, w, TBPTT_, dh, dz)
    for t in range(T - 1, -1, -1):
        dh_t = dout[t] + (dz[t + 1] @ w if _flows(t) else 0)
        if not (_close(dh[t], dh_t, tol) and _close(dz[t], dh_t * dphi[t], tol)):
            return "rnn backward"
    return None


def _check_variants(k: Kernels, dtype, tol, gen) -> str | None:
    """The peephole and coupled forward passes, and the variants' generic scan."""
    T, B, H, I = T_, B_, H_, I_
    rnd = lambda *shape: torch.randn(shape, generator=gen, dtype=dtype)  # noqa: E731
    x, h0, c0 = rnd(T, B, I), rnd(B, H), rnd(B, H)
    for kind, G in (("peephole", 4), ("coupled", 3)):
        w_ih, w_hh, bias, w_c = rnd(G * H, I), rnd(G * H, H) * 0.3, rnd(G * H), rnd(3 * H)
        acts_ref, c_ref, h_ref = [], [], []
        h, c = h0, c0
        for t in range(T):
            z = (x[t] @ w_ih.t() + bias + h @ w_hh.t()).split(H, 1)
            if kind == "peephole":
                i = torch.sigmoid(z[0] + w_c[:H] * c)
                f = torch.sigmoid(z[1] + w_c[H:2 * H] * c)
                g = torch.tanh(z[2])
                c = f * c + i * g
                o = torch.sigmoid(z[3] + w_c[2 * H:] * c)
                gates = [i, f, g, o]
            else:
                f, g, o = torch.sigmoid(z[0]), torch.tanh(z[1]), torch.sigmoid(z[2])
                c = f * c + (1 - f) * g
                gates = [f, g, o]
            h = o * torch.tanh(c)
            acts_ref.append(torch.stack(gates, 1))
            c_ref.append(c)
            h_ref.append(h)
        acts_ref, c_ref, h_ref = torch.stack(acts_ref), torch.stack(c_ref), torch.stack(h_ref)
        lo, hi = [0.1, 0.1, -0.8, 0.1][4 - G:], [0.9, 0.9, 0.8, 0.9][4 - G:]
        for fold in (False, True):
            if fold:
                zx = bias.expand(B, G * H).contiguous()
                w_t = torch.cat([w_ih, w_hh], 1).t().contiguous()
            else:
                zx = (x.reshape(T * B, I) @ w_ih.t() + bias).view(T, B, G * H)
                w_t = w_hh.t().contiguous()
            acts, c, tanh_c, h = x.new_empty((T, B, G, H)), *(x.new_empty((T, B, H)) for _ in range(3))
            xh = torch.cat([x, torch.zeros_like(h)], 2)
            mean, low, high = x.new_empty((T, G, H)), x.new_empty((T, G)), x.new_empty((T, G))
            k.lstm_forward(I, fold, zx, w_t, h0, c0, acts, c, tanh_c, h, xh, ROWS_, mean,
                           low, high, kind=kind, w_c=w_c)
            if not (_close(acts, acts_ref, tol) and _close(c, c_ref, tol) and _close(h, h_ref, tol)
                    and _close(tanh_c, torch.tanh(c_ref), tol)
                    and _close(xh[:, :, I:], torch.cat([h0[None], h_ref[:-1]]), tol)
                    and _stats_close(mean, low, high, acts_ref, lo, hi, tol)):
                return f"{kind} forward"
    # The scan, on random coefficients.
    G = 4
    M, N = rnd(T, B, G + 1, H), rnd(T, B, G + 1, H)
    w_hh, dout = rnd(G * H, H) * 0.3, rnd(T, B, H)
    dh, R = torch.empty_like(dout), x.new_empty((T, B, G + 1, H))
    k.family_scan(M, N, dout, w_hh, TBPTT_, dh, R)
    for t in range(T - 1, -1, -1):
        flows = _flows(t)
        dh_t = dout[t] + (R[t + 1, :, :G].reshape(B, G * H) @ w_hh if flows else 0)
        R_t = dh_t.unsqueeze(1) * M[t] + (R[t + 1, :, G:] * N[t] if flows else 0)
        if not (_close(dh[t], dh_t, tol) and _close(R[t], R_t, tol)):
            return "lstm variants' scan"
    return None
