"""What one captured training step holds: plain numpy arrays and numbers, no tensors.

A :class:`Capture` is the snapshot that crosses from the training process to the window,
and the row that a run record keeps. Shapes use L = layers, D = directions (1 or 2),
G = gates of the cell, T = timesteps, H = hidden units, P = parameter tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class Capture:
    step: int                      # index of the training step (0-based) this describes
    loss: float                    # mean batch loss of the step (nan if not finite)
    baseline: float                # the task's no-memory baseline loss
    lr: float                      # learning rate used by the step
    clip: str                      # clipping mode used by the step: none / value / norm
    clip_threshold: float
    # ‖∂L/∂h_t‖: Frobenius norm over batch x units of the total gradient reaching h_t.
    dh_norm: np.ndarray            # (L, D, T) float32
    dc_norm: np.ndarray | None     # (L, D, T) float32, LSTM cells only
    gate_names: tuple[str, ...]    # the cell's gates, e.g. ("i", "f", "g", "o")
    gate_ranges: tuple[tuple[float, float], ...]  # value range of each gate, e.g. (0, 1)
    # The per-unit arrays below are None in a *light* capture (see :meth:`light`).
    gates: np.ndarray | None       # (L, D, G, T, H) float32, batch mean of each activation
    sat_low: np.ndarray | None     # (L, D, G, T) fraction in the bottom 10% of the gate's range
    sat_high: np.ndarray | None    # (L, D, G, T) fraction in the top 10% of the gate's range
    probe_h: np.ndarray | None     # (L, D, T, H) h_t of the fixed probe sequence
    probe_c: np.ndarray | None     # (L, D, T, H) c_t of the probe sequence, LSTM cells only
    param_names: tuple[str, ...]   # (P,) parameter names, PyTorch style
    param_grad_norm: np.ndarray    # (P,) L2 norm of each parameter's gradient before clipping
    grad_norm: float               # global L2 norm before clipping (inf/nan if not finite)
    grad_norm_clipped: float       # global L2 norm after clipping (what the optimiser used)
    clipped: bool                  # whether clipping changed the gradient this step
    nonfinite: bool                # loss or gradient not finite: the step was not applied
    rho: np.ndarray                # (L, D, G') spectral radius of each square recurrent block
    sigma_max: np.ndarray          # (L, D, G') largest singular value of each block
    rho_names: tuple[str, ...]     # (G',) names of the recurrent blocks, e.g. ("W_hi", ...)
    events: tuple[str, ...] = field(default=())  # human-readable events of this step
    # The step whose weights ρ and σ describe: since they are tracked on every captured step
    # (gradviz.engine.analysis.spectrum), the capture's own; files from before say otherwise.
    rho_step: int = 0
    # (P,) (layer, direction) of each parameter, None for the readout's: views group the
    # tensors by layer with this, never by parsing their names.
    param_owners: tuple[tuple[int, int] | None, ...] = field(default=())
    # (L, D, T) float32 ‖·‖ of the gradient reaching h_t from outside the recurrence (the
    # readout's at t, or the layer above's): the local term of the chain-rule bound
    # (gradviz.engine.analysis.bounds). None in captures made before it was kept.
    dout_norm: np.ndarray | None = None
    # (L, D, T) float32 ‖∂L/∂h_t − dout_t‖: the part of ∂L/∂h_t carried back through the
    # recurrence from later steps (gradviz.engine.analysis.bounds.carried_gradient); with
    # dout_t, the local part, it sums to ∂L/∂h_t vector by vector. None in older captures.
    carried_norm: np.ndarray | None = None
    # (L, D, Q, T, H) float32, per unit the norm over the batch of the gradient along each
    # path of the cell's picture, named by path_names (gradviz.engine.analysis.paths); full only.
    paths: np.ndarray | None = None
    path_names: tuple[str, ...] = field(default=())
    # The task's own measure of success on this step's batch, where it has one (the
    # fraction of adding sums solved, the accuracy of a copied or recalled symbol), named
    # by ``metric_name``; nan and "" for a task without one.
    metric: float = float("nan")
    metric_name: str = ""
    # (T,) float32 ‖∂L/∂x_t‖ over batch × features: the gradient reaching the input at each
    # timestep (input attribution); None where it was not computed.
    dx_norm: np.ndarray | None = None
    # (L, D, 3, T) float32, the orthogonal RNN's ∂h_t/∂h_{t−1} = diag(1 − h_t²)·W_hh: the
    # batch mean of its largest, smallest and mean singular value at each step
    # (gradviz.engine.analysis.factors.orthogonal_singular_values); full only, None for
    # other cells.
    jacobian_sv: np.ndarray | None = None

    @property
    def layers(self) -> int:
        return int(self.dh_norm.shape[0])

    @property
    def directions(self) -> int:
        return int(self.dh_norm.shape[1])

    @property
    def seq_len(self) -> int:
        return int(self.dh_norm.shape[2])

    @property
    def is_light(self) -> bool:
        return self.gates is None

    def light(self) -> "Capture":
        """A copy without the per-unit arrays: what histories need, cheap to send."""
        return replace(self, gates=None, sat_low=None, sat_high=None, probe_h=None, probe_c=None,
                       paths=None, jacobian_sv=None)
