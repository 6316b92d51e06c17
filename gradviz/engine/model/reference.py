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
    zh: Tensor | None    # (B, G·H) W_hh h_{t-1} + b_hh; None where the gates see x_t only


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


# -- the modern recurrences: the gates see x_t only, or the recurrence is diagonal ------------
def mingru(p: dict[str, Tensor], x: Tensor, h: Tensor, c: Tensor | None = None) -> Step:
    """z = σ(W_z x_t + b_z), h̃ = W_h x_t + b_h; h_t = (1 − z) ⊙ h_{t-1} + z ⊙ h̃
    (Feng et al. 2024). Parameters: weight_ih (2·H, I), bias_ih (2·H,), blocks z, h."""
    zx = x @ p["weight_ih"].t() + p["bias_ih"]
    a, cand = zx.chunk(2, -1)
    z = torch.sigmoid(a)
    h = (1 - z) * h + z * cand
    return Step(h, None, torch.stack([z, cand], 1), zx, None)


def minlstm(p: dict[str, Tensor], x: Tensor, h: Tensor, c: Tensor | None = None) -> Step:
    """f, i = σ(W x_t + b), h̃ = W_h x_t + b_h; f′ = f/(f + i), i′ = i/(f + i);
    h_t = f′ ⊙ h_{t-1} + i′ ⊙ h̃ (Feng et al. 2024). Blocks f, i, h of weight_ih, bias_ih;
    the gates returned are f′, i′ and h̃."""
    zx = x @ p["weight_ih"].t() + p["bias_ih"]
    a_f, a_i, cand = zx.chunk(3, -1)
    f, i = torch.sigmoid(a_f), torch.sigmoid(a_i)
    fn, iN = f / (f + i), i / (f + i)
    h = fn * h + iN * cand
    return Step(h, None, torch.stack([fn, iN, cand], 1), zx, None)


def indrnn(p: dict[str, Tensor], x: Tensor, h: Tensor, c: Tensor | None = None) -> Step:
    """h_t = ReLU(W x_t + u ⊙ h_{t-1} + b) (Li et al. 2018): weight_ih (H, I), the vector
    u = weight_hh (H,), bias_ih (H,). Gates: h_t and ∂h_t/∂h_{t-1} = u ⊙ 𝟙[active]."""
    zx = x @ p["weight_ih"].t() + p["bias_ih"]
    zh = p["weight_hh"] * h
    pre = zx + zh
    h = torch.relu(pre)
    return Step(h, None, torch.stack([h, p["weight_hh"] * (pre > 0).to(h.dtype)], 1), zx, zh)


def lru_lambda(p: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """λ = exp(−exp(ν) + i·exp(θ)) and γ = √(1 − |λ|²) of the LRU, from nu_log and theta_log."""
    lam = torch.exp(torch.complex(-torch.exp(p["nu_log"]), torch.exp(p["theta_log"])))
    gamma = torch.sqrt(-torch.expm1(-2 * torch.exp(p["nu_log"])))
    return lam, gamma


def lru(p: dict[str, Tensor], x: Tensor, h: Tensor, c: Tensor | None = None) -> Step:
    """x_t = λ ⊙ x_{t-1} + γ ⊙ (B u_t) over N = H/2 complex units (Orvieto et al. 2023); h
    holds the state as [Re x, Im x] (B, H). B = B_re + i·B_im, each (N, I). Gates: the
    state and |λ| of each unit (for its real and imaginary parts alike)."""
    N = h.shape[-1] // 2
    lam, gamma = lru_lambda(p)
    state = torch.complex(h[:, :N], h[:, N:])
    bu = torch.complex(x @ p["B_re"].t(), x @ p["B_im"].t())
    state = lam * state + gamma * bu
    h = torch.cat([state.real, state.imag], -1)
    return Step(h, None, torch.stack([h, lam.abs().repeat(2).expand_as(h)], 1),
                torch.cat([bu.real, bu.imag], -1), None)


__all__ = ["Step", "rnn_tanh", "rnn_relu", "lstm", "lstm_peephole", "lstm_coupled", "gru",
           "mingru", "minlstm", "indrnn", "lru", "lru_lambda"]
