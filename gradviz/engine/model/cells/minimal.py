"""The minimal RNNs of Feng et al. 2024 ("Were RNNs all we needed?"): minGRU and minLSTM.

Their gates see the input only, so every gate is computed for all timesteps in one matrix
product and the recurrence left is linear and diagonal (:mod:`.diagonal`):

    minGRU:  h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t,          ∂h_t/∂h_{t-1} = 1 − z_t
    minLSTM: h_t = f′_t ⊙ h_{t-1} + i′_t ⊙ h̃_t, f′ = f/(f+i),  ∂h_t/∂h_{t-1} = f′_t

with z, f, i = σ(W x_t + b) and h̃_t = W_h x_t + b_h. Parameters: weight_ih (G·H, I) and
bias_ih (G·H,), blocks z, h (minGRU) and f, i, h (minLSTM); there is no weight_hh.
"""
from __future__ import annotations

import torch

from .base import LayerGrads
from .diagonal import DiagonalCache, DiagonalCell, diag_blocks, input_grads, scan_backward, \
    scan_forward
from gradviz.engine.model.reference import mingru, minlstm


class _MinimalCell(DiagonalCell):
    def param_shapes(self, input_size, hidden):
        gh = self.n_blocks * hidden
        return {"weight_ih": (gh, input_size), "bias_ih": (gh,)}

    def _pre(self, x, p):
        T, B, I = x.shape
        return torch.addmm(p["bias_ih"], x.reshape(T * B, I), p["weight_ih"].t()).view(T, B, -1)


class MinGRUCell(_MinimalCell):
    reference_step = staticmethod(mingru)

    def forward(self, x, h0, c0, p, stats_rows=None):
        H = h0.shape[-1]
        zx = self._pre(x, p)
        z, cand = torch.sigmoid(zx[..., :H]), zx[..., H:]
        a = 1 - z
        h = scan_forward(a, z * cand, h0)
        cache = DiagonalCache(x=x, h_prev=torch.cat([h0.unsqueeze(0), h[:-1]]), h=h, a=a,
                              acts=torch.stack([z, cand], 2))
        return self._with_stats(cache, stats_rows)

    def backward(self, cache, p, dout, tbptt=0, need_dx=True):
        dh = scan_backward(cache.a, dout, tbptt)
        z, cand = cache.acts.unbind(2)
        # h = (1 − z) h_{t-1} + z h̃: ∂h/∂z = h̃ − h_{t-1}, ∂h/∂h̃ = z.
        dzx = torch.cat([dh * (cand - cache.h_prev) * z * cache.a, dh * z], -1)
        w, b, dx = input_grads(dzx, cache.x, p["weight_ih"], need_dx)
        return LayerGrads(dh=dh, dc=None, params={"weight_ih": w, "bias_ih": b}, dx=dx)

    def recurrent_blocks(self, p, hidden):
        """1 − σ(b_z): the factor per step where the input is zero."""
        return diag_blocks(1 - torch.sigmoid(p["bias_ih"][:hidden]))


class MinLSTMCell(_MinimalCell):
    reference_step = staticmethod(minlstm)

    def forward(self, x, h0, c0, p, stats_rows=None):
        H = h0.shape[-1]
        zx = self._pre(x, p)
        f, i = torch.sigmoid(zx[..., :H]), torch.sigmoid(zx[..., H:2 * H])
        cand = zx[..., 2 * H:]
        s = f + i
        fn, i_n = f / s, i / s
        h = scan_forward(fn, i_n * cand, h0)
        cache = DiagonalCache(x=x, h_prev=torch.cat([h0.unsqueeze(0), h[:-1]]), h=h, a=fn,
                              acts=torch.stack([fn, i_n, cand], 2))
        return self._with_stats(cache, stats_rows)

    def backward(self, cache, p, dout, tbptt=0, need_dx=True):
        dh = scan_backward(cache.a, dout, tbptt)
        fn, i_n, cand = cache.acts.unbind(2)
        # f′ = f/(f+i), i′ = i/(f+i): ∂h/∂f = i (h_{t-1} − h̃)/s², ∂h/∂i = f (h̃ − h_{t-1})/s²;
        # with f = f′ s, i = i′ s and σ' = σ(1 − σ): ∂h/∂a_f = f′ i′ (1 − f) (h_{t-1} − h̃),
        # ∂h/∂a_i = f′ i′ (1 − i) (h̃ − h_{t-1}).
        zx = self._pre(cache.x, p)
        H = dh.shape[-1]
        f, i = torch.sigmoid(zx[..., :H]), torch.sigmoid(zx[..., H:2 * H])
        common = dh * fn * i_n * (cache.h_prev - cand)
        dzx = torch.cat([common * (1 - f), -common * (1 - i), dh * i_n], -1)
        w, b, dx = input_grads(dzx, cache.x, p["weight_ih"], need_dx)
        return LayerGrads(dh=dh, dc=None, params={"weight_ih": w, "bias_ih": b}, dx=dx)

    def recurrent_blocks(self, p, hidden):
        """f′ = σ(b_f)/(σ(b_f) + σ(b_i)): the factor per step where the input is zero."""
        f, i = torch.sigmoid(p["bias_ih"][:hidden]), torch.sigmoid(p["bias_ih"][hidden:2 * hidden])
        return diag_blocks(f / (f + i))


__all__ = ["MinGRUCell", "MinLSTMCell"]
