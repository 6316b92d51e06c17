"""Recurrent cells with hand-written backpropagation through time.

Each cell runs one layer in one direction over a whole sequence. ``forward`` keeps what
the backward pass needs; ``backward`` walks t = T-1 … 0 and returns the *total* gradient
reaching every h_t (and c_t), the parameter gradients and the gradient of the input.
The per-timestep work of the reverse scan is a handful of small tensor operations; all
products that do not depend on the recursion (gate recomputation, parameter gradients,
input gradients) are done for all timesteps at once. Every cell's sequential loops (the
forward passes of the LSTMs and the GRU, and every reverse scan) run as compiled C where
that could be built (:mod:`gradviz.engine.native`), and as the PyTorch operations
below otherwise; the two paths compute the same numbers to rounding.

Parameters follow PyTorch's ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``: ``weight_ih`` (G·H, I),
``weight_hh`` (G·H, H), ``bias_ih`` and ``bias_hh`` (G·H,), with gate blocks in the order
i, f, g, o (LSTM) and r, z, n (GRU, where r multiplies ``W_hn h + b_hn``). The peephole LSTM
adds ``weight_ch`` (3·H,): diagonal peepholes for i, f (on c_{t-1}) and o (on c_t). The
coupled LSTM has blocks f, g, o and uses i = 1 - f.

Shapes: T timesteps, B batch, I input size, H hidden units, G gate blocks. Sequences are
given in *processing order* (the caller reverses them for a backward direction).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import native


@dataclass
class LayerCache:
    """What one layer-direction's forward pass leaves for its backward pass."""
    x: Tensor                 # (T, B, I) input
    h_prev: Tensor            # (T, B, H) h_{t-1}, h_{-1} = h0
    h: Tensor                 # (T, B, H) outputs h_t
    c: Tensor | None          # (T, B, H) cell states c_t (LSTM family)
    coef: dict[str, Tensor] = field(default_factory=dict)  # backward coefficients
    xh: Tensor | None = None  # (T·B, I+H) [x_t, h_{t-1}] when the forward built it
    stats: "GateStats | None" = None  # gate statistics, when the forward was asked for them


@dataclass
class GateStats:
    """Gate activations of one layer-direction, over the batch rows that the loss sees
    (processing order in t): batch means and the saturated fractions."""
    mean: Tensor              # (T, G, H) batch mean of each gate and unit
    low: Tensor               # (T, G) fraction in the bottom 10% of the gate's range
    high: Tensor              # (T, G) fraction in the top 10% of the gate's range


def gate_stats_into(stats: GateStats, s: int, acts: Tensor, rows: int,
                    ranges: tuple[tuple[float, float], ...]) -> None:
    """Write the statistics of ``acts`` (n, B', G, H), first ``rows`` rows, to t = s … s+n-1."""
    if len(set(ranges)) == 1:
        # One range for every gate: scalar bands are faster than a broadcast tensor of them.
        (a0, b0), = set(ranges)
        lo, hi = a0 + 0.1 * (b0 - a0), a0 + 0.9 * (b0 - a0)
    else:
        lo = torch.tensor([a + 0.1 * (b - a) for a, b in ranges], dtype=acts.dtype,
                          device=acts.device).view(1, 1, -1, 1)
        hi = torch.tensor([a + 0.9 * (b - a) for a, b in ranges], dtype=acts.dtype,
                          device=acts.device).view(1, 1, -1, 1)
    a = acts[:, :rows]
    n = a.shape[0]
    torch.mean(a, 1, out=stats.mean[s:s + n])
    # Comparing into a float buffer and summing over the batch dimension first is several
    # times faster than counting a boolean mask over (B, H).
    mask = torch.empty(a.shape, dtype=a.dtype, device=a.device)
    torch.lt(a, lo, out=mask)
    torch.mean(mask.sum(1), -1, out=stats.low[s:s + n]).div_(rows)
    torch.gt(a, hi, out=mask)
    torch.mean(mask.sum(1), -1, out=stats.high[s:s + n]).div_(rows)


def empty_stats(T: int, G: int, H: int, like: Tensor) -> GateStats:
    return GateStats(mean=like.new_empty((T, G, H)), low=like.new_empty((T, G)),
                     high=like.new_empty((T, G)))


@dataclass
class LayerGrads:
    dh: Tensor                # (T, B, H) total ∂L/∂h_t
    dc: Tensor | None         # (T, B, H) total ∂L/∂c_t (LSTM family)
    params: dict[str, Tensor]  # gradient of each parameter, by short name (weight_ih, …)
    dx: Tensor | None         # (T, B, I) ∂L/∂x_t, None when not asked for


def _cut_after(t: int, tbptt: int) -> bool:
    """True if the gradient must not flow from step t+1 back into step t (chunk boundary)."""
    return tbptt > 0 and (t + 1) % tbptt == 0


