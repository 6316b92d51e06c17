"""The cell equations written plainly in PyTorch: one timestep of each cell.

Each function is its cell's textbook equations, line by line, with nothing done for speed,
so autograd differentiates it. It is what the two fast paths are checked against: the
compiled loops check themselves against it every time they are loaded
(:mod:`gradviz.engine.native.selfcheck`), and the tests check whole networks, both paths,
against it unrolled over time (``tests/reference.py``).

Every function takes the parameters ``p`` by PyTorch's names — ``weight_ih`` (G·H, I),
``weight_hh`` (G·H, H), ``bias_ih`` and ``bias_hh`` (G·H,), and for the peephole LSTM
``weight_ch`` (3·H,) — and x_t (B, I), h_{t-1} (B, H) and c_{t-1} (B, H) (None for cells
without a cell state). Gate blocks are in PyTorch's order: i, f, g, o (LSTM), r, z, n
(GRU), and f, g, o for the coupled LSTM, whose i = 1 − f has no block of its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Step:
    """One timestep: the new state, the gate activations and the two pre-activations
    (kept so that autograd can give the gradient reaching them)."""
    h: Tensor            # (B, H) h_t
    c: Tensor | None     # (B, H) c_t, LSTM family only
    gates: Tensor        # (B, G, H) activation of each parameter block, in PyTorch order
    zx: Tensor           # (B, G·H) W_ih x_t + b_ih
    zh: Tensor           # (B, G·H) W_hh h_{t-1} + b_hh


def _pre(p: dict[str, Tensor], x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    return x @ p["weight_ih"].t() + p["bias_ih"], h @ p["weight_hh"].t() + p["bias_hh"]


def rnn_tanh(p: dict[str, Tensor], x: Tensor, h: Tensor, c: Tensor | None = None) -> Step:
    """h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""
    zx, zh = _pre(p, x, h)
    h = torch.tanh(zx + zh)
    return Step(h, None, h.unsqueeze(1), zx, zh)


def rnn_relu(p: dict[str, Tensor], x: Tensor, h: Tensor, c: Tensor | None = None) -> Step:
    """h_t = max(0, W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""
    zx, zh = _pre(p, x, h)
    h = torch.relu(zx + zh)
    return Step(h, None, h.unsqueeze(1), zx, zh)


def lstm(p: dict[str, Tensor], x: Tensor, h: Tensor, c: Tensor) -> Step:
    """i, f, o = σ(z), g = tanh(z); c_t = f ⊙ c_{t-1} + i ⊙ g; h_t = o ⊙ tanh(c_t)."""
    zx, zh = _pre(p, x, h)
    zi, zf, zg, zo = (zx + zh).chunk(4, -1)
    i, f, g, o = torch.sigmoid(zi), torch.sigmoid(zf), torch.tanh(zg), torch.sigmoid(zo)
    c = f * c + i * g
    h = o * torch.tanh(c)
    return Step(h, c, torch.stack([i, f, g, o], 1), zx, zh)


def lstm_peephole(p: dict[str, Tensor], x: Tensor, h: Tensor, c: Tensor) -> Step:
    """The LSTM whose gates also see the cell state (Gers & Schmidhuber 2000):
    i = σ(z_i + w_ci ⊙ c_{t-1}), f = σ(z_f + w_cf ⊙ c_{t-1}), o = σ(z_o + w_co ⊙ c_t)."""
    zx, zh = _pre(p, x, h)
    zi, zf, zg, zo = (zx + zh).chunk(4, -1)
    w_ci, w_cf, w_co = p["weight_ch"].chunk(3)
    i = torch.sigmoid(zi + w_ci * c)
    f = torch.sigmoid(zf + w_cf * c)
    g = torch.tanh(zg)
    c = f * c + i * g
    o = torch.sigmoid(zo + w_co * c)
    h = o * torch.tanh(c)
    return Step(h, c, torch.stack([i, f, g, o], 1), zx, zh)


def lstm_coupled(p: dict[str, Tensor], x: Tensor, h: Tensor, c: Tensor) -> Step:
    """The LSTM with coupled input and forget gates (Greff et al. 2017):
    c_t = f ⊙ c_{t-1} + (1 − f) ⊙ g."""
    zx, zh = _pre(p, x, h)
    zf, zg, zo = (zx + zh).chunk(3, -1)
    f, g, o = torch.sigmoid(zf), torch.tanh(zg), torch.sigmoid(zo)
    c = f * c + (1 - f) * g
    h = o * torch.tanh(c)
    return Step(h, c, torch.stack([f, g, o], 1), zx, zh)


def gru(p: dict[str, Tensor], x: Tensor, h: Tensor, c: Tensor | None = None) -> Step:
    """r, z = σ(·); n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn));
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}."""
    zx, zh = _pre(p, x, h)
    xr, xz, xn = zx.chunk(3, -1)
    hr, hz, hn = zh.chunk(3, -1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    h = (1 - z) * n + z * h
    return Step(h, None, torch.stack([r, z, n], 1), zx, zh)


__all__ = ["Step", "rnn_tanh", "rnn_relu", "lstm", "lstm_peephole", "lstm_coupled", "gru"]
