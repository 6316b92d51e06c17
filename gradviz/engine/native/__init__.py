"""The compiled loops of ``_native.c``: built on first use, cached, optional.

PyTorch dispatches each small per-timestep operation separately, and for a small network
the dispatch costs more than the arithmetic. ``_native.c`` runs each layer's loops over
time in one call: the forward passes of the LSTMs and the GRU, the reverse scans of every
cell, the per-timestep norms and the norms of the gradient paths (:mod:`gradviz.engine.analysis.paths`); and σ_max's
Lanczos for :mod:`gradviz.engine.analysis.spectrum`. It is compiled with the system's C compiler
the first time a cell needs it and cached in ``~/.cache/gradviz`` (or
``$XDG_CACHE_HOME/gradviz``; a folder in the temporary directory where that cannot be
written). A library is loaded only from a folder of the
user's that no one else may enter, and only if no one else may write it: a library planted
by another user is never run (:mod:`~gradviz.engine.native.build`).

Each build is checked against the plain equations the first time it is loaded, and the
pass is kept beside it for the hash of its file (:mod:`~gradviz.engine.native.checkcache`).
It is optional. Without a C compiler, when the build fails, when the result fails its
self-check, or with ``GRADVIZ_NATIVE=0`` in the environment, :func:`kernels` returns None
and the cells use their PyTorch code, which computes the same numbers; :func:`status` says
which path is in use and why.

This module is the public side: :func:`kernels`, :func:`status`, :func:`fallback_notice`,
:func:`load`, :func:`self_check`, :func:`turned_off` and :class:`Kernels`, the typed entry
points of the library. :mod:`~gradviz.engine.native.build` compiles and caches it;
:mod:`~gradviz.engine.native.selfcheck` checks every loop against the plain equations of
:mod:`gradviz.engine.model.reference` before it is used.
"""
from __future__ import annotations

import ctypes
import os
import threading
from contextlib import contextmanager
from typing import Iterator

import torch

from . import build, checkcache, selfcheck

_lock = threading.Lock()
_loaded = False
_kernels: "Kernels | None" = None
_status = "not built yet"
_off = 0              # how many turned_off() blocks are open