class Cell:
    """One cell family. Subclasses define the gates and the two passes."""
    name: str
    blocks: tuple[str, ...]            # parameter gate blocks, in PyTorch order
    gate_names: tuple[str, ...]        # gates shown to the user
    gate_ranges: tuple[tuple[float, float], ...]
    has_cell_state: bool = False

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def param_shapes(self, input_size: int, hidden: int) -> dict[str, tuple[int, ...]]:
        gh = self.n_blocks * hidden
        return {"weight_ih": (gh, input_size), "weight_hh": (gh, hidden),
                "bias_ih": (gh,), "bias_hh": (gh,)}

    def forward(self, x: Tensor, h0: Tensor, c0: Tensor | None, p: dict[str, Tensor],
                stats_rows: int | None = None) -> LayerCache:
        """With ``stats_rows``, the cache also holds the gate statistics of those rows."""
        raise NotImplementedError

    def backward(self, cache: LayerCache, p: dict[str, Tensor], dout: Tensor, tbptt: int = 0,
                 need_dx: bool = True) -> LayerGrads:
        raise NotImplementedError

    def gates(self, cache: LayerCache) -> Tensor:
        """Gate activations (T, B, len(gate_names), H) for capture."""
        raise NotImplementedError

    def _with_stats(self, cache: LayerCache, stats_rows: int | None) -> LayerCache:
        if stats_rows is not None:
            acts = self.gates(cache)
            T, _, G, H = acts.shape
            cache.stats = empty_stats(T, G, H, acts)
            gate_stats_into(cache.stats, 0, acts, stats_rows, self.gate_ranges)
        return cache

    # -- shared pieces ------------------------------------------------------------------
    @staticmethod
    def _linear_grads(dz_x: Tensor, dz_h: Tensor, cache: LayerCache, weight_ih: Tensor,
                      need_dx: bool) -> tuple[dict[str, Tensor], Tensor | None]:
        """Parameter and input gradients from the pre-activation gradients, all t at once.

        ``dz_x`` (T, B, G·H) is ∂L/∂(W_ih x + b_ih), ``dz_h`` the same for W_hh h + b_hh.
        """
        gh = dz_x.shape[-1]
        dzx = dz_x.reshape(-1, gh)
        dzh = dzx if dz_h is dz_x else dz_h.reshape(-1, gh)
        x = cache.x.reshape(-1, cache.x.shape[-1])
        # (xᵀ dz)ᵀ rather than dzᵀ x: BLAS is several times faster this way round for the
        # tall, narrow matrices here (5x for a 2-wide input).
        if cache.xh is not None and dzh is dzx:
            w = (cache.xh.t() @ dzx).t()
            w_ih, w_hh = w[:, :x.shape[1]], w[:, x.shape[1]:]
        else:
            w_ih = (x.t() @ dzx).t()
            w_hh = (cache.h_prev.reshape(-1, cache.h_prev.shape[-1]).t() @ dzh).t()
        grads = {"weight_ih": w_ih.contiguous(), "weight_hh": w_hh.contiguous(),
                 "bias_ih": dzx.sum(0)}
        grads["bias_hh"] = grads["bias_ih"].clone() if dzh is dzx else dzh.sum(0)
        dx = (dzx @ weight_ih).view(cache.x.shape) if need_dx else None
        return grads, dx


# Inputs this narrow are multiplied inside the compiled LSTM forward's per-step product: a
# separate product over all timesteps with an inner size this small is slow (MKL, K = 2:
# 3 ms at T = 1000, H = 32, against 0.3 ms more in the per-step products).
_FOLD_INPUT = 16
# Timesteps per chunk of the LSTM's gate recomputation: 32·B·4H floats stay in the cache.
_CHUNK = 32
# Timesteps per chunk of the LSTM's backward pass: its M, N and R (3·16·B·5H floats) fit in L2.
_BACK_CHUNK = 32


def _tanh(x: Tensor) -> Tensor:
    """tanh(x) = 2σ(2x) - 1, in place on a fresh tensor; on CPU torch.sigmoid is several
    times faster than torch.tanh, and the forward recompute is dominated by these."""
    return torch.sigmoid(x * 2).mul_(2).sub_(1)


def _compiled(like: Tensor):
    """The compiled loops (gradviz.engine.native) when they can take ``like``'s dtype and
    device, else None."""
    k = native.kernels()
    return k if k is not None and k.supports(like) else None


def _compiled_inputs(x: Tensor, h0: Tensor, p: dict[str, Tensor], G: int):
    """What the compiled LSTM forward passes take: (fold, zx, w_t, xh), see _native.c. A
    narrow input (I <= _FOLD_INPUT) is multiplied inside each step's product (zx is then
    the bias for every row, w_t = [W_ih, W_hh]ᵀ); a wide one in one product over all t."""
    T, B, I = x.shape
    H = h0.shape[-1]
    bias = p["bias_ih"] + p["bias_hh"]
    fold = I <= _FOLD_INPUT
    if fold:
        zx = bias.expand(B, G * H).contiguous()
        w_t = torch.cat([p["weight_ih"], p["weight_hh"]], 1).t().contiguous()
    else:
        zx = torch.addmm(bias, x.reshape(T * B, I), p["weight_ih"].t()).view(T, B, G * H)
        w_t = p["weight_hh"].t().contiguous()
    xh = x.new_empty((T, B, I + H))
    xh[:, :, :I] = x
    return fold, zx, w_t, xh


def _h_prev(h: Tensor, h0: Tensor) -> Tensor:
    return torch.cat([h0.unsqueeze(0), h[:-1]], 0)


def _weights(p: dict[str, Tensor]) -> list[Tensor]:
    return [p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]]


