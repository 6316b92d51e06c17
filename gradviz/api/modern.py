"""gradviz's own recurrent layers as a ``torch.nn`` module, for a script or a notebook.

PyTorch has no minGRU, minLSTM, IndRNN, LRU or orthogonal RNN module. :class:`Recurrent`
is one layer stack of any gradviz cell with PyTorch's interface (``input_size``,
``hidden_size``, ``num_layers``, ``bidirectional``; ``forward(x, h0)`` returns
``(output, h_n)``, x (T, B, I) or (B, T, I) with ``batch_first``), trained by autograd like
any module, and :func:`gradviz.capture` follows it exactly, as it follows ``nn.LSTM``::

    layer = gradviz.Recurrent("lru", input_size=2, hidden_size=32)
    cap = gradviz.capture(layer, x, lambda out: ((out[-1] @ w - y) ** 2).mean())

Its forward pass is the cell's plain equations (:mod:`gradviz.engine.model.reference`),
step by step, so autograd differentiates it; :func:`gradviz.capture` instead runs gradviz's
own recurrence on the same parameters, with the hand-written backward pass that captures
every ‖∂L/∂h_t‖. The parameters are the gradviz network's, by its names (``weight_ih_l0``,
``nu_log_l0``, …), initialised as a gradviz run initialises them (``seed``, and the
cell's settings: ``lru_r_min``, ``lru_r_max``, ``lru_max_phase``, ``indrnn_u_max``,
``seq_len`` for IndRNN's 2^(1/T)).
"""
from __future__ import annotations

import torch
from torch import Tensor

from gradviz.engine.model.network import Network


class Recurrent(Network):
    """A stack of gradviz ``cell`` layers as a torch module (no readout)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, batch_first: bool = False,
                 dtype: torch.dtype = torch.float32, seed: int = 0, **options):
        super().__init__(cell, input_size, hidden_size, 1, num_layers, bidirectional, dtype)
        self.readout = None
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.bidirectional, self.batch_first = bidirectional, batch_first
        self.reset_parameters(torch.Generator().manual_seed(seed), options)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(output (T, B, D·H), h_n (L·D, B, H)) by the cell's equations, with autograd."""
        xs = x.transpose(0, 1) if self.batch_first else x
        T, B, _ = xs.shape
        if h0 is None:
            h0 = self.zero_state(B)[0]
        layer_in, last = xs, []
        for k in range(self.layers):
            outs = []
            for d in range(self.directions):
                p = self.layer_params(k, d)
                seq = layer_in if d == 0 else layer_in.flip(0)
                h, hs = h0[k * self.directions + d], []
                for t in range(T):
                    h = self.cell.reference_step(p, seq[t], h, None).h
                    hs.append(h)
                last.append(h)
                out = torch.stack(hs)
                outs.append(out if d == 0 else out.flip(0))
            layer_in = torch.cat(outs, -1)
        out = layer_in.transpose(0, 1) if self.batch_first else layer_in
        return out, torch.stack(last)


__all__ = ["Recurrent"]
