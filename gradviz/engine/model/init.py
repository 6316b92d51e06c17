"""Weight initialisation of the recurrent network.

``default`` is PyTorch's (every recurrent parameter ~ U(-1/√H, 1/√H)). The others change
each square recurrent block W_h· (H, H) and zero the biases:

* ``orthogonal`` — a random orthogonal matrix per block (Saxe et al. 2014);
* ``identity``  — the identity per block (Le et al. 2015, "IRNN");
* ``normal``    — N(0, 1/H) entries, spectral radius ≈ 1 for large H (circular law).

Then, if ``rho`` is given, every block is rescaled to spectral radius ρ, and
``forget_bias`` is added to the forget gate's ``bias_ih`` block of the cells that have one
(the registry's ``has_forget_gate``).
"""
from __future__ import annotations

import math

import torch

from gradviz.engine.model.cells.rnn import random_orthogonal
from gradviz.engine.model.finite import refuse_nonfinite
from gradviz.engine.model.network import Network
from gradviz.registry import INITS


def block_views(net: Network) -> list[tuple[str, torch.Tensor]]:
    """Every square recurrent block as (name, (H, H) view of weight_hh), PyTorch gate order."""
    H = net.hidden
    views = []
    for name, param in net.recurrent_parameters():
        if name.startswith("weight_hh"):
            for j, gate in enumerate(net.cell.blocks):
                views.append((f"{name}[{gate}]", param.data[j * H:(j + 1) * H]))
    return views


def spectral_radius(w: torch.Tensor, name: str = "a recurrent weight") -> torch.Tensor:
    """Largest |eigenvalue| of each square matrix in w (..., H, H), in float64;
    NonFiniteWeights (naming it ``name``) if w holds a NaN or ±inf."""
    refuse_nonfinite([(name, w)], "the spectral radius")
    return torch.linalg.eigvals(w.double()).abs().amax(-1)


def _orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    return random_orthogonal(n, generator)


def cell_options(config) -> dict:
    """The settings of a RunConfig that the cells' own initialisations read."""
    if config is None:
        return {}
    return {"seq_len": config.seq_len, "init": config.init, "lru_r_min": config.lru_r_min,
            "lru_r_max": config.lru_r_max, "lru_max_phase": config.lru_max_phase,
            "indrnn_u_max": config.indrnn_u_max}


def initialise(net: Network, init: str = "default", rho: float | None = None,
               forget_bias: float = 0.0, generator: torch.Generator | None = None,
               config=None) -> None:
    """With ``config`` (a RunConfig), the cells that initialise their own way (LRU, IndRNN,
    the orthogonal RNN) read their settings from it. The diagonal cells and the orthogonal
    RNN have no square blocks to change: ``init`` (but 'identity' for the orthogonal RNN)
    and ``rho`` leave them as they are."""
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    options = cell_options(config)
    options.setdefault("init", init)
    net.reset_parameters(generator, options)
    H = net.hidden
    if net.cell.spec.diagonal or getattr(net.cell, "orthogonal", False):
        rho, init = None, "default"
    with torch.no_grad():
        if init != "default":
            for name, param in net.recurrent_parameters():
                if name.startswith("bias_"):
                    param.zero_()
            for _, block in block_views(net):
                if init == "orthogonal":
                    block.copy_(_orthogonal(H, generator))
                elif init == "identity":
                    block.copy_(torch.eye(H))
                elif init == "normal":
                    block.copy_(torch.randn(H, H, generator=generator, dtype=torch.float64) / math.sqrt(H))
                else:
                    raise ValueError(f"unknown init {init!r}; allowed: {', '.join(INITS)}")
        if rho is not None:
            for _, block in block_views(net):
                radius = spectral_radius(block).item()
                if radius > 0:
                    block.mul_(rho / radius)
        if forget_bias and net.cell.spec.has_forget_gate:
            j = net.cell.blocks.index("f")
            for name, param in net.recurrent_parameters():
                if name.startswith("bias_ih"):
                    param[j * H:(j + 1) * H] += forget_bias