# ---------------------------------------------------------------------------------------
class RNNCell(Cell):
    """h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), φ = tanh or ReLU."""
    blocks = ("h",)

    def __init__(self, nonlinearity: str):
        self.nonlinearity = nonlinearity
        self.name = f"rnn-{nonlinearity}"
        self.gate_names = ("h",)
        # ReLU has no upper bound; [0, 1] is the range its saturation fractions refer to.
        self.gate_ranges = ((-1.0, 1.0),) if nonlinearity == "tanh" else ((0.0, 1.0),)

    def forward(self, x, h0, c0, p, stats_rows=None):
        fused = torch.rnn_tanh if self.nonlinearity == "tanh" else torch.rnn_relu
        with torch.no_grad():
            h, _ = fused(x, h0.unsqueeze(0), _weights(p), True, 1, 0.0, False, False, False)
        if self.nonlinearity == "tanh":
            dphi = 1.0 - h * h
        else:
            dphi = (h > 0).to(h.dtype)
        cache = LayerCache(x=x, h_prev=_h_prev(h, h0), h=h, c=None, coef={"dphi": dphi})
        return self._with_stats(cache, stats_rows)

    def backward(self, cache, p, dout, tbptt=0, need_dx=True):
        w_hh = p["weight_hh"]
        dphi = cache.coef["dphi"]
        dh = torch.empty_like(dout)
        dz = torch.empty_like(dout)
        T = dout.shape[0]
        compiled = _compiled(dout)
        if compiled is not None:
            compiled.rnn_backward(dphi, dout, w_hh, tbptt, dh, dz)
            grads, dx = self._linear_grads(dz, dz, cache, p["weight_ih"], need_dx)
            return LayerGrads(dh=dh, dc=None, params=grads, dx=dx)
        # Per-step views made once: indexing a tensor inside the loop costs more than the math.
        dout_t, dh_t, dz_t, dphi_t = dout.unbind(0), dh.unbind(0), dz.unbind(0), dphi.unbind(0)
        for t in range(T - 1, -1, -1):
            if t == T - 1 or _cut_after(t, tbptt):
                dh_t[t].copy_(dout_t[t])
            else:
                torch.addmm(dout_t[t], dz_t[t + 1], w_hh, out=dh_t[t])
            torch.mul(dh_t[t], dphi_t[t], out=dz_t[t])
        grads, dx = self._linear_grads(dz, dz, cache, p["weight_ih"], need_dx)
        return LayerGrads(dh=dh, dc=None, params=grads, dx=dx)

    def gates(self, cache):
        return cache.h.unsqueeze(2)


