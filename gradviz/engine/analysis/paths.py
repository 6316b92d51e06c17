"""The gradient along each path of a cell's picture, per timestep and unit.

The classic pictures of the cells (gradviz.ui.views.celldiagram) draw the state entering
on the left and leaving on the right; the gradient flows back from right to left. For
every timestep t and unit, :func:`path_norms` gives the norm over the batch rows the
loss sees of the gradient along each named path (:data:`PATHS`), from the total
gradients of the backward pass — nothing is recomputed, every path is a difference or a
product of quantities the BPTT already has:

* ``dh``: ∂L/∂h_t, the total gradient reaching h_t.
* ``dc``: ∂L/∂c_t (LSTM cells).
* ``belt``: what step t hands straight back to the previous state along its additive
  path: f_t ⊙ ∂L/∂c_t to c_{t−1} (LSTM cells, the "constant error carousel"), or
  z_t ⊙ ∂L/∂h_t to h_{t−1} (GRU). Zero where truncated BPTT cuts before t.
* ``w``: what reaches h_{t−1} from step t through W_hh and the gates:
  ∂L/∂h_{t−1} − (its gradient from outside the recurrence) − (GRU: the belt). NaN at
  t = 0, whose h_{−1} is the initial state and is not captured.
* ``c_h`` (LSTM cells): the part of ∂L/∂c_t that did not come along the belt from
  c_{t+1}: ∂L/∂c_t − f_{t+1} ⊙ ∂L/∂c_{t+1}, i.e. through h_t (and, for the peephole
  LSTM, through step t+1's peepholes).

So ∂L/∂c_{t−1} = belt_t + c_h_{t−1} exactly, which is the share of ∂L/∂c_{t−1} along
the belt against through h the diagram shows. Squared norms add over units: the norm
over units of ``dh`` is the captured ‖∂L/∂h_t‖. Shapes: T timesteps, B batch rows,
H units, Q paths; processing order in t.

On the CPU the compiled loop of :mod:`gradviz.engine.native` computes them in one pass
over the gradients (the squares summed in double); the PyTorch operations here, which
are its specification, compute the same where it is not available.
"""
from __future__ import annotations

import torch
from torch import Tensor

from gradviz.engine.analysis.norms import refine
from gradviz.engine.model.cells import Cell, LayerCache, LayerGrads
from gradviz.engine.model.cells.base import compiled_loops, cut_after
from gradviz.engine.native import Kernels

PATHS = {
    "dh": "∂L/∂hₜ, the total gradient reaching hₜ",
    "dc": "∂L/∂cₜ, the total gradient reaching cₜ",
    "belt": "the gradient this step hands straight back to the previous state",
    "w": "the gradient reaching hₜ₋₁ from this step through W_hh and the gates",
    "c_h": "the part of ∂L/∂cₜ that came through hₜ, not along the belt",
}


def path_names(cell: Cell) -> tuple[str, ...]:
    """The paths of ``cell``'s picture, in the order :func:`path_norms` stacks them."""
    if cell.has_cell_state:
        return ("dh", "dc", "belt", "w", "c_h")
    if "z" in cell.gate_names and not cell.spec.diagonal:
        return ("dh", "belt", "w")
    return ("dh", "w")


@torch.no_grad()
def path_norms(cell: Cell, cache: LayerCache, grads: LayerGrads, rows: int,
               tbptt: int = 0) -> Tensor:
    """(Q, T, H) norm over the first ``rows`` batch rows of each path's gradient.
    ``grads.dout`` must be set (:meth:`~gradviz.engine.model.network.Network.backward` does).
    The compiled loop where there is one for the tensors, else PyTorch operations."""
    loops = compiled_loops(grads.dh)
    if loops is not None:
        return _compiled(loops, cell, cache, grads, rows, tbptt)
    dh, dout = grads.dh[:, :rows], grads.dout[:, :rows]
    T = dh.shape[0]
    names = path_names(cell)
    at = {n: i for i, n in enumerate(names)}
    # Every path is written into one (Q, T, B, H) block, squared, and summed over the
    # batch in one pass: a few large operations instead of many (their dispatch, not
    # their arithmetic, is what costs at these sizes), and no vector_norm, which reduces
    # over a middle dimension ~17x slower than squaring and summing.
    out = dh.new_empty((len(names), *dh.shape))
    # Steps t whose gradient does not flow back to step t − 1 (truncated BPTT's cuts).
    cuts = [t for t in range(1, T) if cut_after(t - 1, tbptt)]
    w = out[at["w"]]
    w[0] = float("nan")            # h_{−1} is the initial state: not captured
    torch.sub(dh[:-1], dout[:-1], out=w[1:])
    if cell.has_cell_state:
        dc = grads.dc[:, :rows]
        belt = out[at["belt"]]
        torch.mul(cell.gates(cache)[:, :rows, cell.gate_names.index("f")], dc, out=belt)
        belt[cuts] = 0.0
        c_h = out[at["c_h"]]
        torch.sub(dc[:-1], belt[1:], out=c_h[:-1])
        c_h[-1] = dc[-1]
        out[at["dc"]] = dc
    elif "belt" in at:
        belt = out[at["belt"]]
        torch.mul(cell.gates(cache)[:, :rows, cell.gate_names.index("z")], dh, out=belt)
        belt[cuts] = 0.0
        w[1:] -= belt[1:]
    out[at["dh"]] = dh
    # Summed in the inputs' type, then any norm whose squares may have underflowed redone
    # exactly (gradviz.engine.analysis.norms).
    return refine(out, out.square().sum(2).sqrt_(), (2,))


def _compiled(loops: Kernels, cell: Cell, cache: LayerCache, grads: LayerGrads, rows: int,
              tbptt: int) -> Tensor:
    """path_norms by the compiled loop: one pass over the inputs (the PyTorch operations
    make about ten over arrays of that size)."""
    T, B, H = grads.dh.shape
    names = path_names(cell)
    gates, at = None, 0
    if "belt" in names:
        gates = cell.gates(cache).contiguous()
        at = cell.gate_names.index("f" if cell.has_cell_state else "z")
    dc = grads.dc.contiguous() if cell.has_cell_state else None
    out = grads.dh.new_empty((len(names), T, H))
    loops.path_norms(min(rows, B), tbptt, grads.dh.contiguous(), grads.dout.contiguous(), dc,
                     gates, at, out)
    return out


__all__ = ["PATHS", "path_names", "path_norms"]
