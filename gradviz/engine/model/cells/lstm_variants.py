"""The LSTM variants PyTorch has no module for: peephole and coupled gates.

Their forward passes leave the coefficients A, M and N of the reverse scan (the recursion
of :mod:`gradviz.engine.model.cells.lstm`) in the cache, and one generic scan serves both: the
compiled loop, or the PyTorch operations of :meth:`VariantLSTM._scan`. Where the compiled
loops are not available, their forward loop runs a timestep at a time in PyTorch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .base import (GateStats, LayerCache, LayerGrads, compiled_loops, cut_after, linear_grads,
                   shifted)
from .lstm import LSTMFamily
from gradviz.engine.model.reference import lstm_coupled, lstm_peephole


@dataclass(kw_only=True)
class ScanCache(LayerCache):
    """A variant's forward pass, for the generic scan (G gate blocks)."""
    acts: Tensor              # (T, B, G, H) the blocks' gate activations
    A: Tensor                 # (T, B, H) ∂h_t/∂c_t within step t (tanh, o_t's peephole)
    M: Tensor                 # (T, B, G+1, H) [A ⊙ Kc, Ko, A ⊙ F]
    N: Tensor                 # (T, B, G+1, H) [Kc, 0, F]
    xh: Tensor | None = None  # (T·B, I+H) rows [x_t, h_{t-1}]: compiled path only
    c_prev: Tensor | None = None  # (T, B, H) c_{t-1}: the peephole LSTM, for ∂L/∂w_c


class VariantLSTM(LSTMFamily):
    """The forward loop in PyTorch, the coefficients and the generic scan of the variants."""

    @staticmethod
    def _scan_coefs(A: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
        """M and N from A (T, B, H) and K = [F, Kc, Ko] (T, B, G+1, H)."""
        N = torch.cat([K[:, :, 1:-1], torch.zeros_like(K[:, :, :1]), K[:, :, :1]], 2)
        M = N * A.unsqueeze(2)
        M[:, :, -2] = K[:, :, -1]
        return M, N

    def _recurrence(self, x, h0, c0, p, step, stats_rows):
        """The forward loop: (loops, acts, h, c, tanh(c), xh or None, the statistics or
        None: the caller then computes them), from the compiled loops where they are
        available, else from _unrolled_forward(step)."""
        loops = compiled_loops(x)
        if loops is None:
            return (None, *self._unrolled_forward(x, h0, c0, p, step), None, None)
        return (loops, *self._compiled_recurrence(loops, x, h0, c0, p, stats_rows))

    def _unrolled_forward(self, x, h0, c0, p,
                          step: Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor], None]):
        """The forward loop in PyTorch, a timestep at a time.

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

    @staticmethod
    def _scan(cache: ScanCache, dout: Tensor, w_hh: Tensor, tbptt: int):
        """Returns dh (T, B, H) and R (T, B, G+1, H): R[:, :, :G] is dZ, R[:, :, G] the carry."""
        T, B, H = dout.shape
        M, N = cache.M, cache.N
        G1 = M.shape[2]
        dh = torch.empty_like(dout)
        R = torch.empty((T, B, G1, H), dtype=dout.dtype, device=dout.device)
        if cache.loops is not None:
            cache.loops.family_scan(M, N, dout, w_hh, tbptt, dh, R)
            return dh, R
        # Per-step views made once: indexing a tensor inside the loop costs more than the math.
        dout_t, dh_t, R_t = dout.unbind(0), dh.unbind(0), R.unbind(0)
        dh_col = dh.unsqueeze(2).unbind(0)                      # (B, 1, H), broadcast
        dz_t = R.view(T, B, G1 * H)[:, :, :-H].unbind(0)        # (B, G·H) for the product
        carry_col = R[:, :, -1:].unbind(0)                      # (B, 1, H)
        M_t, N_t = M.unbind(0), N.unbind(0)
        for t in range(T - 1, -1, -1):
            if t < T - 1 and not cut_after(t, tbptt):
                torch.addmm(dout_t[t], dz_t[t + 1], w_hh, out=dh_t[t])
                torch.mul(carry_col[t + 1], N_t[t], out=R_t[t])
                R_t[t].addcmul_(dh_col[t], M_t[t])
            else:
                dh_t[t].copy_(dout_t[t])
                torch.mul(dh_col[t], M_t[t], out=R_t[t])
        return dh, R

    def backward(self, cache: ScanCache, p, dout, tbptt=0, need_dx=True):
        A = cache.A
        dh, R = self._scan(cache, dout, p["weight_hh"], tbptt)
        T, B, G1, H = R.shape
        # dc_t = dh_t ⊙ A_t + carry_{t+1}, except where the gradient does not flow on.
        dc = dh * A
        dc[:-1] += R[1:, :, -1]
        for t in range(T - 1):
            if cut_after(t, tbptt):
                torch.mul(dh[t], A[t], out=dc[t])
        dz = R.view(T * B, G1 * H)[:, :-H]          # (T·B, G·H), rows G+1 blocks apart
        grads, dx = linear_grads(dz, dz, cache, p["weight_ih"], need_dx, cache.xh)
        self._extra_grads(grads, R[:, :, :-1], cache)
        return LayerGrads(dh=dh, dc=dc, params=grads, dx=dx)

    def _extra_grads(self, grads: dict[str, Tensor], dz: Tensor, cache: ScanCache) -> None:
        """Gradients of the parameters beyond PyTorch's four, from dz (T, B, G, H)."""


