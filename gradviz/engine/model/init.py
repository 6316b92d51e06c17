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


def spectral_radius(w: torch.Tensor) -> torch.Tensor:
    """Largest |eigenvalue| of each square matrix in w (..., H, H), in float64."""
    return torch.linalg.eigvals(w.double()).abs().amax(-1)


def _orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    # Fix the signs so that the distribution is uniform over orthogonal matrices.
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def initialise(net: Network, init: str = "default", rho: float | None = None,
               forget_bias: float = 0.0, generator: torch.Generator | None = None) -> None:
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    net.reset_parameters(generator)
    H = net.hidden
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
