"""The contract every cell family keeps, and what the families share.

A :class:`Cell` runs one layer in one direction over a whole sequence. ``forward`` keeps
what the backward pass needs in a cache (a :class:`LayerCache` of the family's own type);
``backward`` walks t = T-1 … 0 and returns the *total* gradient reaching every h_t (and
c_t), the parameter gradients and the gradient of the input (:class:`LayerGrads`).

``forward`` chooses the code path once, and records it on the cache: the compiled loops
of :mod:`gradviz.engine.native` where they can take the input's dtype and device, the
PyTorch operations otherwise. ``backward`` takes the same path. The two compute the same
numbers to rounding.

Shapes: T timesteps, B batch, I input size, H hidden units, G gate blocks. Sequences are
given in *processing order* (the caller reverses them for a backward direction).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from gradviz.engine import native
from gradviz.registry import saturation_bounds
from gradviz.registry import CellSpec


@dataclass
class GateStats:
    """Gate activations of one layer-direction, over the batch rows that the loss sees
    (processing order in t): batch means and the saturated fractions."""
    mean: Tensor              # (T, G, H) batch mean of each gate and unit
    low: Tensor               # (T, G) fraction in the bottom 10% of the gate's range
    high: Tensor              # (T, G) fraction in the top 10% of the gate's range


@dataclass(kw_only=True)
class LayerCache:
    """What one layer-direction's forward pass leaves for its backward pass; each family
    adds its own fields."""
    x: Tensor                 # (T, B, I) input
    h_prev: Tensor            # (T, B, H) h_{t-1}, h_{-1} = h0
    h: Tensor                 # (T, B, H) outputs h_t
    c: Tensor | None = None   # (T, B, H) cell states c_t (LSTM family)
    # The compiled loops the forward pass ran with, which the backward pass runs with too;
    # None: both run as PyTorch operations.
    loops: native.Kernels | None = None
    stats: GateStats | None = None  # gate statistics, when the forward was asked for them
    # What the next backward pass computes for a capture as it goes, where its compiled
    # scan can (the LSTM, the GRU and the plain RNN): None nothing, 0 the step norms, r > 0
    # also the path norms over the first r batch rows (native.ScanNorms). Set by
    # Network.backward before each backward pass.
    norms_rows: int | None = None

    @property
    def path(self) -> str:
        """"compiled" or "pytorch": how the forward pass ran, and the backward pass runs."""
        return "compiled" if self.loops is not None else "pytorch"


@dataclass
class LayerGrads:
    dh: Tensor                # (T, B, H) total ∂L/∂h_t
    dc: Tensor | None         # (T, B, H) total ∂L/∂c_t (LSTM family)
    params: dict[str, Tensor]  # gradient of each parameter, by short name (weight_ih, …)
    dx: Tensor | None         # (T, B, I) ∂L/∂x_t, None when not asked for
    # (T, B, H) the gradient reaching h_t from outside the recurrence (the readout, or the
    # layer above); :meth:`Network.backward` records it.
    dout: Tensor | None = None
    # The norms the scan computed as it went (the cache's ``norms_rows``), or None.
    norms: native.ScanNorms | None = None


def gate_stats_into(stats: GateStats, s: int, acts: Tensor, rows: int,
                    ranges: tuple[tuple[float, float], ...]) -> None:
    """Write the statistics of ``acts`` (n, B', G, H), first ``rows`` rows, to t = s … s+n-1."""
    if len(set(ranges)) == 1:
        # One range for every gate: scalar bands are faster than a broadcast tensor of them.
        (a0, b0), = set(ranges)
        lo, hi = saturation_bounds(a0, b0)
    else:
        bounds = [saturation_bounds(a, b) for a, b in ranges]
        lo = torch.tensor([b[0] for b in bounds], dtype=acts.dtype,
                          device=acts.device).view(1, 1, -1, 1)
        hi = torch.tensor([b[1] for b in bounds], dtype=acts.dtype,
                          device=acts.device).view(1, 1, -1, 1)
    a = acts[:, :rows]
    n = a.shape[0]
    torch.mean(a, 1, out=stats.mean[s:s + n])
    # Comparing into a float buffer and summing over the batch dimension first is several
    # times faster than counting a boolean mask over (B, H).
    mask = torch.empty(a.shape, dtype=a.dtype, device=a.device)
    torch.lt(a, lo, out=mask)
    torch.mean(mask.sum(1), -1, out=stats.low[s:s + n]).div_(rows)
    torch.gt(a, hi, out=mask)
    torch.mean(mask.sum(1), -1, out=stats.high[s:s + n]).div_(rows)


def empty_stats(T: int, G: int, H: int, like: Tensor) -> GateStats:
    return GateStats(mean=like.new_empty((T, G, H)), low=like.new_empty((T, G)),
                     high=like.new_empty((T, G)))


def cut_after(t: int, tbptt: int) -> bool:
    """True if the gradient must not flow from step t+1 back into step t (chunk boundary)."""
    return tbptt > 0 and (t + 1) % tbptt == 0


def compiled_loops(like: Tensor) -> native.Kernels | None:
    """The compiled loops when they can take ``like``'s dtype and device, else None."""
    k = native.kernels()
    return k if k is not None and k.supports(like) else None


def tanh_via_sigmoid(x: Tensor, out: Tensor | None = None) -> Tensor:
    """tanh(x) = 2σ(2x) - 1, in place on a fresh tensor (or on ``out``); on CPU
    torch.sigmoid is several times faster than torch.tanh, and the forward recompute is
    dominated by these."""
    return torch.sigmoid(x * 2, out=out).mul_(2).sub_(1)


def shifted(h: Tensor, h0: Tensor) -> Tensor:
    """(T, B, H) h_{t-1} for every t, from h_t (T, B, H) and h_{-1} = h0 (B, H)."""
    return torch.cat([h0.unsqueeze(0), h[:-1]], 0)


def fused_weights(p: dict[str, Tensor]) -> list[Tensor]:
    """The parameters in the order of PyTorch's fused recurrences (torch.lstm, …)."""
    return [p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]]


