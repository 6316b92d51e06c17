"""The independently recurrent network (Li et al. 2018, IndRNN):

    h_t = ReLU(W x_t + u ⊙ h_{t-1} + b),   ∂h_t/∂h_{t-1} = diag(u ⊙ 𝟙[pre_t > 0])

Each unit sees only its own past, through one number u_j: the gradient through time of a
unit that stays active is u_j^k over k steps, so |u| ≤ 2^(1/T) keeps it from growing more
than 2× over the sequence (the paper's bound), and |u| near 1 keeps it from vanishing.
Parameters: weight_ih (H, I), the vector u as weight_hh (H,), bias_ih (H,).

Training keeps |u| ≤ max(2^(1/T), the initial max |u|) after every optimiser step
(:meth:`IndRNNCell.constrain`): the paper's constraint, which stops a ReLU unit's state and
gradient from growing without bound, and never below where the user started u.
"""
from __future__ import annotations

import torch

from .base import LayerGrads
from .diagonal import DiagonalCache, DiagonalCell, diag_blocks, input_grads, scan_backward
from gradviz.engine.model.reference import indrnn


def u_bound(options: dict) -> float:
    """The largest |u| at initialisation: the user's ``indrnn_u_max``, else 2^(1/T)."""
    chosen = options.get("indrnn_u_max")
    if chosen is not None:
        return float(chosen)
    T = options.get("seq_len")
    return 2.0 ** (1.0 / T) if T else 1.0


def u_limit(options: dict) -> float:
    """The largest |u| training allows: 2^(1/T) (Li et al. 2018), or the user's initial
    ``indrnn_u_max`` where that is larger."""
    T = options.get("seq_len")
    paper = 2.0 ** (1.0 / T) if T else 1.0
    chosen = options.get("indrnn_u_max")
    return paper if chosen is None else max(paper, float(chosen))


class IndRNNCell(DiagonalCell):
    reference_step = staticmethod(indrnn)

    def param_shapes(self, input_size, hidden):
        return {"weight_ih": (hidden, input_size), "weight_hh": (hidden,), "bias_ih": (hidden,)}

    def reset(self, p, generator, options):
        """u ~ U(0, u_max), u_max = 2^(1/T) unless the user chose one (Li et al. 2018)."""
        with torch.no_grad():
            u = p["weight_hh"]
            draw = torch.rand(u.shape, generator=generator, dtype=torch.float64)
            u.copy_(draw * u_bound(options))

    def constrain(self, p, options):
        """|u| ≤ :func:`u_limit` (Li et al. 2018 clip u after every step)."""
        limit = u_limit(options)
        with torch.no_grad():
            p["weight_hh"].clamp_(-limit, limit)

    def forward(self, x, h0, c0, p, stats_rows=None):
        T, B, I = x.shape
        u = p["weight_hh"]
        zx = torch.addmm(p["bias_ih"], x.reshape(T * B, I), p["weight_ih"].t()).view(T, B, -1)
        pre = torch.empty_like(zx)
        h = torch.empty_like(zx)
        zx_t, pre_t, h_t = zx.unbind(0), pre.unbind(0), h.unbind(0)
        prev = h0
        for t in range(T):
            torch.addcmul(zx_t[t], u, prev, out=pre_t[t])
            torch.clamp_min(pre_t[t], 0, out=h_t[t])
            prev = h_t[t]
        active = (pre > 0).to(x.dtype)
        a = active * u
        cache = DiagonalCache(x=x, h_prev=torch.cat([h0.unsqueeze(0), h[:-1]]), h=h, a=a,
                              acts=torch.stack([h, a], 2), active=active)
        return self._with_stats(cache, stats_rows)

    def backward(self, cache, p, dout, tbptt=0, need_dx=True):
        dh = scan_backward(cache.a, dout, tbptt)
        dpre = dh * cache.active
        du = (dpre * cache.h_prev).sum((0, 1))
        w, b, dx = input_grads(dpre, cache.x, p["weight_ih"], need_dx)
        return LayerGrads(dh=dh, dc=None, params={"weight_ih": w, "weight_hh": du,
                                                  "bias_ih": b}, dx=dx)

    def recurrent_blocks(self, p, hidden):
        return diag_blocks(p["weight_hh"])


__all__ = ["IndRNNCell", "u_bound", "u_limit"]
