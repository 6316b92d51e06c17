"""The gated recurrent unit (Cho et al. 2014), in PyTorch's form:

    r, z = σ(W_i· x_t + b_i· + W_h· h_{t-1} + b_h·)
    n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn))
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

The reverse scan is linear in dh: with u = W_hh h_{t-1} + b_hh,
    dh_{t-1} = dout_{t-1} + dh_t ⊙ z_t + (dh_t ⊙ K_t) W_hh,   K = [C_r, C_z, C_n ⊙ r]
where C_n = (1-z)(1-n²), C_z = (h_{t-1}-n) z(1-z), C_r = C_n u_n r(1-r). The compiled
loops run the forward pass and the scan in one call each; the PyTorch path runs PyTorch's
fused recurrence, recomputes the gates for all timesteps at once and scans with K.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import (Cell, LayerCache, LayerGrads, compiled_loops, cut_after, empty_stats,
                   fused_weights, linear_grads, shifted, tanh_via_sigmoid)
from gradviz.engine.model.reference import gru as gru_step


@dataclass(kw_only=True)
class GRUCache(LayerCache):
    """The GRU's forward pass, for its backward."""
    gates: Tensor                 # (T, B, 3, H) r_t, z_t, n_t
    u_n: Tensor | None = None     # (T, B, H) W_hn h_{t-1} + b_hn: the compiled scan's input
    K_h: Tensor | None = None     # (T, B, 3, H) [C_r, C_z, C_n ⊙ r]: the PyTorch scan's
    K_x: Tensor | None = None     # (T, B, 3, H) [C_r, C_z, C_n]: ∂L/∂(W_ih x + b_ih) per dh


class GRUCell(Cell):
    """r, z = σ(·); n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn));
    h_t = (1-z) ⊙ n + z ⊙ h_{t-1}."""
    reference_step = staticmethod(gru_step)

    def forward(self, x, h0, c0, p, stats_rows=None):
        loops = compiled_loops(x)
        if loops is not None:
            return self._compiled_forward(loops, x, h0, p, stats_rows)
        T, B, _ = x.shape
        H = h0.shape[-1]
        with torch.no_grad():
            h, _ = torch.gru(x, h0.unsqueeze(0), fused_weights(p), True, 1, 0.0, False, False,
                             False)
            h_prev = shifted(h, h0)
            zx = torch.addmm(p["bias_ih"], x.reshape(T * B, -1), p["weight_ih"].t()).view(T, B, 3, H)
            u = torch.addmm(p["bias_hh"], h_prev.reshape(T * B, H), p["weight_hh"].t()).view(T, B, 3, H)
            gates = x.new_empty((T, B, 3, H))
            r, z, n = gates.unbind(2)
            torch.sigmoid(zx[:, :, :2] + u[:, :, :2], out=gates[:, :, :2])
            tanh_via_sigmoid(torch.addcmul(zx[:, :, 2], r, u[:, :, 2]), out=n)
            cn = (1 - z) * (1 - n * n)
            cz = (h_prev - n) * z * (1 - z)
            cr = cn * u[:, :, 2] * r * (1 - r)
            cache = GRUCache(x=x, h_prev=h_prev, h=h, gates=gates,
                             K_h=torch.stack([cr, cz, cn * r], 2),
                             K_x=torch.stack([cr, cz, cn], 2))
        return self._with_stats(cache, stats_rows)

    @staticmethod
    def _compiled_forward(loops, x, h0, p, stats_rows):
        """The whole forward pass in one call of the compiled loop: gates, u_n = W_hn h + b_hn
        (the backward's coefficients come from these) and the statistics."""
        T, B, I = x.shape
        H = h0.shape[-1]
        zx = torch.addmm(p["bias_ih"], x.reshape(T * B, I), p["weight_ih"].t()).view(T, B, 3 * H)
        gates = x.new_empty((T, B, 3, H))
        u_n, h = x.new_empty((T, B, H)), x.new_empty((T, B, H))
        stats = empty_stats(T, 3, H, x) if stats_rows is not None else None
        loops.gru_forward(zx, p["weight_hh"].t().contiguous(),
                          p["bias_hh"].detach().expand(B, 3 * H).contiguous(),
                          h0.contiguous(), gates, u_n, h, x.new_empty((B, 3 * H)),
                          stats_rows or 0, *((stats.mean, stats.low, stats.high) if stats else ()))
        return GRUCache(x=x, h_prev=shifted(h, h0), h=h, gates=gates, u_n=u_n, stats=stats,
                        loops=loops)

    def backward(self, cache: GRUCache, p, dout, tbptt=0, need_dx=True):
        T, B, H = dout.shape
        w_hh = p["weight_hh"]
        dh = torch.empty_like(dout)
        if cache.loops is not None:
            dzh, dzx = dout.new_empty((T, B, 3 * H)), dout.new_empty((T, B, 3 * H))
            norms = cache.loops.gru_backward(cache.gates, cache.u_n, cache.h_prev, dout, w_hh,
                                             tbptt, dh, dzh, dzx, cache.norms_rows)
            grads, dx = linear_grads(dzx, dzh, cache, p["weight_ih"], need_dx)
            return LayerGrads(dh=dh, dc=None, params=grads, dx=dx, norms=norms)
        z, kh = cache.gates[:, :, 1], cache.K_h
        dzh = torch.empty((T, B, 3, H), dtype=dout.dtype, device=dout.device)
        dzh_flat = dzh.view(T, B, 3 * H)
        dout_t, dh_t, z_t, kh_t = dout.unbind(0), dh.unbind(0), z.unbind(0), kh.unbind(0)
        dzh_t, dzh_flat_t = dzh.unbind(0), dzh_flat.unbind(0)
        dh_row = dh.unsqueeze(2).unbind(0)          # (B, 1, H) views for broadcasting
        for t in range(T - 1, -1, -1):
            if t < T - 1 and not cut_after(t, tbptt):
                torch.addmm(dout_t[t], dzh_flat_t[t + 1], w_hh, out=dh_t[t])
                dh_t[t].addcmul_(dh_t[t + 1], z_t[t + 1])
            else:
                dh_t[t].copy_(dout_t[t])
            torch.mul(dh_row[t], kh_t[t], out=dzh_t[t])
        dzx = (dh.unsqueeze(2) * cache.K_x).view(T, B, 3 * H)
        grads, dx = linear_grads(dzx, dzh_flat, cache, p["weight_ih"], need_dx)
        return LayerGrads(dh=dh, dc=None, params=grads, dx=dx)

    def gates(self, cache):
        return cache.gates


__all__ = ["GRUCache", "GRUCell"]