# Entry points of _native.c and their arguments after (T, B, H): "t" a tensor, "i" an int.
_SIGNATURES = {
    "lstm_cell_forward": "iii" + "t" * 10 + "ittt",
    "lstm_cell_backward": "ttttttitttt" + "itt",
    "gru_cell_forward": "t" * 8 + "ittt",
    "gru_cell_backward": "tttttittt" + "itt",
    "rnn_cell_forward": "i" + "ttttt",
    "rnn_cell_backward": "tttitt" + "itt",
    "lstm_family_scan": "i" + "tttt" + "i" + "tt",
    "path_norms": "iiii" + "ttttt",
    "row_norms": "tt",
    "step_norms": "tttt",
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
        self._top_singular = {}
        for dtype, suffix in ((torch.float32, "f32"), (torch.float64, "f64")):
            top = getattr(lib, f"top_singular_{suffix}")
            top.argtypes = [ctypes.c_int] * 3 + [ctypes.c_void_p] * 2 + [ctypes.c_double] + \
                [ctypes.c_void_p] * 2
            top.restype = ctypes.c_int
            self._top_singular[dtype] = top

    def top_singular(self, w: torch.Tensor, v: torch.Tensor, steps: int,
                     tol: float) -> tuple[torch.Tensor, torch.Tensor]:
        """σ_max of each block of ``w`` (N, H, H) by Lanczos on WᵀW from ``v`` (N, H), both
        contiguous CPU, v float64 and w float64 or float32 (read as float64, the same
        numbers without a float64 copy), as
        :func:`gradviz.engine.analysis.spectrum.lanczos_top` computes it: (σ_max (N,)
        float64, converged (N,) bool), and ``v`` becomes the unit Ritz vectors."""
        n, h = v.shape
        if (tuple(w.shape) != (n, h, h) or w.dtype not in self._top_singular
                or v.dtype != torch.float64):
            raise ValueError("top_singular: w must be (N, H, H) float64 or float32 and v "
                             "(N, H) float64")
        sigma, ok = v.new_empty(n), torch.zeros(n, dtype=torch.int32)
        _check(v, sigma)
        _check(w)
        if self._top_singular[w.dtype](n, h, int(steps), w.data_ptr(), v.data_ptr(),
                                       float(tol), sigma.data_ptr(), ok.data_ptr()):
            raise MemoryError("top_singular: no memory for the Lanczos vectors")
        return sigma, ok.bool()

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

    def lstm_backward(self, acts, c, c0, tanh_c, dout, w_hh, tbptt, dh, dc, dz, carry,
                      norms_rows: int | None = None) -> "ScanNorms | None":
        """The LSTM's reverse scan; with ``norms_rows``, a capture's norms as it goes
        (:class:`ScanNorms`)."""
        T, B, _, H = acts.shape
        norms = None if norms_rows is None else ScanNorms(dout, T, H, 4, 5, norms_rows)
        self._call("lstm_cell_backward", T, B, H, acts, c, c0, tanh_c, dout, w_hh, tbptt,
                   dh, dc, dz, carry, *ScanNorms.args(norms))
        return norms

    def gru_forward(self, zx, w_t, b_rows, h0, gates, un, h, u, rows=0, mean=None, low=None,
                    high=None) -> None:
        T, B, H = h.shape
        self._call("gru_cell_forward", T, B, H, zx, w_t, b_rows, h0, gates, un, h, u, rows,
                   mean, low, high)

    def gru_backward(self, gates, un, h_prev, dout, w_hh, tbptt, dh, dzh, dzx,
                     norms_rows: int | None = None) -> "ScanNorms | None":
        """The GRU's reverse scan; with ``norms_rows``, a capture's norms as it goes
        (:class:`ScanNorms`)."""
        T, B, H = dout.shape
        norms = None if norms_rows is None else ScanNorms(dout, T, H, 3, 3, norms_rows)
        self._call("gru_cell_backward", T, B, H, gates, un, h_prev, dout, w_hh, tbptt, dh,
                   dzh, dzx, *ScanNorms.args(norms))
        return norms

    def family_scan(self, M, N, dout, w_hh, tbptt, dh, R) -> None:
        T, B, G1, H = M.shape
        self._call("lstm_family_scan", T, B, H, G1 - 1, M, N, dout, w_hh, tbptt, dh, R)

    def rnn_forward(self, zx, w_t, h0, h, dphi, relu=False) -> None:
        """The plain RNN's forward pass (φ = tanh, or ReLU with ``relu``): h (T, B, H) and
        dphi = φ'(z) from zx = x W_ihᵀ + b_ih + b_hh (T, B, H), w_t = W_hhᵀ (H, H) and
        h0 (B, H); see rnn_cell_forward in _native.c."""
        T, B, H = h.shape
        if (tuple(zx.shape) != (T, B, H) or tuple(w_t.shape) != (H, H)
                or tuple(h0.shape) != (B, H) or tuple(dphi.shape) != (T, B, H)):
            raise ValueError("rnn_forward: the shapes do not fit together")
        self._call("rnn_cell_forward", T, B, H, int(relu), zx, w_t, h0, h, dphi)

    def rnn_backward(self, dphi, dout, w_hh, tbptt, dh, dz,
                     norms_rows: int | None = None) -> "ScanNorms | None":
        """The plain RNN's reverse scan; with ``norms_rows``, a capture's norms as it goes
        (:class:`ScanNorms`)."""
        T, B, H = dout.shape
        norms = None if norms_rows is None else ScanNorms(dout, T, H, 3, 2, norms_rows)
        self._call("rnn_cell_backward", T, B, H, dphi, dout, w_hh, tbptt, dh, dz,
                   *ScanNorms.args(norms))
        return norms

    def path_norms(self, rows, tbptt, dh, dout, dc, gates, gate_index, out) -> None:
        """The norms of gradviz.engine.analysis.paths.path_norms into out (Q, T, H): see path_norms in
        _native.c. dh, dout and dc (T, B, H), gates (T, B, G, H) with the belt's gate at
        ``gate_index``; dc None but for the LSTMs, gates None for the plain RNN."""
        T, B, H = dh.shape
        G = 0 if gates is None else gates.shape[2]
        Q = 5 if dc is not None else (3 if gates is not None else 2)
        if (tuple(dout.shape) != (T, B, H) or (dc is not None and tuple(dc.shape) != (T, B, H))
                or (dc is not None and gates is None) or not 0 <= rows <= B
                or (gates is not None and (tuple(gates.shape) != (T, B, G, H)
                                           or not 0 <= gate_index < G))
                or tuple(out.shape) != (Q, T, H)):
            raise ValueError("path_norms: the shapes do not fit together")
        self._call("path_norms", T, B, H, rows, G, gate_index, tbptt, dh, dout, dc, gates, out)

    def row_norms(self, x, out) -> None:
        """The 2-norm of each x[t] (x (T, ...) contiguous) into out (T,), exact to the
        dtype's floor: see row_norms in _native.c."""
        T = x.shape[0]
        if tuple(out.shape) != (T,):
            raise ValueError("row_norms: out must be (T,) for x (T, ...)")
        self._call("row_norms", T, 1, x[0].numel() if T else 0, x, out)

    def step_norms(self, dh, dout, dc, out) -> None:
        """‖dh_t‖, ‖dout_t‖, ‖dh_t - dout_t‖ and (dc not None) ‖dc_t‖ into the rows of out
        (3 or 4, T), dh, dout and dc (T, B, H): row_norms of each, in one call; see
        step_norms in _native.c."""
        T, B, H = dh.shape
        if (tuple(dout.shape) != (T, B, H) or (dc is not None and tuple(dc.shape) != (T, B, H))
                or tuple(out.shape) != (3 if dc is None else 4, T)):
            raise ValueError("step_norms: the shapes do not fit together")
        self._call("step_norms", T, B, H, dh, dout, dc, out)


class ScanNorms:
    """A capture's norms, computed by a reverse scan as it goes, while each step's rows are
    still in cache (norms_after in _native.c): ``steps`` (3, T), or (4, T) for the LSTM,
    the numbers :meth:`Kernels.step_norms` gives; with ``rows`` > 0 also ``paths``
    (Q, T, H), those :meth:`Kernels.path_norms` gives over the first ``rows`` batch rows."""

    def __init__(self, like: torch.Tensor, T: int, H: int, steps: int, paths: int, rows: int):
        if not 0 <= rows <= like.shape[1]:
            raise ValueError(f"a reverse scan's norms over {rows} rows of a batch of "
                             f"{like.shape[1]}")
        self.rows = rows
        self.steps = like.new_empty((steps, T))
        self.paths = like.new_empty((paths, T, H)) if rows else None

    @staticmethod
    def args(norms: "ScanNorms | None") -> tuple:
        """(rows, steps, paths) as the scans in _native.c take them (NULL: not wanted)."""
        if norms is None:
            return 0, None, None
        return (norms.rows if norms.paths is not None else 0), norms.steps, norms.paths


def _check(first: torch.Tensor, *rest: torch.Tensor) -> None:
    # The C code trusts its pointers: wrong layouts must never reach it.
    for t in (first, *rest):
        if not t.is_contiguous() or t.dtype != first.dtype or t.device.type != "cpu":
            raise ValueError("the compiled loops need contiguous CPU tensors of one dtype")


def kernels() -> Kernels | None:
    """The compiled kernels, building them on first use; None where they cannot be had
    (or inside :func:`turned_off`)."""
    global _loaded, _kernels, _status
    if _off:
        return None
    if _loaded:
        return _kernels
    with _lock:
        if not _loaded:
            _kernels, _status = load()
            _loaded = True
    return _kernels


def status() -> str:
    """One line: whether the compiled kernels are in use, and if not, why."""
    if _off:
        return "compiled loops turned off for now; using PyTorch operations"
    kernels()
    return _status


def fallback_notice(device: str) -> str | None:
    """A line for the user when training on ``device`` goes without the compiled loops
    (slower; every cell has them on the CPU), else None. Builds them first if that has not
    happened yet."""
    if device != "cpu" or kernels() is not None:
        return None
    return f"{status()}, which is slower"


@contextmanager
def turned_off() -> Iterator[None]:
    """Within this block :func:`kernels` returns None, so the cells' forward passes take
    their PyTorch path, as where the loops cannot be built: to compare the two paths."""
    global _off
    _off += 1
    try:
        yield
    finally:
        _off -= 1


def load() -> tuple[Kernels | None, str]:
    """Build (where not cached), load and self-check the compiled loops as the environment
    says now (``GRADVIZ_NATIVE``, ``CC``, ``XDG_CACHE_HOME``): the kernels or None, and the
    line :func:`status` gives. :func:`kernels` calls this once; calling it again loads
    afresh and leaves what :func:`kernels` returns as it was."""
    if os.environ.get("GRADVIZ_NATIVE", "1") == "0":
        return None, "compiled loops off (GRADVIZ_NATIVE=0); using PyTorch operations"
    compiler = build.find_compiler()
    if not compiler:
        return None, "no C compiler found (set CC or install gcc); using PyTorch operations"
    try:
        source = build.SOURCE.read_bytes()
    except OSError as exc:
        return None, f"cannot read {build.SOURCE.name}: {exc.strerror}; using PyTorch operations"
    folder, notes = build.cache_dir()
    if folder is None:
        return None, ("cannot write a private cache folder for the compiled loops "
                      f"({'; '.join(notes)}); using PyTorch operations")
    errors = []
    for flags in build.FLAG_SETS:
        target = folder / build.library_name(source, compiler, flags)
        untrusted = build.distrust(target)
        if untrusted:
            notes.append(f"rebuilt {target.name}: {untrusted}")
        if untrusted or not target.exists():
            error = build.compile_into(compiler, flags, target)
            if error:
                errors.append(error)
                continue
        try:
            lib, digest = _load_whole(target, compiler, flags, notes)
            found = Kernels(lib)
        except build.DamagedLibrary as exc:
            errors.append(f"{target.name} was not a whole build: {exc.reason}")
            notes.append(errors[-1])
            continue
        except (OSError, AttributeError) as exc:
            errors.append(f"cannot load {target}: {exc}")
            continue
        # Once per build: a pass is kept beside it for the file's hash (checkcache).
        if not checkcache.passed_before(target, digest):
            problem = self_check(found)
            if problem:
                return None, f"compiled loops failed their self-check ({problem}); using PyTorch operations"
            checkcache.remember_pass(target, digest)
        build.prune(target)
        return found, f"compiled loops in use ({' '.join(flags)}, {target})" + \
            "".join(f"; {note}" for note in notes)
    return None, f"building the compiled loops failed ({errors[-1]}); using PyTorch " \
        "operations" + "".join(f"; {note}" for note in notes if note != errors[-1])


def _load_whole(target, compiler: str, flags: list[str], notes: list[str]):
    """The library at ``target`` and its file's SHA-256, rebuilt first where it is not the whole build its record
    describes (a note says so); OSError (DamagedLibrary included) where it still cannot
    be loaded."""
    try:
        return build.load_hashed(target)
    except build.DamagedLibrary as exc:
        error = build.compile_into(compiler, flags, target)
        if error:
            raise build.DamagedLibrary(target, f"{exc.reason}, and rebuilding it failed: "
                                               f"{error}") from None
        notes.append(f"rebuilt {target.name}: {exc.reason}")
    return build.load_hashed(target)


def self_check(k: Kernels) -> str | None:
    """Every loop of ``k`` on a small case against the cells' plain equations; what
    disagreed, or None (:mod:`~gradviz.engine.native.selfcheck`)."""
    return selfcheck.run(k)


__all__ = ["Kernels", "ScanNorms", "kernels", "status", "fallback_notice", "turned_off", "load",
           "self_check"]
