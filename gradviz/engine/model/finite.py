"""Weights that are not finite are refused before any eigen- or singular-value routine.

LAPACK's eigenvalue routines, as torch.linalg.eigvals reaches them through MKL, crash the
whole process on a NaN or infinite input ("Parameter 3 was incorrect on entry to DGEBAL",
then a segmentation fault): a notebook kernel or the training process would die. Every
decomposition of recurrent weights therefore checks its input first and raises
:class:`NonFiniteWeights`, a ValueError that names the tensor.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch


class NonFiniteWeights(ValueError):
    """A weight holds NaN or ±inf; the message names it."""


def first_nonfinite(tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first tensor holding a NaN or ±inf, else None. The tensors of a
    device are checked there and their answers read in one copy (one host sync per device,
    not one per tensor); a CPU tensor's smallest and largest element are read at once (the
    copy and its bookkeeping took ~10 times as long as the check)."""
    names, flags, bad = [], {}, []
    with torch.no_grad():
        for name, t in tensors:
            t = t.detach()
            if t.numel() and t.is_floating_point():
                ends = torch.aminmax(t)          # NaN propagates into both, inf is one of them
                if t.device.type == "cpu":
                    if not (math.isfinite(ends.min.item()) and math.isfinite(ends.max.item())):
                        bad.append(len(names))
                else:
                    flags.setdefault(t.device, []).append(
                        (len(names), torch.isfinite(ends.min) & torch.isfinite(ends.max)))
                names.append(name)
        bad += [index for group in flags.values()
                for (index, _), ok in zip(group, torch.stack([f for _, f in group]).to("cpu"))
                if not bool(ok)]
    return names[min(bad)] if bad else None


def refuse_nonfinite(tensors: Iterable[tuple[str, torch.Tensor]], where: str) -> None:
    """NonFiniteWeights naming the first tensor of ``tensors`` (name, tensor) that holds a
    NaN or ±inf; ``where`` says who refuses it ("gradviz.capture", …)."""
    name = first_nonfinite(tensors)
    if name is not None:
        raise NonFiniteWeights(f"{where}: {name} holds NaN or infinite values, whose "
                               "eigenvalues cannot be computed; the weights have diverged. "
                               "Restore finite weights (a lower learning rate or gradient "
                               "clipping keeps them so)")


__all__ = ["NonFiniteWeights", "first_nonfinite", "refuse_nonfinite"]
