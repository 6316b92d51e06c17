"""A stacked, optionally bidirectional recurrent network with a linear readout.

Parameter names match ``torch.nn.RNN/LSTM/GRU``: ``weight_ih_l{k}``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}`` and the ``_reverse`` suffix for the backward direction,
so weights can be copied to and from PyTorch's modules one to one. The readout is
``readout.weight`` (O, D·H) and ``readout.bias`` (O,). This module is the only one that
makes or reads these names (:func:`param_name`, :func:`owners_from_names`).

The recurrent part is not differentiated by autograd: :meth:`Network.run` runs the forward
pass without a graph and :meth:`Network.backward` walks back through time by hand, which
is what lets every per-timestep gradient be captured exactly and cheaply.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor, nn

from torch.nn.utils.parametrizations import orthogonal

from .cells import Cell, LayerCache, LayerGrads, make_cell
from .cells.rnn import random_orthogonal


def param_name(short: str, layer: int, direction: int) -> str:
    """PyTorch's name of a recurrent parameter: ``weight_ih_l0``, ``bias_hh_l1_reverse``, …"""
    return f"{short}_l{layer}{'_reverse' if direction else ''}"


_RECURRENT_NAME = re.compile(r"(?:weight|bias)_[a-z]+_l(\d+)(_reverse)?")


def owners_from_names(names: Iterable[str]) -> tuple[tuple[int, int] | None, ...]:
    """(layer, direction) of each parameter named as :func:`param_name` names them; None
    for any other (the readout's). For records made before captures carried the owners."""
    owners = []
    for name in names:
        match = _RECURRENT_NAME.fullmatch(name)
        owners.append((int(match.group(1)), int(bool(match.group(2)))) if match else None)
    return tuple(owners)


@dataclass
class Forward:
    """The result of :meth:`Network.run`. ``caches[k][d]`` is layer k, direction d."""
    output: Tensor                       # (T, B, D·H) top layer outputs, in time order
    caches: list[list[LayerCache]]
    h_n: Tensor                          # (L·D, B, H) final hidden states, PyTorch layout
    c_n: Tensor | None                   # (L·D, B, H) final cell states (LSTM family)