def linear_grads(dz_x: Tensor, dz_h: Tensor, cache: LayerCache, weight_ih: Tensor,
                 need_dx: bool, xh: Tensor | None = None
                 ) -> tuple[dict[str, Tensor], Tensor | None]:
    """Parameter and input gradients from the pre-activation gradients, all t at once.

    ``dz_x`` (T, B, G·H) is ∂L/∂(W_ih x + b_ih), ``dz_h`` the same for W_hh h + b_hh.
    ``xh`` (T·B, I+H): the rows [x_t, h_{t-1}], when the forward pass built them; with
    ``dz_h is dz_x`` both weight gradients then come from one product.
    """
    gh = dz_x.shape[-1]
    dzx = dz_x.reshape(-1, gh)
    dzh = dzx if dz_h is dz_x else dz_h.reshape(-1, gh)
    x = cache.x.reshape(-1, cache.x.shape[-1])
    # (xᵀ dz)ᵀ rather than dzᵀ x: BLAS is several times faster this way round for the
    # tall, narrow matrices here (5x for a 2-wide input).
    if xh is not None and dzh is dzx:
        w = (xh.t() @ dzx).t()
        w_ih, w_hh = w[:, :x.shape[1]], w[:, x.shape[1]:]
    else:
        w_ih = (x.t() @ dzx).t()
        w_hh = (cache.h_prev.reshape(-1, cache.h_prev.shape[-1]).t() @ dzh).t()
    grads = {"weight_ih": w_ih.contiguous(), "weight_hh": w_hh.contiguous(),
             "bias_ih": dzx.sum(0)}
    grads["bias_hh"] = grads["bias_ih"].clone() if dzh is dzx else dzh.sum(0)
    dx = (dzx @ weight_ih).view(cache.x.shape) if need_dx else None
    return grads, dx


class Cell:
    """One cell family. Its name, gate blocks, the gates it shows and whether it has a cell
    state are its registry entry's (:mod:`gradviz.registry`); subclasses define the
    two passes and name the step of :mod:`~gradviz.engine.model.reference` they compute."""
    # One timestep of the equations, written plainly (model.reference): (p, x_t, h, c) -> Step.
    reference_step: Callable

    def __init__(self, spec: CellSpec):
        self.spec = spec
        self.name = spec.name
        self.blocks = spec.blocks                # parameter gate blocks, in PyTorch order
        self.gate_names = spec.gate_names        # gates shown to the user
        self.gate_ranges = spec.gate_ranges
        self.has_cell_state = spec.has_cell_state

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def param_shapes(self, input_size: int, hidden: int) -> dict[str, tuple[int, ...]]:
        gh = self.n_blocks * hidden
        return {"weight_ih": (gh, input_size), "weight_hh": (gh, hidden),
                "bias_ih": (gh,), "bias_hh": (gh,)}

    def recurrent_blocks(self, p: dict[str, Tensor], hidden: int) -> Tensor:
        """(G', H, H) the matrices whose ρ and σ_max are captured (the registry's
        ``rho_names``): the square blocks of weight_hh."""
        return p["weight_hh"].detach().view(-1, hidden, hidden)

    def reset(self, p: dict[str, Tensor], generator: torch.Generator | None,
              options: dict) -> None:
        """Initialise one layer-direction's parameters ``p`` in place the cell's own way,
        after PyTorch's default; ``options``: the cell's settings (RunConfig's lru_*,
        indrnn_u_max, seq_len, init) where known. Most cells keep the default."""

    def constrain(self, p: dict[str, Tensor], options: dict) -> None:
        """Put one layer-direction's parameters ``p`` back in the set the cell allows,
        in place, after every optimiser step (IndRNN's bound on |u|). Most have none."""

    def forward(self, x: Tensor, h0: Tensor, c0: Tensor | None, p: dict[str, Tensor],
                stats_rows: int | None = None) -> LayerCache:
        """With ``stats_rows``, the cache also holds the gate statistics of those rows."""
        raise NotImplementedError

    def backward(self, cache: LayerCache, p: dict[str, Tensor], dout: Tensor, tbptt: int = 0,
                 need_dx: bool = True) -> LayerGrads:
        raise NotImplementedError

    def gates(self, cache: LayerCache) -> Tensor:
        """Gate activations (T, B, len(gate_names), H) for capture."""
        raise NotImplementedError

    def _with_stats(self, cache: LayerCache, stats_rows: int | None) -> LayerCache:
        if stats_rows is not None:
            acts = self.gates(cache)
            T, _, G, H = acts.shape
            cache.stats = empty_stats(T, G, H, acts)
            gate_stats_into(cache.stats, 0, acts, stats_rows, self.gate_ranges)
        return cache


__all__ = ["Cell", "LayerCache", "LayerGrads", "GateStats", "gate_stats_into", "empty_stats",
           "cut_after", "compiled_loops", "tanh_via_sigmoid", "shifted", "fused_weights",
           "linear_grads"]
