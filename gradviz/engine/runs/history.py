"""The bounded history of a run: one row per capture, in preallocated numpy arrays.

:class:`History` keeps one row per capture, oldest first. When it is full, the oldest half
of its rows is merged into at most a quarter as many rows (see :meth:`History._compact`),
so a run of any length fits in bounded memory and no capture is ever dropped: it is
averaged into a coarser row instead. :mod:`gradviz.engine.runs.runfile` writes it to a run
folder and reads it back. Shapes: K = rows, L = layers, D = directions, T = timesteps,
P = parameter tensors.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from gradviz.engine.runs import rowranges
from gradviz.engine.runs.capture import Capture
from gradviz.engine.runs.rowranges import RANGE_ARRAYS, RANGE_ROWS

# Per-row scalars: float64 ones are averaged when rows merge, boolean flags OR'ed.
FLOAT_ROWS = ("loss", "grad_norm", "grad_norm_clipped", "lr", "clip_threshold")
FLAG_ROWS = ("clipped", "nonfinite", "clip_by_norm")
# Per-row arrays of the theory views, averaged like the floats when rows merge; NaN where
# a capture lacks them (saturation: a light capture; dout_norm: an older capture).
# ρ and σ_max (K, L, D, R) float64; sat_low/sat_high (K, L, D, G) float32, the fraction
# of each gate's activations in the bottom/top 10% of its range, averaged over t;
# dout_norm, carried_norm (K, L, D, T) float32: the local and carried parts of ∂L/∂h_t.
THEORY_ROWS = ("rho", "sigma_max", "sat_low", "sat_high", "dout_norm", "carried_norm")
# (K, T) float32 ‖∂L/∂x_t‖ of each row (Capture.dx_norm), NaN where a capture lacks it; in
# capture.npz under this name (files from before it was kept do not hold it).
DX_ROW = "dx_norm_rows"
# Arrays whose last dimension is T: a history with ``pad_time`` grows them to the largest T.
TIME_ROWS = ("dh_norm", "dc_norm", "dout_norm", "carried_norm", DX_ROW)
# (K,) int64 the timesteps each row has (the longest of the captures merged into it): the
# steps from there to T are absent (NaN), not non-finite. In files from before: all T.
LEN_ROW = "time_len"
# The task's metric (Capture.metric), averaged like FLOAT_ROWS; apart from them because run
# files from before it was kept do not hold it.
METRIC_ROW = "metric"

Owner = tuple[int, int] | None        # (layer, direction) of a parameter, None: the readout's


def _row_property(name: str, dtype: type, doc: str) -> property:
    return property(lambda self: self._rows_of(name, (0,), dtype), doc=doc)


# Rows a run keeps by default (the app, gradviz run and run files alike).
HISTORY_CAPACITY = 4096

class History:
    """Bounded record of captures, one row per capture until full, oldest row first.

    The arrays below are views of the first ``len(self)`` rows (do not mutate them):
    ``step``/``count`` (K,) int64, ``loss``/``grad_norm``/``grad_norm_clipped``/``lr``/
    ``clip_threshold`` (K,) float64, ``clipped``/``nonfinite``/``clip_by_norm`` (K,) bool,
    ``dh_norm`` (K, L, D, T) float32, ``dc_norm`` (K, L, D, T) float32 or None,
    ``param_grad_norm`` (K, P) float32, ``metric`` (K,) float64 (nan for a task without
    one; ``metric_name`` names it), the :data:`THEORY_ROWS` and ``loss_min`` etc. (rowranges).
    A merged row: ``step`` its last step, ``count`` its captures, means weighted by count
    over finite values, ``…_min``/``…_max`` of its steps, flags OR'ed.

    Of the first capture it keeps ``param_names``, ``param_owners`` (the (layer, direction)
    of each parameter, None for the readout's), ``gate_names`` and ``baseline``, and the
    newest full capture as ``latest``.

    ``capacity`` bounds the rows; if that many rows of this capture's size would pass
    ``max_bytes``, fewer rows are kept (at least 4) so a long T cannot exhaust memory.

    ``pad_time``: captures that differ from the others only in T (batches of different
    sequence lengths) are kept in one history whose T is the largest seen so far, the
    steps a capture does not have being NaN (absent), never 0; without it, such a capture
    starts the history afresh, as a new model does.
    """

    def __init__(self, capacity: int = HISTORY_CAPACITY, max_bytes: int = 256 * 2**20,
                 pad_time: bool = False):
        if capacity < 2:
            raise ValueError(f"History capacity must be at least 2, got {capacity}")
        self.capacity = int(capacity)
        self.max_bytes = int(max_bytes)
        self.pad_time = bool(pad_time)
        self.clear()

    def clear(self) -> None:
        """Forget every row and the latest capture."""
        self._n = 0
        self._rows = 0
        self._key: tuple | None = None
        self._a: dict[str, np.ndarray] = {}
        self.latest: Capture | None = None
        self.param_names: tuple[str, ...] = ()
        self.param_owners: tuple[Owner, ...] = ()
        self.gate_names: tuple[str, ...] = ()
        self.baseline = float("nan")
        self.metric_name = ""
        # What the views call each layer row, where it is not "layer k": the names a
        # trace marked (gradviz.api.tracewatch); () for gradviz's own layers.
        self.layer_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self._n

    # -- appending --------------------------------------------------------------------
    @staticmethod
    def _key_of(cap: Capture) -> tuple:
        # Captures with another shape, parameter set or task belong to another model:
        # they start a new history rather than being mixed into this one.
        baseline = "nan" if cap.baseline != cap.baseline else float(cap.baseline)
        return (np.shape(cap.dh_norm), None if cap.dc_norm is None else np.shape(cap.dc_norm),
                np.shape(cap.param_grad_norm), tuple(cap.param_names), tuple(cap.gate_names),
                baseline, np.shape(cap.rho)[-1])

    def row_limit(self, lzt: tuple[int, ...], has_dc: bool, p: int, r: int = 0,
                  g: int = 0) -> int:
        """How many rows this history keeps of captures whose ``dh_norm`` has the shape
        ``lzt`` (L, D, T), with ``dc_norm`` if ``has_dc``, of ``p`` parameter tensors,
        ``r`` recurrent blocks and ``g`` gates."""
        ld = int(np.prod(lzt[:2]))
        row_bytes = 8 * (3 + len(FLOAT_ROWS) + len(RANGE_ARRAYS)) + len(FLAG_ROWS) \
            + 4 * (int(np.prod(lzt)) * (4 if has_dc else 3) + p) + ld * (16 * r + 8 * g)
        return min(self.capacity, max(4, self.max_bytes // row_bytes))

    def _allocate(self, lzt: tuple[int, ...], has_dc: bool, p: int, r: int, g: int) -> None:
        self._rows = self.row_limit(lzt, has_dc, p, r, g)
        # np.empty only reserves address space; pages are touched as rows are written.
        a = {"step": np.empty(self._rows, np.int64), "count": np.empty(self._rows, np.int64)}
        a.update({k: np.empty(self._rows, np.float64)
                  for k in (*FLOAT_ROWS, METRIC_ROW, *RANGE_ARRAYS)})
        a.update({k: np.empty(self._rows, np.bool_) for k in FLAG_ROWS})
        a["dh_norm"] = np.empty((self._rows, *lzt), np.float32)
        if has_dc:
            a["dc_norm"] = np.empty((self._rows, *lzt), np.float32)
        a["param_grad_norm"] = np.empty((self._rows, p), np.float32)
        for name in ("rho", "sigma_max"):
            a[name] = np.empty((self._rows, *lzt[:2], r), np.float64)
        for name in ("sat_low", "sat_high"):
            a[name] = np.empty((self._rows, *lzt[:2], g), np.float32)
        a["dout_norm"], a["carried_norm"] = np.empty((2, self._rows, *lzt), np.float32)
        a[DX_ROW] = np.empty((self._rows, lzt[-1]), np.float32)
        a[LEN_ROW] = np.empty(self._rows, np.int64)
        self._a = a

    def _same_but_time(self, key: tuple) -> bool:
        """Whether ``key`` differs from this history's only in T (with ``pad_time``)."""
        if not self.pad_time or self._key is None:
            return False
        strip = lambda k: (k[0][:2], None if k[1] is None else k[1][:2], *k[2:])  # noqa: E731
        return strip(key) == strip(self._key)

    def _grow_time(self, T: int) -> None:
        """Widen every per-timestep array to T steps, the new ones NaN (absent)."""
        old_T = self._key[0][-1]
        lzt = (*self._key[0][:2], T)
        limit = self.row_limit(lzt, self._key[1] is not None, self._key[2][0], self._key[6],
                               len(self._key[4]))
        while self._n > limit and self._n >= max(2, self._rows // 2):
            self._compact()                 # rows merged, as when the history is full
        rows = max(min(self._rows, limit), self._n)
        for name in TIME_ROWS:
            if name not in self._a:
                continue
            old = self._a[name]
            new = np.full((rows, *old.shape[1:-1], T), np.nan, old.dtype)
            new[:self._n, ..., :old_T] = old[:self._n]
            self._a[name] = new
        for name, arr in self._a.items():
            if name not in TIME_ROWS:
                self._a[name] = arr[:rows].copy() if rows < len(arr) else arr
        self._rows = rows
        self._key = (lzt, lzt if self._key[1] is not None else None, *self._key[2:])

    def _padded(self, cap: Capture) -> Capture:
        """``cap`` with its per-timestep arrays widened to this history's T with NaN."""
        T, t = self._key[0][-1], cap.seq_len
        if t == T:
            return cap

        def pad(x):
            if x is None:
                return None
            out = np.full((*np.shape(x)[:-1], T), np.nan, np.asarray(x).dtype)
            out[..., :t] = x
            return out
        return replace(cap, **{n: pad(getattr(cap, n)) for n in (*TIME_ROWS[:-1], "dx_norm")})

    def append(self, cap: Capture) -> None:
        """Add one capture (light or full) as a new row; O(1) amortised."""
        key = self._key_of(cap)
        length = cap.seq_len
        if self._same_but_time(key):
            if key[0][-1] > self._key[0][-1]:
                self._grow_time(key[0][-1])
            cap = self._padded(cap)
            key = self._key
        if self._key is not None and key != self._key:
            self.clear()
        if self._key is None:
            self._allocate(key[0], key[1] is not None, key[2][0], key[6], len(key[4]))
            self._key = key
            self.param_names = tuple(cap.param_names)
            self.param_owners = _owners(self.param_names, cap.param_owners)
            self.gate_names = tuple(cap.gate_names)
            self.baseline = float(cap.baseline)
            self.metric_name = cap.metric_name
        if self._n == self._rows:
            self._compact()
        i, a = self._n, self._a
        a["step"][i] = cap.step
        a["count"][i] = 1
        a[LEN_ROW][i] = length
        for k in (*FLOAT_ROWS, METRIC_ROW):
            a[k][i] = getattr(cap, k)
        rowranges.start(a, i)
        a["clipped"][i] = cap.clipped
        a["nonfinite"][i] = cap.nonfinite
        # Which rows' threshold bounds the global norm (the clipping mode can change mid-run).
        a["clip_by_norm"][i] = cap.clip == "norm"
        a["dh_norm"][i] = cap.dh_norm
        if cap.dc_norm is not None:
            a["dc_norm"][i] = cap.dc_norm
        a["param_grad_norm"][i] = cap.param_grad_norm
        a["rho"][i] = cap.rho
        a["sigma_max"][i] = cap.sigma_max
        a[DX_ROW][i] = np.nan if cap.dx_norm is None else cap.dx_norm
        for name in ("sat_low", "sat_high", "dout_norm", "carried_norm"):
            value = getattr(cap, name)
            if value is None:
                a[name][i] = np.nan
            elif name in ("dout_norm", "carried_norm"):
                a[name][i] = value
            else:                                   # (L, D, G, T): the mean over t
                a[name][i] = value.mean(axis=-1, dtype=np.float64)
        self._n = i + 1
        if not cap.is_light:
            self.latest = cap

    def _compact(self) -> None:
        """Merge the oldest half of the rows into at most a quarter of the capacity.

        Rows are grouped into aligned blocks of S captures (S the smallest power of two
        for which the oldest half fits in that many blocks), counted from the first
        capture. The first time this pairs adjacent rows; later, earlier blocks are
        completed or doubled, so every old row ends up covering the same number of
        steps, S, instead of the oldest rows absorbing ever more of the run.
        """
        half = max(2, self._rows // 2)
        target = max(1, half // 2)
        count = self._a["count"][:half]
        total = int(count.sum())
        size = 1
        while -(-total // size) > target:
            size *= 2
        block = (np.cumsum(count) - count) // size
        first = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
        last = np.r_[first[1:] - 1, half - 1]
        merged = len(first)
        weight = count.astype(np.float64)
        for name, arr in self._a.items():
            old = arr[:half]
            if name == "step":
                new = old[last]
            elif name == "count":
                new = np.add.reduceat(old, first)
            elif name in FLAG_ROWS:
                new = np.logical_or.reduceat(old, first)
            elif name in RANGE_ARRAYS:
                new = rowranges.merge(name, old, first)
            elif name == LEN_ROW:
                new = np.maximum.reduceat(old, first)
            else:
                new = _weighted_means(old, weight, first)
            rest = arr[half:self._n].copy()
            arr[:merged] = new
            arr[merged:merged + len(rest)] = rest
        self._n = merged + self._n - half

    # -- the arrays -------------------------------------------------------------------
    def _rows_of(self, name: str, empty_shape: tuple[int, ...], dtype: type) -> np.ndarray:
        return self._a[name][:self._n] if self._a else np.empty(empty_shape, dtype)

    step = _row_property("step", np.int64, "(K,) int64, last step of each row")
    count = _row_property("count", np.int64, "(K,) int64, captures merged into each row")
    loss = _row_property("loss", np.float64, "(K,) float64 mean batch loss")
    grad_norm = _row_property("grad_norm", np.float64, "(K,) float64 global norm before clipping")
    grad_norm_clipped = _row_property("grad_norm_clipped", np.float64,
                                      "(K,) float64 global norm after clipping")
    lr = _row_property("lr", np.float64, "(K,) float64 learning rate")
    clip_threshold = _row_property("clip_threshold", np.float64, "(K,) float64")
    metric = _row_property(METRIC_ROW, np.float64,
                           "(K,) float64, the task's metric (nan where it has none)")
    clipped = _row_property("clipped", np.bool_, "(K,) bool, clipped at least once in the row")
    nonfinite = _row_property("nonfinite", np.bool_, "(K,) bool, a non-finite step in the row")
    clip_by_norm = _row_property("clip_by_norm", np.bool_,
                                 "(K,) bool, a step in the row clipped by global norm")

    @property
    def dh_norm(self) -> np.ndarray:
        """(K, L, D, T) float32; (0, 0, 0, 0) before the first capture."""
        return self._rows_of("dh_norm", (0, 0, 0, 0), np.float32)

    @property
    def dc_norm(self) -> np.ndarray | None:
        """(K, L, D, T) float32 for LSTM cells, else None."""
        return self._a["dc_norm"][:self._n] if "dc_norm" in self._a else None

    @property
    def param_grad_norm(self) -> np.ndarray:
        """(K, P) float32."""
        return self._rows_of("param_grad_norm", (0, 0), np.float32)

    rho = property(lambda self: self._rows_of("rho", (0, 0, 0, 0), np.float64),
                   doc="(K, L, D, R) float64 spectral radius of each recurrent block")
    sigma_max = property(lambda self: self._rows_of("sigma_max", (0, 0, 0, 0), np.float64),
                         doc="(K, L, D, R) float64 largest singular value of each block")
    sat_low = property(lambda self: self._rows_of("sat_low", (0, 0, 0, 0), np.float32),
                       doc="(K, L, D, G) float32 fraction in the bottom 10%, mean over t")
    sat_high = property(lambda self: self._rows_of("sat_high", (0, 0, 0, 0), np.float32),
                        doc="(K, L, D, G) float32 fraction in the top 10%, mean over t")
    dout_norm = property(lambda self: self._rows_of("dout_norm", (0, 0, 0, 0), np.float32),
                         doc="(K, L, D, T) float32 gradient reaching h_t from outside")
    carried_norm = property(lambda self: self._rows_of("carried_norm", (0, 0, 0, 0), np.float32))
    dx_norm = property(lambda self: self._rows_of(DX_ROW, (0, 0), np.float32),
                       doc="(K, T) float32 ‖∂L/∂x_t‖, NaN where not computed")
    time_len = property(lambda self: self._rows_of(LEN_ROW, (0,), np.int64),
                        doc="(K,) int64 timesteps each row has; those after are absent")

    # -- from a file ------------------------------------------------------------------
    def restore(self, arrays: dict[str, np.ndarray], param_names: tuple[str, ...],
                param_owners: Sequence[Owner], gate_names: tuple[str, ...], baseline: float,
                latest: Capture | None, metric_name: str = "") -> None:
        """Refill from a run file's validated arrays: the rows (``step``, ``count``, the
        scalars, ``metric``, ``dh_norm``, ``dc_norm`` if any, ``param_grad_norm``, and
        those of the :data:`THEORY_ROWS` the file has: the others are NaN, ``rho`` and
        ``sigma_max`` of the shape of ``latest.rho``, or of one block), what the first
        capture named, and the latest full capture. ValueError if there are more rows than
        this history keeps (:meth:`row_limit`)."""
        self.clear()
        k = len(arrays["step"])
        if k:
            dh = arrays["dh_norm"]
            has_dc = "dc_norm" in arrays
            r = blocks_of(arrays, latest)
            p = arrays["param_grad_norm"].shape[1]
            limit = self.row_limit(dh.shape[1:], has_dc, p, r, len(gate_names))
            if k > limit:
                raise ValueError(f"{k} rows are more than this history keeps ({limit})")
            self._allocate(dh.shape[1:], has_dc, p, r, len(gate_names))
            for name, arr in self._a.items():
                arr[:k] = arrays[name] if name in arrays else (
                    dh.shape[-1] if name == LEN_ROW else np.nan)
            rowranges.restore(self._a, arrays, k)
            self._n = k
            self._key = (dh.shape[1:], dh.shape[1:] if has_dc else None,
                         (len(param_names),), param_names, gate_names,
                         "nan" if baseline != baseline else baseline, r)
            self.param_names, self.gate_names, self.baseline = param_names, gate_names, baseline
            self.param_owners = tuple(param_owners)
            self.metric_name = metric_name
        self.latest = latest


for _name in RANGE_ARRAYS:      # loss_min, loss_max, grad_norm_min, …: (K,) float64
    setattr(History, _name, _row_property(_name, np.float64, "(K,) float64, see rowranges"))


def blocks_of(arrays: dict[str, np.ndarray], latest: Capture | None) -> int:
    """R, the recurrent blocks of a run file's rows: from its ``rho`` rows, else (a file
    from before they were kept) its latest capture's, else 1."""
    if "rho" in arrays:
        return int(arrays["rho"].shape[-1])
    return int(np.shape(latest.rho)[-1]) if latest is not None else 1


def _owners(names: tuple[str, ...], owners: Sequence[Owner]) -> tuple[Owner, ...]:
    """``owners`` where there is one per parameter name, else the owners the names say
    (a capture made without them)."""
    if len(owners) == len(names):
        return tuple(owners)
    # Imported here: the network (and torch) is needed only for such captures.
    from gradviz.engine.model.network import owners_from_names
    return owners_from_names(names)


def _weighted_means(x: np.ndarray, weight: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Count-weighted mean of ``x`` (N, ...) over the groups starting at ``first``,
    ignoring non-finite values; a group with none finite gives nan."""
    x64 = x.astype(np.float64)
    w = weight.reshape((-1,) + (1,) * (x.ndim - 1))
    finite = np.isfinite(x64)
    with np.errstate(over="ignore", invalid="ignore"):
        num = np.add.reduceat(np.where(finite, x64 * w, 0.0), first, axis=0)
        den = np.add.reduceat(np.where(finite, w, 0.0), first, axis=0)
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


__all__ = ["History", "HISTORY_CAPACITY", "FLOAT_ROWS", "FLAG_ROWS", "METRIC_ROW",
           "RANGE_ROWS", "RANGE_ARRAYS",
           "THEORY_ROWS", "DX_ROW", "TIME_ROWS", "LEN_ROW", "blocks_of"]
