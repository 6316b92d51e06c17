"""The plain recurrent cell, h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), φ = tanh or ReLU.

The forward pass is the compiled loop (its input product over all t in PyTorch), else
PyTorch's fused recurrence (no graph); the reverse scan is the compiled loop or the
PyTorch operations below:
    dh_t = dout_t + dz_{t+1} W_hh,   dz_t = dh_t ⊙ φ'(z_t).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .base import (Cell, LayerCache, LayerGrads, compiled_loops, cut_after, fused_weights,
                   linear_grads, shifted)
from gradviz.engine.model.reference import rnn_relu, rnn_tanh


@dataclass(kw_only=True)
class RNNCache(LayerCache):
    """The plain RNN's forward pass, for its backward."""
    dphi: Tensor              # (T, B, H) φ'(z_t): 1 - h_t² (tanh) or [h_t > 0] (ReLU)


class RNNCell(Cell):
    """h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh); subclasses choose φ."""

    fused: Callable           # PyTorch's fused recurrence with this φ (torch.rnn_tanh, …)
    compiled_forward = False  # whether the compiled loops have this φ's forward pass

    @staticmethod
    def derivative(h: Tensor) -> Tensor:
        """φ'(z) from h = φ(z)."""
        raise NotImplementedError

    def forward(self, x, h0, c0, p, stats_rows=None):
        loops = compiled_loops(x)
        with torch.no_grad():
            if loops is not None and self.compiled_forward:
                T, B, I = x.shape
                zx = torch.addmm(p["bias_ih"] + p["bias_hh"], x.reshape(T * B, I),
                                 p["weight_ih"].t()).view(T, B, -1)
                h, dphi = torch.empty_like(zx), torch.empty_like(zx)
                loops.rnn_forward(zx, p["weight_hh"].t().contiguous(), h0.contiguous(), h,
                                  dphi, relu=self.fused is torch.rnn_relu)
            else:
                h, _ = self.fused(x, h0.unsqueeze(0), fused_weights(p), True, 1, 0.0, False,
                                  False, False)
                dphi = self.derivative(h)
        cache = RNNCache(x=x, h_prev=shifted(h, h0), h=h, dphi=dphi, loops=loops)
        return self._with_stats(cache, stats_rows)

    def backward(self, cache: RNNCache, p, dout, tbptt=0, need_dx=True):
        w_hh = p["weight_hh"]
        dh = torch.empty_like(dout)
        dz = torch.empty_like(dout)
        norms = None
        if cache.loops is not None:
            norms = cache.loops.rnn_backward(cache.dphi, dout, w_hh, tbptt, dh, dz,
                                             cache.norms_rows)
        else:
            # Per-step views made once: indexing a tensor inside the loop costs more than
            # the math.
            dout_t, dh_t, dz_t = dout.unbind(0), dh.unbind(0), dz.unbind(0)
            dphi_t = cache.dphi.unbind(0)
            T = dout.shape[0]
            for t in range(T - 1, -1, -1):
                if t == T - 1 or cut_after(t, tbptt):
                    dh_t[t].copy_(dout_t[t])
                else:
                    torch.addmm(dout_t[t], dz_t[t + 1], w_hh, out=dh_t[t])
                torch.mul(dh_t[t], dphi_t[t], out=dz_t[t])
        grads, dx = linear_grads(dz, dz, cache, p["weight_ih"], need_dx)
        return LayerGrads(dh=dh, dc=None, params=grads, dx=dx, norms=norms)

    def gates(self, cache):
        return cache.h.unsqueeze(2)


class TanhRNNCell(RNNCell):
    fused = staticmethod(torch.rnn_tanh)
    compiled_forward = True
    reference_step = staticmethod(rnn_tanh)

    @staticmethod
    def derivative(h):
        return 1.0 - h * h


class ReLURNNCell(RNNCell):
    fused = staticmethod(torch.rnn_relu)
    compiled_forward = True
    reference_step = staticmethod(rnn_relu)

    @staticmethod
    def derivative(h):
        return (h > 0).to(h.dtype)


def random_orthogonal(n: int, generator: torch.Generator | None) -> Tensor:
    """A random orthogonal n × n matrix, uniform over the orthogonal group (float64)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    # Fix the signs so that the distribution is uniform over orthogonal matrices.
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


class OrthogonalRNNCell(TanhRNNCell):
    """The tanh RNN with W_hh kept orthogonal while it trains (expRNN, Lezcano-Casado &
    Martínez-Rubio 2019): the network registers torch.nn.utils.parametrizations.orthogonal
    (matrix exponential, trivialised at the initial matrix) on each weight_hh, so the
    trained parameter is the unconstrained A and W_hh = base · exp(A − Aᵀ) (lower
    triangle of A). The scan below gets W_hh's value and returns the exact ∂L/∂W_hh;
    :meth:`Network.backward` hands it to autograd through the parametrisation, which gives
    ∂L/∂A."""
    orthogonal = True

    def reset(self, p, generator, options):
        """Nothing here: the network assigns W_hh (random orthogonal, or the identity when
        the recurrent init is 'identity') through the parametrisation."""


__all__ = ["RNNCache", "RNNCell", "TanhRNNCell", "ReLURNNCell", "OrthogonalRNNCell",
           "random_orthogonal"]
