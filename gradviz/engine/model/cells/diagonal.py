"""What the diagonal recurrences share: h_t = a_t ⊙ h_{t-1} + b_t, elementwise.

For these cells (minGRU, minLSTM, IndRNN, LRU) ∂h_t/∂h_{t-1} is a diagonal matrix: a
*factor* per unit and step (:meth:`DiagonalCell.factor`). The gradient through time is then
an elementwise product, so the reverse scan is one multiply-add per step,

    dh_t = dout_t + a_{t+1} ⊙ dh_{t+1},

and ‖∂L/∂h_t‖ under a loss on the last step alone is exactly ‖dh_{T-1} ⊙ ∏ a_s‖: not only
bounded, as for a full W_hh. The scans here are PyTorch operations over per-step views;
everything that does not depend on the recursion (gates, parameter and input gradients) is
done for all timesteps at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Cell, LayerCache, cut_after


@dataclass(kw_only=True)
class DiagonalCache(LayerCache):
    """A diagonal cell's forward pass: its factor a_t = ∂h_t/∂h_{t-1} (T, B, H) and the
    gate activations it shows (T, B, G, H)."""
    a: Tensor
    acts: Tensor
    active: Tensor | None = None   # IndRNN: 𝟙[pre_t > 0] (T, B, H)
    bu: Tensor | None = None       # LRU: B u_t (T, B, N) complex


def scan_forward(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """h_t = a_t ⊙ h_{t-1} + b_t for t = 0 … T-1 from h_{-1} = h0; a, b (T, B, H)."""
    h = torch.empty_like(b)
    a_t, b_t, h_t = a.unbind(0), b.unbind(0), h.unbind(0)
    prev = h0
    for t in range(b.shape[0]):
        torch.addcmul(b_t[t], a_t[t], prev, out=h_t[t])
        prev = h_t[t]
    return h


def scan_backward(a: Tensor, dout: Tensor, tbptt: int = 0) -> Tensor:
    """dh_t = dout_t + a_{t+1} ⊙ dh_{t+1}, cut where truncated BPTT cuts; a broadcasts
    against dout (T, B, H) per step (a (T, B, H), or (T, 1, H) for a constant factor)."""
    dh = torch.empty_like(dout)
    a_t, dout_t, dh_t = a.unbind(0), dout.unbind(0), dh.unbind(0)
    T = dout.shape[0]
    for t in range(T - 1, -1, -1):
        if t == T - 1 or cut_after(t, tbptt):
            dh_t[t].copy_(dout_t[t])
        else:
            torch.addcmul(dout_t[t], a_t[t + 1], dh_t[t + 1], out=dh_t[t])
    return dh


def input_grads(dzx: Tensor, x: Tensor, weight_ih: Tensor, need_dx: bool
                ) -> tuple[Tensor, Tensor, Tensor | None]:
    """weight_ih's and bias_ih's gradients and ∂L/∂x from ∂L/∂(W_ih x + b_ih) (T, B, G·H)."""
    dz = dzx.reshape(-1, dzx.shape[-1])
    w = (x.reshape(-1, x.shape[-1]).t() @ dz).t().contiguous()
    dx = (dz @ weight_ih).view(x.shape) if need_dx else None
    return w, dz.sum(0), dx


def diag_blocks(values: Tensor) -> Tensor:
    """(1, H, H) the diagonal matrix of ``values`` (H,): what a diagonal cell shows in
    place of ρ(W_hh)."""
    return torch.diag_embed(values.detach()).unsqueeze(0)


class DiagonalCell(Cell):
    """A cell whose ∂h_t/∂h_{t-1} is diagonal."""

    def factor(self, cache: DiagonalCache) -> Tensor:
        """(T, B, H) ∂h_t/∂h_{t-1} per unit — for the LRU |λ| of each unit's complex pair,
        the factor by which the pair's gradient norm shrinks per step."""
        return cache.a

    def gates(self, cache):
        return cache.acts

    def recurrent_blocks(self, p: dict[str, Tensor], hidden: int) -> Tensor:
        raise NotImplementedError


__all__ = ["DiagonalCache", "DiagonalCell", "scan_forward", "scan_backward", "input_grads",
           "diag_blocks"]
