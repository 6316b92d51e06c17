"""2-norms that do not underflow: exact down to the smallest normal number of the dtype.

A norm squares its elements, so in float32 a plain ``torch.linalg.vector_norm`` reads
exactly 0 once the elements fall below ~1e-19 (their squares below float32's smallest
normal number, 1.18e-38), and inf once they pass ~1e19 — nine orders of magnitude early,
in a tool whose subject is vanishing and exploding gradients. Here the fast float norm is
taken first; where its result is small enough that squares may have been lost (below
``sqrt(n · tiny / eps)`` for n elements: what they could lose is then under eps of the
result) or is infinite, those norms alone are recomputed in float64, scaled by their
largest magnitude (so that float64 inputs do not underflow either). A norm is then 0 only
when all its elements are, and within a few float roundings of the float64 norm of the
same elements. The common case pays one comparison; a vanished timestep pays a copy of
its elements in float64.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from gradviz.engine import native


@functools.lru_cache(maxsize=256)
def _floor(dtype: torch.dtype, count: int) -> float:
    """Below this a float norm of ``count`` elements may have lost squares to underflow."""
    info = torch.finfo(dtype)
    return math.sqrt(max(count, 1) * info.tiny / info.eps)


def _scaled(rows: Tensor) -> Tensor:
    """2-norm of each row of ``rows`` (N, M), in float64, scaled by the row's largest
    magnitude."""
    rows = rows.double()
    peak = rows.abs().amax(1, keepdim=True) if rows.shape[1] else rows.new_zeros((len(rows), 1))
    scale = torch.where((peak > 0) & torch.isfinite(peak), peak, torch.ones_like(peak))
    # An infinite element makes the norm inf (NaN stays NaN: amax propagates it).
    return torch.linalg.vector_norm(rows / scale, dim=1) * scale.squeeze(1)


def refine(x: Tensor, norms: Tensor, dims: tuple[int, ...]) -> Tensor:
    """``norms`` (the float 2-norms of ``x`` over ``dims``, shaped as ``x`` without them)
    with those that may have underflowed or overflowed recomputed exactly; in place, also
    returned."""
    if norms.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        return norms
    dims = tuple(sorted(d % x.dim() for d in dims))
    count = math.prod(x.shape[d] for d in dims)
    suspect = (norms < _floor(norms.dtype, count)) | torch.isinf(norms)
    if not bool(suspect.any()):
        return norms
    kept = [d for d in range(x.dim()) if d not in dims]
    rows = x.detach().permute(*kept, *dims).reshape(-1, count)
    flat = norms.view(-1)
    at = suspect.reshape(-1).nonzero().flatten()
    flat[at] = _scaled(rows[at]).to(norms.dtype)
    return norms


def norm_over(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """The 2-norm of ``x`` over ``dims``, exact to the dtype's floor (see the module): by
    the compiled loop over all dimensions but the first where it can (one pass, squares
    summed in double), else by PyTorch with :func:`refine`."""
    with torch.no_grad():
        x = x.detach()
        if tuple(d % x.dim() for d in dims) == tuple(range(1, x.dim())):
            loops = native.kernels()
            if loops is not None and loops.supports(x):
                out = x.new_empty(x.shape[0])
                loops.row_norms(x.contiguous(), out)
                return out
        return refine(x, torch.linalg.vector_norm(x, dim=dims), dims)


def step_norms(dh: Tensor, dout: Tensor, dc: Tensor | None = None) -> Tensor:
    """(3, T), or (4, T) with ``dc``: ‖dh_t‖, ‖dout_t‖, ‖dh_t − dout_t‖ (the part of the
    gradient carried through the recurrence) and ‖dc_t‖, each over all dimensions but the
    first, as :func:`norm_over` gives them: in one call of the compiled loops where it can
    (no dh − dout formed), else :func:`norm_over` of each."""
    with torch.no_grad():
        dh, dout = dh.detach(), dout.detach()
        dc = None if dc is None else dc.detach()
        loops = native.kernels()
        tensors = [dh, dout] + ([] if dc is None else [dc])
        if (loops is not None and dh.dim() == 3 and all(loops.supports(t) for t in tensors)
                and all(t.shape == dh.shape and t.dtype == dh.dtype for t in tensors)):
            out = dh.new_empty((len(tensors) + 1, dh.shape[0]))
            loops.step_norms(dh.contiguous(), dout.contiguous(),
                             None if dc is None else dc.contiguous(), out)
            return out
        parts = [dh, dout, dh - dout] + ([] if dc is None else [dc])
        return torch.stack([norm_over(x, tuple(range(1, x.dim()))) for x in parts])


def each_norm(tensors: list[Tensor]) -> Tensor:
    """The 2-norm of each tensor, stacked, exact to the dtype's floor: one fused call where
    torch has it, then the few that may have underflowed or overflowed recomputed."""
    with torch.no_grad():
        tensors = [t.detach() for t in tensors]
        fused = getattr(torch, "_foreach_norm", None)
        norms = torch.stack(fused(tensors) if fused is not None
                            else [torch.linalg.vector_norm(t) for t in tensors])
        if norms.dtype not in (torch.float32, torch.float64):
            return norms
        for i, value in enumerate(norms.tolist()):
            if value < _floor(norms.dtype, tensors[i].numel()) or value == math.inf:
                norms[i] = _scaled(tensors[i].reshape(1, -1))[0].to(norms.dtype)
        return norms


def total_norm(norms: Tensor) -> float:
    """The 2-norm of a vector of norms, as a float, without underflow or overflow (their
    squares would underflow in float32); NaN if one is NaN."""
    values = norms.detach().reshape(-1).tolist()
    return math.nan if any(math.isnan(v) for v in values) else math.hypot(*values)


__all__ = ["norm_over", "step_norms", "each_norm", "total_norm", "refine"]