# ---------------------------------------------------------------------------------------
class _LSTMFamily(Cell):
    """Shared reverse scan of the LSTM variants.

    With dZ_t the gradient of the gate pre-activations (B, G, H), the recursion is
        dh_t = dout_t + dZ_{t+1} W_hh
        dc_t = dh_t ⊙ A_t + dc_{t+1} ⊙ F_{t+1}
        dZ_t[:G-1] = dc_t ⊙ Kc_t,   dZ_t[G-1] = dh_t ⊙ Ko_t
    where A, F, Kc, Ko depend only on the forward pass (F includes the peepholes through
    which c_t also reaches step t+1's gates). Step t keeps R_t = [dZ_t, carry_t] (B, G+1, H)
    with carry_t = dc_t ⊙ F_t, the only part of dc_t that step t-1 needs. Substituting dc_t,
        R_t = dh_t ⊙ M_t + carry_{t+1} ⊙ N_t,
        M = [A ⊙ Kc, Ko, A ⊙ F],   N = [Kc, 0, F]      (T, B, G+1, H),
    so a step is one product for dh_t and two element-wise operations on contiguous
    (B, G+1, H) blocks; dc, which only the capture needs, is formed for all t afterwards.
    The peephole and coupled forward passes leave A, M and N in the cache (``_scan_coefs``
    builds M and N from A and K = [F, Kc, Ko]); the LSTM keeps its gate activations and
    makes its coefficients a chunk of timesteps at a time in its own backward.
    """
    has_cell_state = True

    @staticmethod
    def _scan_coefs(A: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
        """M and N from A (T, B, H) and K = [F, Kc, Ko] (T, B, G+1, H)."""
        N = torch.cat([K[:, :, 1:-1], torch.zeros_like(K[:, :, :1]), K[:, :, :1]], 2)
        M = N * A.unsqueeze(2)
        M[:, :, -2] = K[:, :, -1]
        return M, N

    def _scan(self, dout, w_hh, M, N, tbptt):
        """Returns dh (T, B, H) and R (T, B, G+1, H): R[:, :, :G] is dZ, R[:, :, G] the carry."""
        T, B, H = dout.shape
        G1 = M.shape[2]
        dh = torch.empty_like(dout)
        R = torch.empty((T, B, G1, H), dtype=dout.dtype, device=dout.device)
        compiled = _compiled(dout)
        if compiled is not None:
            compiled.family_scan(M, N, dout, w_hh, tbptt, dh, R)
            return dh, R
        # Per-step views made once: indexing a tensor inside the loop costs more than the math.
        dout_t, dh_t, R_t = dout.unbind(0), dh.unbind(0), R.unbind(0)
        dh_col = dh.unsqueeze(2).unbind(0)                      # (B, 1, H), broadcast
        dz_t = R.view(T, B, G1 * H)[:, :, :-H].unbind(0)        # (B, G·H) for the product
        carry_col = R[:, :, -1:].unbind(0)                      # (B, 1, H)
        M_t, N_t = M.unbind(0), N.unbind(0)
        for t in range(T - 1, -1, -1):
            if t < T - 1 and not _cut_after(t, tbptt):
                torch.addmm(dout_t[t], dz_t[t + 1], w_hh, out=dh_t[t])
                torch.mul(carry_col[t + 1], N_t[t], out=R_t[t])
                R_t[t].addcmul_(dh_col[t], M_t[t])
            else:
                dh_t[t].copy_(dout_t[t])
                torch.mul(dh_col[t], M_t[t], out=R_t[t])
        return dh, R

    def backward(self, cache, p, dout, tbptt=0, need_dx=True):
        A = cache.coef["A"]
        dh, R = self._scan(dout, p["weight_hh"], cache.coef["M"], cache.coef["N"], tbptt)
        T, B, G1, H = R.shape
        # dc_t = dh_t ⊙ A_t + carry_{t+1}, except where the gradient does not flow on.
        dc = dh * A
        dc[:-1] += R[1:, :, -1]
        for t in range(T - 1):
            if _cut_after(t, tbptt):
                torch.mul(dh[t], A[t], out=dc[t])
        dz = R.view(T * B, G1 * H)[:, :-H]          # (T·B, G·H), rows G+1 blocks apart
        grads, dx = self._linear_grads(dz, dz, cache, p["weight_ih"], need_dx)
        self._peephole_grads(grads, R[:, :, :-1], cache)
        return LayerGrads(dh=dh, dc=dc, params=grads, dx=dx)

    def _peephole_grads(self, grads, dz, cache):
        pass

    kind = ""          # the compiled forward's name for the cell: "lstm", "peephole", "coupled"

    def _recurrence(self, x, h0, c0, p, step, stats_rows):
        """The forward loop: acts, h, c, tanh(c), xh ([x_t, h_{t-1}] rows, or None) and the
        gate statistics (or None: the caller computes them), from the compiled loop where
        there is one, else from _unrolled_forward(step) (the variants' PyTorch loop)."""
        compiled = _compiled(x)
        if compiled is None:
            return (*self._unrolled_forward(x, h0, c0, p, step), None, None)
        T, B, I = x.shape
        H, G = h0.shape[-1], self.n_blocks
        fold, zx, w_t, xh = _compiled_inputs(x, h0, p, G)
        acts = x.new_empty((T, B, G, H))
        c, tanh_c, h = (x.new_empty((T, B, H)) for _ in range(3))
        stats = empty_stats(T, G, H, x) if stats_rows is not None else None
        compiled.lstm_forward(I, fold, zx, w_t, h0.contiguous(), c0.contiguous(), acts, c,
                              tanh_c, h, xh, stats_rows or 0,
                              *((stats.mean, stats.low, stats.high) if stats else ()),
                              kind=self.kind, w_c=p.get("weight_ch"))
        return acts, h, c, tanh_c, xh.view(T * B, I + H), self._shown_stats(stats)

    def _shown_stats(self, stats):
        """Statistics of the stored gates as statistics of the gates shown (gate_names)."""
        return stats

    def _unrolled_forward(self, x, h0, c0, p, step):
        """The forward loop of the LSTM variants that PyTorch has no kernel for.

        ``step(z, a, c_prev, c, tanh_c, h)`` turns one timestep's pre-activations z
        (B, G, H) into its gate activations a, c_t, tanh(c_t) and h_t, written in place.
        Returns acts (T, B, G, H), h, c and tanh(c) (T, B, H).
        """
        T, B, _ = x.shape
        H = h0.shape[-1]
        G = self.n_blocks
        w_hh_t = p["weight_hh"].t()
        zx = torch.addmm(p["bias_ih"] + p["bias_hh"], x.reshape(T * B, -1),
                         p["weight_ih"].t()).view(T, B, G * H)
        acts = x.new_empty((T, B, G, H))
        h, c, tanh_c = x.new_empty((T, B, H)), x.new_empty((T, B, H)), x.new_empty((T, B, H))
        zx_t, a_t = zx.unbind(0), acts.unbind(0)
        h_t, c_t, tc_t = h.unbind(0), c.unbind(0), tanh_c.unbind(0)
        h_prev, c_prev = h0, c0
        for t in range(T):
            z = zx_t[t].addmm_(h_prev, w_hh_t).view(B, G, H)
            step(z, a_t[t], c_prev, c_t[t], tc_t[t], h_t[t])
            h_prev, c_prev = h_t[t], c_t[t]
        return acts, h, c, tanh_c

    def gates(self, cache):
        return cache.coef["acts"]


class LSTMCell(_LSTMFamily):
    """i, f, o = σ(·), g = tanh(·); c_t = f ⊙ c_{t-1} + i ⊙ g; h_t = o ⊙ tanh(c_t)."""
    name = "lstm"
    kind = "lstm"
    blocks = ("i", "f", "g", "o")
    gate_names = ("i", "f", "g", "o")
    gate_ranges = ((0.0, 1.0), (0.0, 1.0), (-1.0, 1.0), (0.0, 1.0))

    def forward(self, x, h0, c0, p, stats_rows=None):
        if _compiled(x) is not None:
            # The whole forward pass in one call of the compiled loop: gates, states,
            # statistics and [x_t, h_{t-1}] for the weight gradients, nothing computed twice.
            acts, h, c, tanh_c, xh, stats = self._recurrence(x, h0, c0, p, None, stats_rows)
            return LayerCache(x=x, h_prev=_h_prev(h, h0), h=h, c=c,
                              coef={"acts": acts, "c0": c0, "tanh_c": tanh_c}, xh=xh,
                              stats=stats)
        T, B, _ = x.shape
        H = h0.shape[-1]
        with torch.no_grad():
            h, _, _ = torch.lstm(x, (h0.unsqueeze(0), c0.unsqueeze(0)), _weights(p), True, 1, 0.0,
                                 False, False, False)
            h_prev = _h_prev(h, h0)
            # Now that every h_{t-1} is known, recompute the gates: one product over
            # [x_t, h_{t-1}] (a narrow input makes two products slow) and one sigmoid pass for
            # all four, g = tanh(z) = 2σ(2z) - 1 with the 2 folded into the weights.
            xh = torch.cat([x, h_prev], 2).view(T * B, -1)
            w = torch.cat([p["weight_ih"], p["weight_hh"]], 1).t().contiguous()
            bias = p["bias_ih"] + p["bias_hh"]
            w[:, 2 * H:3 * H] *= 2
            bias[2 * H:3 * H] *= 2
            c = torch.empty((T, B, H), dtype=x.dtype, device=x.device)
            acts = torch.empty((T, B, 4, H), dtype=x.dtype, device=x.device)
            stats = empty_stats(T, 4, H, x) if stats_rows is not None else None
            c_last = c0
            # A chunk of timesteps at a time, so that its gate tensors stay in the cache.
            for s in range(0, T, _CHUNK):
                e = min(T, s + _CHUNK)
                n = e - s
                # a = σ([z_i, z_f, 2 z_g, z_o]); then g = 2 a_g - 1.
                a = acts[s:e]
                torch.addmm(bias, xh[s * B:e * B], w, out=a.view(n * B, 4 * H)).sigmoid_()
                if stats is not None:
                    # On this scale every gate's bottom and top 10% are a < 0.1 and a > 0.9.
                    gate_stats_into(stats, s, a, stats_rows, ((0.0, 1.0),) * 4)
                a[:, :, 2].mul_(2).sub_(1)
                i, f, g, _ = a.unbind(2)
                cc = torch.mul(i, g, out=c[s:e])
                cc_t, f_t = cc.unbind(0), f.unbind(0)
                for t in range(n):
                    cc_t[t].addcmul_(f_t[t], cc_t[t - 1] if t else c_last)
                c_last = cc_t[-1]
            if stats is not None:
                stats.mean[:, 2].mul_(2).sub_(1)    # mean g = 2 mean σ(2 z_g) - 1
        return LayerCache(x=x, h_prev=h_prev, h=h, c=c, coef={"acts": acts, "c0": c0}, xh=xh,
                          stats=stats)

    def _coefs_into(self, M: Tensor, N: Tensor, A: Tensor, acts: Tensor, c: Tensor,
                    c_prev: Tensor) -> None:
        """The scan's coefficients for a run of timesteps (see _LSTMFamily):
        N = [Kc_i, Kc_f, Kc_g, 0, f] with Kc = ∂c/∂z = [g σ'_i, c_{t-1} σ'_f, i (1-g²)],
        M = [A ⊙ Kc, Ko, A ⊙ f] with A = o (1 - tanh² c) and Ko = ∂h/∂z_o = tanh(c) σ'_o."""
        i, f, g, o = acts.unbind(2)
        tanh_c = _tanh(c)
        torch.addcmul(i, i, i, value=-1, out=N[:, :, 0]).mul_(g)
        torch.addcmul(f, f, f, value=-1, out=N[:, :, 1]).mul_(c_prev)
        torch.addcmul(i, i, g * g, value=-1, out=N[:, :, 2])
        N[:, :, 3].zero_()
        N[:, :, 4].copy_(f)
        torch.addcmul(o, o * tanh_c, tanh_c, value=-1, out=A)
        torch.mul(N, A.unsqueeze(2), out=M)
        torch.addcmul(o, o, o, value=-1, out=M[:, :, 3]).mul_(tanh_c)

    def backward(self, cache, p, dout, tbptt=0, need_dx=True):
        """The scan of _LSTMFamily, a chunk of timesteps at a time from the end: each chunk's
        coefficients are made just before it is scanned and its parameter gradients
        accumulated just after, so nothing of size T·B·5H ever leaves the cache."""
        T, B, H = dout.shape
        compiled = _compiled(dout)
        if compiled is not None:
            return self._compiled_backward(compiled, cache, p, dout, tbptt, need_dx)
        acts, c, xh = cache.coef["acts"], cache.c, cache.xh
        I = cache.x.shape[-1]
        w_hh = p["weight_hh"]
        dh = torch.empty_like(dout)
        dc = torch.empty_like(dout)
        gw = dout.new_zeros((I + H, 4 * H))              # (∂L/∂[W_ih, W_hh])ᵀ
        gb = dout.new_zeros(4 * H)
        dx = cache.x.new_empty(cache.x.shape) if need_dx else None
        n_max = min(T, _BACK_CHUNK)
        M = dout.new_empty((n_max, B, 5, H))
        N = torch.empty_like(M)
        A = dout.new_empty((n_max, B, H))
        Rs = [dout.new_empty((n_max, B, 5, H)) for _ in range(2)]   # this chunk's and the next
        nxt = None                 # R_{e} of the chunk after this one: (B, 5, H)
        for k, s in enumerate(range((T - 1) // n_max * n_max, -1, -n_max)):
            e = min(T, s + n_max)
            n = e - s
            c_prev = c[s - 1:e - 1] if s else torch.cat([cache.coef["c0"].unsqueeze(0), c[:e - 1]])
            self._coefs_into(M[:n], N[:n], A[:n], acts[s:e], c[s:e], c_prev)
            R = Rs[k % 2][:n]
            dout_t, dh_t, R_t = dout[s:e].unbind(0), dh[s:e].unbind(0), R.unbind(0)
            dh_col = dh[s:e].unsqueeze(2).unbind(0)
            dz_t = R.view(n, B, 5 * H)[:, :, :4 * H].unbind(0)
            carry_col = R[:, :, 4:].unbind(0)
            M_t, N_t = M[:n].unbind(0), N[:n].unbind(0)
            for j in range(n - 1, -1, -1):
                t = s + j
                if t < T - 1 and not _cut_after(t, tbptt):
                    if j == n - 1:
                        nz, ncarry = nxt.view(B, 5 * H)[:, :4 * H], nxt[:, 4:]
                    else:
                        nz, ncarry = dz_t[j + 1], carry_col[j + 1]
                    torch.addmm(dout_t[j], nz, w_hh, out=dh_t[j])
                    torch.mul(ncarry, N_t[j], out=R_t[j])
                    R_t[j].addcmul_(dh_col[j], M_t[j])
                else:
                    dh_t[j].copy_(dout_t[j])
                    torch.mul(dh_col[j], M_t[j], out=R_t[j])
            # dc_t = dh_t ⊙ A_t + carry_{t+1}, where the gradient flows on from t+1.
            dcc = torch.mul(dh[s:e], A[:n], out=dc[s:e])
            dcc[:-1] += R[1:, :, 4]
            if e < T and not _cut_after(e - 1, tbptt):
                dcc[-1] += nxt[:, 4]
            for t in range(s, e - 1):
                if _cut_after(t, tbptt):
                    torch.mul(dh[t], A[t - s], out=dc[t])
            dz = R.view(n * B, 5 * H)[:, :4 * H]
            gw.addmm_(xh[s * B:e * B].t(), dz)
            gb += dz.sum(0)
            if need_dx:
                torch.mm(dz, p["weight_ih"], out=dx[s:e].view(n * B, I))
            nxt = R[0]
        grads = {"weight_ih": gw[:I].t().contiguous(), "weight_hh": gw[I:].t().contiguous(),
                 "bias_ih": gb, "bias_hh": gb.clone()}
        return LayerGrads(dh=dh, dc=dc, params=grads, dx=dx)

    @staticmethod
    def _compiled_backward(compiled, cache, p, dout, tbptt, need_dx):
        """The same scan in one call of the compiled kernel; what does not depend on the
        recursion (tanh(c), the parameter and input gradients) batched over t in PyTorch."""
        T, B, H = dout.shape
        I = cache.x.shape[-1]
        dh, dc = torch.empty_like(dout), torch.empty_like(dout)
        dz = dout.new_empty((T, B, 4 * H))
        tanh_c = cache.coef["tanh_c"] if "tanh_c" in cache.coef else _tanh(cache.c)
        compiled.lstm_backward(cache.coef["acts"], cache.c, cache.coef["c0"].contiguous(),
                               tanh_c, dout, p["weight_hh"], tbptt, dh, dc, dz,
                               dout.new_empty((B, H)))
        dz = dz.view(T * B, 4 * H)
        gw = cache.xh.t() @ dz                        # (∂L/∂[W_ih, W_hh])ᵀ
        gb = dz.sum(0)
        grads = {"weight_ih": gw[:I].t().contiguous(), "weight_hh": gw[I:].t().contiguous(),
                 "bias_ih": gb, "bias_hh": gb.clone()}
        dx = (dz @ p["weight_ih"]).view(cache.x.shape) if need_dx else None
        return LayerGrads(dh=dh, dc=dc, params=grads, dx=dx)

    def gates(self, cache):
        return cache.coef["acts"]


class PeepholeLSTMCell(_LSTMFamily):
    """LSTM whose gates also see the cell state (Gers & Schmidhuber 2000):
    i = σ(… + w_ci ⊙ c_{t-1}), f = σ(… + w_cf ⊙ c_{t-1}), o = σ(… + w_co ⊙ c_t)."""
    name = "lstm-peephole"
    kind = "peephole"
    blocks = ("i", "f", "g", "o")
    gate_names = ("i", "f", "g", "o")
    gate_ranges = LSTMCell.gate_ranges

    def param_shapes(self, input_size, hidden):
        shapes = super().param_shapes(input_size, hidden)
        shapes["weight_ch"] = (3 * hidden,)
        return shapes

    def forward(self, x, h0, c0, p, stats_rows=None):
        w_c = p["weight_ch"].view(3, h0.shape[-1])
        w_cif, w_co = w_c[:2], w_c[2]

        def step(z, a, c_prev, c, tanh_c, h):
            torch.sigmoid(torch.addcmul(z[:, :2], c_prev.unsqueeze(1), w_cif), out=a[:, :2])
            torch.tanh(z[:, 2], out=a[:, 2])
            torch.mul(a[:, 0], a[:, 2], out=c).addcmul_(a[:, 1], c_prev)
            torch.sigmoid(torch.addcmul(z[:, 3], w_co, c), out=a[:, 3])
            torch.mul(a[:, 3], torch.tanh(c, out=tanh_c), out=h)

        with torch.no_grad():
            acts, h, c, tanh_c, xh, stats = self._recurrence(x, h0, c0, p, step, stats_rows)
            i, f, g, o = acts.unbind(2)
            c_prev_all = _h_prev(c, c0)
            bo = tanh_c * o * (1 - o)
            ki, kf = g * i * (1 - i), c_prev_all * f * (1 - f)
            coef = {
                "acts": acts,
                # c_t reaches the loss through h_t and through o_t's peephole, and step t+1
                # through f_{t+1} and the peepholes of i_{t+1} and f_{t+1}.
                "A": o * (1 - tanh_c * tanh_c) + bo * w_co,
                "c_prev": c_prev_all,
            }
            coef["M"], coef["N"] = self._scan_coefs(coef["A"], torch.stack(
                [f + ki * w_c[0] + kf * w_c[1], ki, kf, i * (1 - g * g), bo], 2))
        cache = LayerCache(x=x, h_prev=_h_prev(h, h0), h=h, c=c, coef=coef, xh=xh, stats=stats)
        return cache if stats is not None else self._with_stats(cache, stats_rows)

    def _peephole_grads(self, grads, dz, cache):
        c_prev = cache.coef["c_prev"]                # dz is (T, B, 4, H)
        grads["weight_ch"] = torch.cat([
            (dz[:, :, 0] * c_prev).sum((0, 1)),
            (dz[:, :, 1] * c_prev).sum((0, 1)),
            (dz[:, :, 3] * cache.c).sum((0, 1)),
        ])


class CoupledLSTMCell(_LSTMFamily):
    """LSTM with coupled input and forget gates (Greff et al. 2017, "CIFG"):
    blocks f, g, o; c_t = f ⊙ c_{t-1} + (1 - f) ⊙ g."""
    name = "lstm-coupled"
    kind = "coupled"
    blocks = ("f", "g", "o")
    gate_names = ("i", "f", "g", "o")  # i = 1 - f is shown for comparison with the LSTM
    gate_ranges = LSTMCell.gate_ranges

    def forward(self, x, h0, c0, p, stats_rows=None):
        def step(z, a, c_prev, c, tanh_c, h):
            torch.sigmoid(z, out=a)
            torch.tanh(z[:, 1], out=a[:, 1])
            # c = f c_prev + (1 - f) g = g + f (c_prev - g)
            torch.addcmul(a[:, 1], a[:, 0], c_prev - a[:, 1], out=c)
            torch.mul(a[:, 2], torch.tanh(c, out=tanh_c), out=h)

        with torch.no_grad():
            acts, h, c, tanh_c, xh, stats = self._recurrence(x, h0, c0, p, step, stats_rows)
            f, g, o = acts.unbind(2)
            c_prev_all = _h_prev(c, c0)
            coef = {
                "acts": acts,
                "A": o * (1 - tanh_c * tanh_c),
            }
            coef["M"], coef["N"] = self._scan_coefs(coef["A"], torch.stack(
                [f, (c_prev_all - g) * f * (1 - f), (1 - f) * (1 - g * g),
                 tanh_c * o * (1 - o)], 2))
        cache = LayerCache(x=x, h_prev=_h_prev(h, h0), h=h, c=c, coef=coef, xh=xh, stats=stats)
        return cache if stats is not None else self._with_stats(cache, stats_rows)

    def _shown_stats(self, stats):
        # i = 1 - f: its mean is 1 - f's, its bottom band (i < 0.1) f's top (f > 0.9) and
        # its top band f's bottom.
        if stats is None:
            return None
        return GateStats(mean=torch.cat([1 - stats.mean[:, :1], stats.mean], 1),
                         low=torch.cat([stats.high[:, :1], stats.low], 1),
                         high=torch.cat([stats.low[:, :1], stats.high], 1))

    def gates(self, cache):
        acts = cache.coef["acts"]
        return torch.cat([1 - acts[:, :, :1], acts], 2)


# ---------------------------------------------------------------------------------------
class GRUCell(Cell):
    """r, z = σ(·); n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)); h_t = (1-z) ⊙ n + z ⊙ h_{t-1}.

    The reverse scan is linear in dh: with u = W_hh h_{t-1} + b_hh,
        dh_{t-1} = dout_{t-1} + dh_t ⊙ z_t + (dh_t ⊙ K_t) W_hh,   K = [Cr, Cz, Cn ⊙ r]
    where Cn = (1-z)(1-n²), Cz = (h_{t-1}-n) z(1-z), Cr = Cn u_n r(1-r).
    """
    name = "gru"
    blocks = ("r", "z", "n")
    gate_names = ("r", "z", "n")
    gate_ranges = ((0.0, 1.0), (0.0, 1.0), (-1.0, 1.0))

    def forward(self, x, h0, c0, p, stats_rows=None):
        compiled = _compiled(x)
        if compiled is not None:
            return self._compiled_forward(compiled, x, h0, p, stats_rows)
        T, B, _ = x.shape
        H = h0.shape[-1]
        with torch.no_grad():
            h, _ = torch.gru(x, h0.unsqueeze(0), _weights(p), True, 1, 0.0, False, False, False)
            h_prev = _h_prev(h, h0)
            zx = torch.addmm(p["bias_ih"], x.reshape(T * B, -1), p["weight_ih"].t()).view(T, B, 3, H)
            u = torch.addmm(p["bias_hh"], h_prev.reshape(T * B, H), p["weight_hh"].t()).view(T, B, 3, H)
            rz = torch.sigmoid(zx[:, :, :2] + u[:, :, :2])
            r, z = rz.unbind(2)
            n = _tanh(torch.addcmul(zx[:, :, 2], r, u[:, :, 2]))
            cn = (1 - z) * (1 - n * n)
            cz = (h_prev - n) * z * (1 - z)
            cr = cn * u[:, :, 2] * r * (1 - r)
            coef = {"r": r, "z": z, "n": n, "Kh": torch.stack([cr, cz, cn * r], 2),
                    "Kx": torch.stack([cr, cz, cn], 2)}
        return self._with_stats(LayerCache(x=x, h_prev=h_prev, h=h, c=None, coef=coef),
                                stats_rows)

    @staticmethod
    def _compiled_forward(compiled, x, h0, p, stats_rows):
        """The whole forward pass in one call of the compiled loop: gates, u_n = W_hn h + b_hn
        (the backward's coefficients come from these) and the statistics."""
        T, B, I = x.shape
        H = h0.shape[-1]
        zx = torch.addmm(p["bias_ih"], x.reshape(T * B, I), p["weight_ih"].t()).view(T, B, 3 * H)
        gates = x.new_empty((T, B, 3, H))
        un, h = x.new_empty((T, B, H)), x.new_empty((T, B, H))
        stats = empty_stats(T, 3, H, x) if stats_rows is not None else None
        compiled.gru_forward(zx, p["weight_hh"].t().contiguous(),
                             p["bias_hh"].detach().expand(B, 3 * H).contiguous(),
                             h0.contiguous(), gates, un, h, x.new_empty((B, 3 * H)),
                             stats_rows or 0, *((stats.mean, stats.low, stats.high) if stats else ()))
        return LayerCache(x=x, h_prev=_h_prev(h, h0), h=h, c=None,
                          coef={"gates": gates, "un": un}, stats=stats)

    def backward(self, cache, p, dout, tbptt=0, need_dx=True):
        T, B, H = dout.shape
        w_hh = p["weight_hh"]
        dh = torch.empty_like(dout)
        # A cache made by the compiled forward holds what only the compiled scan reads.
        if "un" in cache.coef:
            dzh, dzx = dout.new_empty((T, B, 3 * H)), dout.new_empty((T, B, 3 * H))
            native.kernels().gru_backward(cache.coef["gates"], cache.coef["un"], cache.h_prev,
                                          dout, w_hh, tbptt, dh, dzh, dzx)
            grads, dx = self._linear_grads(dzx, dzh, cache, p["weight_ih"], need_dx)
            return LayerGrads(dh=dh, dc=None, params=grads, dx=dx)
        z, kh = cache.coef["z"], cache.coef["Kh"]
        dzh = torch.empty((T, B, 3, H), dtype=dout.dtype, device=dout.device)
        dzh_flat = dzh.view(T, B, 3 * H)
        dout_t, dh_t, z_t, kh_t = dout.unbind(0), dh.unbind(0), z.unbind(0), kh.unbind(0)
        dzh_t, dzh_flat_t = dzh.unbind(0), dzh_flat.unbind(0)
        dh_row = dh.unsqueeze(2).unbind(0)          # (B, 1, H) views for broadcasting
        for t in range(T - 1, -1, -1):
            if t < T - 1 and not _cut_after(t, tbptt):
                torch.addmm(dout_t[t], dzh_flat_t[t + 1], w_hh, out=dh_t[t])
                dh_t[t].addcmul_(dh_t[t + 1], z_t[t + 1])
            else:
                dh_t[t].copy_(dout_t[t])
            torch.mul(dh_row[t], kh_t[t], out=dzh_t[t])
        dzx = (dh.unsqueeze(2) * cache.coef["Kx"]).view(T, B, 3 * H)
        grads, dx = self._linear_grads(dzx, dzh_flat, cache, p["weight_ih"], need_dx)
        return LayerGrads(dh=dh, dc=None, params=grads, dx=dx)

    def gates(self, cache):
        if "gates" in cache.coef:
            return cache.coef["gates"]
        return torch.stack([cache.coef["r"], cache.coef["z"], cache.coef["n"]], 2)


def make_cell(name: str) -> Cell:
    """The cell called ``name`` (one of gradviz.config.CELLS)."""
    cells = {
        "rnn-tanh": lambda: RNNCell("tanh"),
        "rnn-relu": lambda: RNNCell("relu"),
        "lstm": LSTMCell,
        "lstm-peephole": PeepholeLSTMCell,
        "lstm-coupled": CoupledLSTMCell,
        "gru": GRUCell,
    }
    if name not in cells:
        raise ValueError(f"unknown cell {name!r}; allowed: {', '.join(cells)}")
    return cells[name]()