class Network(nn.Module):
    def __init__(self, cell: str, input_size: int, hidden: int, output_size: int,
                 layers: int = 1, bidirectional: bool = False,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        super().__init__()
        self.cell: Cell = make_cell(cell)
        self.cell_name = cell
        self.input_size = input_size
        self.hidden = hidden
        self.layers = layers
        self.directions = 2 if bidirectional else 1
        self._names: list[list[dict[str, str]]] = []
        for k in range(layers):
            layer_in = input_size if k == 0 else hidden * self.directions
            per_dir = []
            for d in range(self.directions):
                names = {}
                for short, shape in self.cell.param_shapes(layer_in, hidden).items():
                    full = param_name(short, k, d)
                    self.register_parameter(full, nn.Parameter(torch.empty(shape, dtype=dtype, device=device)))
                    names[short] = full
                per_dir.append(names)
            self._names.append(per_dir)
        # The orthogonal RNN: each weight_hh through PyTorch's orthogonal parametrisation.
        self._parametrized = [names["weight_hh"] for per_dir in self._names for names in per_dir
                              if getattr(self.cell, "orthogonal", False)]
        for full in self._parametrized:
            with torch.no_grad():
                getattr(self, full).copy_(torch.eye(hidden, device=device))
            orthogonal(self, full, orthogonal_map="matrix_exp")
        self.readout = nn.Linear(hidden * self.directions, output_size, dtype=dtype, device=device)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None,
                         options: dict | None = None) -> None:
        """PyTorch's default: every recurrent parameter ~ U(-1/√H, 1/√H); then each cell's
        own initialisation (:meth:`Cell.reset`, with the cell's settings ``options``), and
        for the orthogonal RNN a random orthogonal W_hh (the identity with init
        'identity')."""
        bound = 1.0 / math.sqrt(self.hidden)
        options = options or {}
        self.options = dict(options)   # the cell's settings, for :meth:`constrain`
        with torch.no_grad():
            for name, param in self.recurrent_parameters():
                param.uniform_(-bound, bound, generator=generator)
            for k in range(self.layers):
                for d in range(self.directions):
                    self.cell.reset(self.layer_params(k, d), generator, options)
            for full in self._parametrized:
                w = (torch.eye(self.hidden, dtype=torch.float64) if options.get("init") == "identity"
                     else random_orthogonal(self.hidden, generator))
                like = next(self.parameters())
                setattr(self, full, w.to(like.dtype).to(like.device))
            if self.readout is None:
                return
            fan_in = self.readout.in_features
            rbound = 1.0 / math.sqrt(fan_in)
            # nn.Linear's default (kaiming uniform with a=√5) is U(-1/√fan_in, 1/√fan_in).
            self.readout.weight.uniform_(-rbound, rbound, generator=generator)
            self.readout.bias.uniform_(-rbound, rbound, generator=generator)

    def constrain(self) -> None:
        """Put the parameters back where the cell allows them (IndRNN's |u| ≤ 2^(1/T));
        call after every optimiser step. Nothing for most cells."""
        for k in range(self.layers):
            for d in range(self.directions):
                self.cell.constrain(self.layer_params(k, d), self.options)

    # -- parameters ---------------------------------------------------------------------
    def layer_params(self, k: int, d: int) -> dict[str, Tensor]:
        """Layer k, direction d's parameters by short name (weight_ih, …)."""
        return {short: getattr(self, full) for short, full in self._names[k][d].items()}

    def param_owners(self) -> tuple[tuple[int, int] | None, ...]:
        """(layer, direction) of each parameter in ``named_parameters()`` order; None for
        the readout's, which belong to no recurrent layer."""
        owner = {self._leaf_name(full): (k, d) for k, per_dir in enumerate(self._names)
                 for d, names in enumerate(per_dir) for full in names.values()}
        return tuple(owner.get(name) for name, _ in self.named_parameters())

    def _leaf_name(self, full: str) -> str:
        """The name of the trained tensor behind ``full``: itself, or for a parametrised
        weight its unconstrained original."""
        return f"parametrizations.{full}.original" if full in self._parametrized else full

    def _set_grad(self, full: str, param: Tensor, grad: Tensor) -> None:
        """Give ``grad`` (∂L/∂ the tensor named ``full``) to the tensor that is trained: for a
        parametrised weight, autograd carries it back through the parametrisation."""
        if full not in self._parametrized:
            param.grad = grad
            return
        original = self.parametrizations[full].original
        with torch.enable_grad():
            (original.grad,) = torch.autograd.grad(getattr(self, full), original, grad)

    def recurrent_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("readout.")]

    @property
    def has_cell_state(self) -> bool:
        return self.cell.has_cell_state

    def zero_state(self, batch: int) -> tuple[Tensor, Tensor | None]:
        p = next(self.parameters())
        shape = (self.layers * self.directions, batch, self.hidden)
        h0 = torch.zeros(shape, dtype=p.dtype, device=p.device)
        return h0, (torch.zeros_like(h0) if self.has_cell_state else None)

    # -- passes -------------------------------------------------------------------------
    @torch.no_grad()
    def run(self, x: Tensor, state: tuple[Tensor, Tensor | None] | None = None,
            stats_rows: int | None = None) -> Forward:
        """Forward pass over x (T, B, I) from ``state`` (h0, c0), each (L·D, B, H) or None.
        With ``stats_rows``, every cache also holds the gate statistics of the first
        ``stats_rows`` batch rows (:class:`~gradviz.engine.model.cells.GateStats`)."""
        T, B, _ = x.shape
        h0, c0 = state if state is not None else self.zero_state(B)
        caches, h_n, c_n = [], [], []
        layer_in = x
        for k in range(self.layers):
            per_dir, outs = [], []
            for d in range(self.directions):
                j = k * self.directions + d
                xin = layer_in if d == 0 else layer_in.flip(0)
                cache = self.cell.forward(xin, h0[j], c0[j] if c0 is not None else None,
                                          self.layer_params(k, d), stats_rows)
                per_dir.append(cache)
                outs.append(cache.h if d == 0 else cache.h.flip(0))
                h_n.append(cache.h[-1])
                if cache.c is not None:
                    c_n.append(cache.c[-1])
            caches.append(per_dir)
            layer_in = outs[0] if self.directions == 1 else torch.cat(outs, -1)
        return Forward(output=layer_in, caches=caches, h_n=torch.stack(h_n),
                       c_n=torch.stack(c_n) if c_n else None)

    @torch.no_grad()
    def backward(self, fwd: Forward, d_output: Tensor, tbptt: int = 0,
                 input_grad: bool = False, norms_rows: int | None = None
                 ) -> list[list[LayerGrads]]:
        """Backpropagate ∂L/∂output (T, B, D·H) through time and layers.

        Sets ``.grad`` of every recurrent parameter and returns, per layer and direction,
        the gradients in *processing order* (reversed in time for a backward direction).
        With ``input_grad``, the first layer's ``dx`` (∂L/∂x_t) is computed too. With
        ``norms_rows`` (a capture's: 0 for the step norms, r > 0 for the path norms over r
        rows too) the compiled scans that can compute a capture's norms as they go do
        (:attr:`LayerGrads.norms`; :func:`~gradviz.engine.training.timesteps.timestep_arrays`
        uses them).
        """
        H = self.hidden
        result: list[list[LayerGrads]] = [[] for _ in range(self.layers)]
        d_layer = d_output
        for k in range(self.layers - 1, -1, -1):
            parts = d_layer.split(H, -1) if self.directions == 2 else (d_layer,)
            d_below = None
            for d in range(self.directions):
                # One contiguous copy, for the backward pass and the compiled path norms.
                dout = (parts[d] if d == 0 else parts[d].flip(0)).contiguous()
                params = self.layer_params(k, d)
                fwd.caches[k][d].norms_rows = norms_rows
                grads = self.cell.backward(fwd.caches[k][d], params, dout, tbptt,
                                           need_dx=k > 0 or input_grad)
                grads.dout = dout
                for short, g in grads.params.items():
                    self._set_grad(self._names[k][d][short], params[short], g)
                result[k].append(grads)
                if k > 0:
                    dx = grads.dx if d == 0 else grads.dx.flip(0)
                    d_below = dx if d_below is None else d_below + dx
            d_layer = d_below
        return result