class PeepholeLSTMCell(VariantLSTM):
    """LSTM whose gates also see the cell state (Gers & Schmidhuber 2000):
    i = σ(… + w_ci ⊙ c_{t-1}), f = σ(… + w_cf ⊙ c_{t-1}), o = σ(… + w_co ⊙ c_t)."""
    kind = "peephole"
    reference_step = staticmethod(lstm_peephole)

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
            loops, acts, h, c, tanh_c, xh, stats = self._recurrence(x, h0, c0, p, step,
                                                                    stats_rows)
            i, f, g, o = acts.unbind(2)
            c_prev = shifted(c, c0)
            bo = tanh_c * o * (1 - o)
            ki, kf = g * i * (1 - i), c_prev * f * (1 - f)
            # c_t reaches the loss through h_t and through o_t's peephole, and step t+1
            # through f_{t+1} and the peepholes of i_{t+1} and f_{t+1}.
            A = o * (1 - tanh_c * tanh_c) + bo * w_co
            M, N = self._scan_coefs(A, torch.stack(
                [f + ki * w_c[0] + kf * w_c[1], ki, kf, i * (1 - g * g), bo], 2))
        cache = ScanCache(x=x, h_prev=shifted(h, h0), h=h, c=c, acts=acts, A=A, M=M, N=N,
                          xh=xh, c_prev=c_prev, stats=stats, loops=loops)
        return cache if stats is not None else self._with_stats(cache, stats_rows)

    def _extra_grads(self, grads, dz, cache):
        grads["weight_ch"] = torch.cat([
            (dz[:, :, 0] * cache.c_prev).sum((0, 1)),
            (dz[:, :, 1] * cache.c_prev).sum((0, 1)),
            (dz[:, :, 3] * cache.c).sum((0, 1)),
        ])


class CoupledLSTMCell(VariantLSTM):
    """LSTM with coupled input and forget gates (Greff et al. 2017, "CIFG"):
    blocks f, g, o; c_t = f ⊙ c_{t-1} + (1 - f) ⊙ g. It shows i = 1 - f beside them, for
    comparison with the LSTM."""
    kind = "coupled"
    reference_step = staticmethod(lstm_coupled)

    def forward(self, x, h0, c0, p, stats_rows=None):
        def step(z, a, c_prev, c, tanh_c, h):
            torch.sigmoid(z, out=a)
            torch.tanh(z[:, 1], out=a[:, 1])
            # c = f c_prev + (1 - f) g = g + f (c_prev - g)
            torch.addcmul(a[:, 1], a[:, 0], c_prev - a[:, 1], out=c)
            torch.mul(a[:, 2], torch.tanh(c, out=tanh_c), out=h)

        with torch.no_grad():
            loops, acts, h, c, tanh_c, xh, stats = self._recurrence(x, h0, c0, p, step,
                                                                    stats_rows)
            f, g, o = acts.unbind(2)
            c_prev = shifted(c, c0)
            A = o * (1 - tanh_c * tanh_c)
            M, N = self._scan_coefs(A, torch.stack(
                [f, (c_prev - g) * f * (1 - f), (1 - f) * (1 - g * g), tanh_c * o * (1 - o)], 2))
        cache = ScanCache(x=x, h_prev=shifted(h, h0), h=h, c=c, acts=acts, A=A, M=M, N=N,
                          xh=xh, stats=stats, loops=loops)
        return cache if stats is not None else self._with_stats(cache, stats_rows)

    def _shown_stats(self, stats: GateStats | None) -> GateStats | None:
        # i = 1 - f: its mean is 1 - f's, its bottom band (i < 0.1) f's top (f > 0.9) and
        # its top band f's bottom.
        if stats is None:
            return None
        return GateStats(mean=torch.cat([1 - stats.mean[:, :1], stats.mean], 1),
                         low=torch.cat([stats.high[:, :1], stats.low], 1),
                         high=torch.cat([stats.low[:, :1], stats.high], 1))

    def gates(self, cache):
        return torch.cat([1 - cache.acts[:, :, :1], cache.acts], 2)


__all__ = ["ScanCache", "VariantLSTM", "PeepholeLSTMCell", "CoupledLSTMCell"]
