"""Any recurrence, followed exactly through autograd: :func:`trace` and :class:`Trace`.

::

    tr = gradviz.trace()
    h = h0
    for t in range(T):
        h = my_cell(x[t], h)
        h = tr.mark(h, t)                  # name "h" by default; returns h itself
        # tr.mark(f, t, name="f", gate=True) for a gate's activation
    loss_fn(h).backward()
    cap = tr.capture()                     # cap.norms["h"]: (T,) ‖∂L/∂h_t‖

:meth:`Trace.mark` registers a hook on the marked tensor. Autograd calls it once, with
the *total* gradient reaching that tensor from every use of it (what ``retain_grad``
keeps in ``.grad``), and the hook keeps only its norm over every other dimension (batch ×
units), computed in float64 on the tensor's own device (no host synchronisation until
:meth:`Trace.capture`). A tensor marked with ``gate=True`` is not followed backward: its
values give the gate views' batch mean per unit and saturation fractions (the share of
activations in the bottom and top 10% of ``span``), as for gradviz's own cells.
:meth:`Trace.inputs` marks the input, for ‖∂L/∂x_t‖ per timestep.

A marked tensor that does not require a gradient (a constant initial state) gives nan at
its step: autograd computes nothing for it. One that requires a gradient but does not
reach the loss gives 0, the gradient it has. Marks under ``torch.no_grad()`` (an
evaluation pass) are ignored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

SATURATION = 0.1            # a gate's bottom and top 10% of its span count as saturated


@dataclass
class TraceCapture:
    """What one traced backward pass gave, in numpy, time order, float64.

    ``norms[name]`` (T,) ‖∂L/∂·_t‖ of each name marked without ``gate`` (nan where a step
    was not marked or autograd computed nothing for it); ``input_norms[name]`` (T,) the
    same for :meth:`Trace.inputs`; ``gates[name]`` a dict of ``mean`` (T, H), the batch
    mean of each unit, ``low`` and ``high`` (T,) the saturated fractions; ``gate_of[name]``
    the state name each gate belongs to; ``spans[name]`` the gate's (low, high) range;
    ``probe[name]`` (T, H) batch row 0 of each state (nan where unmarked)."""
    norms: dict[str, np.ndarray]
    input_norms: dict[str, np.ndarray] = field(default_factory=dict)
    gates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    gate_of: dict[str, str] = field(default_factory=dict)
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    probe: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.norms)

    @property
    def seq_len(self) -> int:
        lengths = [len(v) for v in (*self.norms.values(), *self.input_norms.values())]
        return max(lengths, default=0)


def _check_name(name) -> str:
    if not isinstance(name, str) or not name or len(name) > 64:
        raise ValueError(f"gradviz.trace: a mark's name must be a non-empty string of at most "
                         f"64 characters, got {name!r}")
    return name


def _check_step(t) -> int:
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
        raise ValueError(f"gradviz.trace: t must be the timestep, a whole number >= 0; got {t!r}")
    return int(t)


def _rows_mask(rows: Tensor | None, tensor: Tensor) -> Tensor | None:
    """``rows`` (B,) bool as a float mask broadcasting over ``tensor`` (B, …)."""
    if rows is None:
        return None
    if rows.dim() != 1 or tensor.dim() < 1 or rows.shape[0] != tensor.shape[0]:
        raise ValueError(f"gradviz.trace: rows must be a (B,) mask of the batch rows to count; "
                         f"got {tuple(rows.shape)} for a tensor of shape {tuple(tensor.shape)}")
    return rows.to(tensor.dtype).view(-1, *([1] * (tensor.dim() - 1)))


class Trace:
    """Marks on a recurrence the user writes; see the module docstring.

    ``enabled``: when False, :meth:`mark` and :meth:`inputs` return their input and
    record nothing (a :class:`~gradviz.api.watch.Watch` turns it on for the steps it
    captures only, so the others cost nothing)."""

    def __init__(self):
        self.enabled = True
        self.reset()

    def reset(self) -> None:
        """Forget every mark (:meth:`capture` does this after reading them)."""
        self._norms: dict[str, dict[int, Tensor | float]] = {}
        self._inputs: dict[str, Tensor] = {}
        self._gates: dict[str, dict[int, tuple[Tensor, Tensor, Tensor]]] = {}
        self._gate_of: dict[str, str] = {}
        self._spans: dict[str, tuple[float, float]] = {}
        self._probe: dict[str, dict[int, Tensor]] = {}

    @property
    def names(self) -> tuple[str, ...]:
        """The state names marked so far, in the order first marked."""
        return tuple(self._norms)

    def mark(self, tensor: Tensor, t: int, name: str = "h", *, gate: bool = False,
             span: tuple[float, float] = (0.0, 1.0), of: str | None = None,
             rows: Tensor | None = None) -> Tensor:
        """Record ``tensor`` as ``name`` at timestep ``t`` and return it unchanged.

        Without ``gate``: the norm of the total gradient reaching it, over all its
        entries (or the batch rows where ``rows``, a (B,) bool mask, is True). With
        ``gate=True``: its values, a gate's activation of shape (B, H) or (H,), whose
        range is ``span`` ((0, 1) for a sigmoid, (-1, 1) for tanh); ``of`` names the
        state it belongs to (default: "h" if a state of that name is marked, else the
        first state marked)."""
        if not isinstance(tensor, Tensor):
            raise TypeError(f"gradviz.trace: mark takes a tensor, got {type(tensor).__name__}")
        if not self.enabled or not torch.is_grad_enabled():
            return tensor               # no backward pass will follow (evaluation, say)
        name, t = _check_name(name), _check_step(t)
        mask = _rows_mask(rows, tensor)
        if gate:
            self._mark_gate(tensor, t, name, span, of, mask)
            return tensor
        if name in self._gates:
            raise ValueError(f"gradviz.trace: {name!r} is marked as a gate elsewhere; give the "
                             "state another name")
        steps = self._norms.setdefault(name, {})
        if t in steps:
            raise ValueError(f"gradviz.trace: {name!r} is marked twice at t={t}; mark each "
                             "timestep once per backward pass, one name per layer and "
                             "direction (a forward pass without backward: trace.reset(), "
                             "or run it under torch.no_grad())")
        with torch.no_grad():
            row = tensor.detach()
            row = row[0] if row.dim() > 1 else row
            self._probe.setdefault(name, {})[t] = row.reshape(-1).clone()
        if not tensor.requires_grad:
            steps[t] = math.nan
            return tensor
        steps[t] = 0.0               # until autograd reaches it: 0 if it never does

        def keep(grad: Tensor, steps=steps, t=t, mask=mask) -> None:
            g = grad if mask is None else grad * mask
            steps[t] = torch.linalg.vector_norm(g.detach(), dtype=torch.float64)

        tensor.register_hook(keep)
        return tensor

    def _mark_gate(self, tensor: Tensor, t: int, name: str, span, of, mask) -> None:
        if name in self._norms:
            raise ValueError(f"gradviz.trace: {name!r} is marked as a state elsewhere; give "
                             "the gate another name")
        lo, hi = (float(v) for v in span)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"gradviz.trace: a gate's span must be (low, high) with low < "
                             f"high, got {span!r}")
        if of is not None:
            _check_name(of)
        if self._spans.setdefault(name, (lo, hi)) != (lo, hi):
            raise ValueError(f"gradviz.trace: gate {name!r} was marked with the span "
                             f"{self._spans[name]} before, now {span!r}")
        steps = self._gates.setdefault(name, {})
        if t in steps:
            raise ValueError(f"gradviz.trace: gate {name!r} is marked twice at t={t}")
        if of is not None:
            self._gate_of[name] = of
        with torch.no_grad():
            a = tensor.detach()
            if mask is not None and a.dim() != 2:
                raise ValueError("gradviz.trace: rows= needs a gate of shape (B, H)")
            a = a.reshape(-1, a.shape[-1]) if a.dim() > 1 else a.reshape(1, -1)
            w = None if mask is None else mask.reshape(-1, 1)
            width = lo + SATURATION * (hi - lo), hi - SATURATION * (hi - lo)
            if w is None:
                mean, n = a.mean(0), a.shape[0]
                low, high = (a < width[0]).to(a.dtype).mean(), (a > width[1]).to(a.dtype).mean()
            else:
                n = w.sum().clamp_min(1)
                mean = (a * w).sum(0) / n
                low = ((a < width[0]).to(a.dtype) * w).sum() / (n * a.shape[1])
                high = ((a > width[1]).to(a.dtype) * w).sum() / (n * a.shape[1])
            steps[t] = (mean, low, high)

    def inputs(self, x: Tensor, time_dim: int = 0, name: str = "x") -> Tensor:
        """``x`` with ‖∂L/∂x_t‖ over every dimension but ``time_dim`` recorded as ``name``:
        use what it returns in place of ``x``. If ``x`` requires no gradient, a detached
        copy that does is returned (``x`` itself is left alone)."""
        if not self.enabled:
            return x
        if not isinstance(x, Tensor) or x.dim() < 1 or not -x.dim() <= time_dim < x.dim():
            raise ValueError(f"gradviz.trace: inputs takes a tensor with a time dimension "
                             f"{time_dim}; got {getattr(x, 'shape', type(x))}")
        name = _check_name(name)
        if name in self._inputs or name in self._norms or name in self._gates:
            raise ValueError(f"gradviz.trace: {name!r} is already marked")
        if not torch.is_grad_enabled():
            return x
        if not x.requires_grad:
            x = x.detach().requires_grad_()
        dims = tuple(d for d in range(x.dim()) if d != time_dim % x.dim())
        T = x.shape[time_dim]
        # Reached by nothing, x has a zero gradient; the hook replaces these.
        self._inputs[name] = torch.zeros((T,), dtype=torch.float64, device=x.device)

        def keep(grad: Tensor, name=name, dims=dims) -> None:
            self._inputs[name] = torch.linalg.vector_norm(grad.detach(), dim=dims,
                                                          dtype=torch.float64)

        x.register_hook(keep)
        return x

    def capture(self) -> TraceCapture:
        """The norms, gates and inputs of the last backward pass, in numpy (one host copy),
        and a fresh start for the next forward pass."""
        norms = {name: _series(steps) for name, steps in self._norms.items()}
        inputs = {name: v.to("cpu").numpy().astype(np.float64)
                  for name, v in self._inputs.items()}
        gates, probe = {}, {}
        first = "h" if "h" in self._norms else next(iter(self._norms), None)
        for name, steps in self._gates.items():
            T = max(steps) + 1
            H = next(iter(steps.values()))[0].numel()
            for t, (m, _, _) in steps.items():
                if m.numel() != H:
                    raise ValueError(f"gradviz.trace: gate {name!r} has {m.numel()} units at "
                                     f"t={t} and {H} elsewhere")
            ts = list(steps)
            # One copy to the host per gate: its means, lows and highs side by side.
            both = torch.stack([torch.cat([steps[t][0].reshape(-1).double(),
                                           steps[t][1].reshape(1).double(),
                                           steps[t][2].reshape(1).double()])
                                for t in ts]).to("cpu").numpy()
            mean = np.full((T, H), np.nan)
            low, high = np.full(T, np.nan), np.full(T, np.nan)
            mean[ts], low[ts], high[ts] = both[:, :H], both[:, H], both[:, H + 1]
            gates[name] = {"mean": mean, "low": low, "high": high}
        for name, steps in self._probe.items():
            T = max(steps) + 1
            H = max(v.numel() for v in steps.values())
            rows = np.full((T, H), np.nan)
            ts = list(steps)
            padded = torch.stack([torch.nn.functional.pad(steps[t].double(),
                                                          (0, H - steps[t].numel()),
                                                          value=math.nan) for t in ts])
            rows[ts] = padded.to("cpu").numpy()         # one copy to the host per name
            probe[name] = rows
        gate_of = {g: self._gate_of.get(g, first) for g in self._gates}
        cap = TraceCapture(norms, inputs, gates, gate_of, dict(self._spans), probe)
        self.reset()
        return cap


def _series(steps: dict[int, Tensor | float]) -> np.ndarray:
    """(T,) float64 of the values at each step marked, nan at steps not marked."""
    out = np.full(max(steps) + 1, np.nan)
    tensors = [(t, v) for t, v in steps.items() if isinstance(v, Tensor)]
    for t, v in steps.items():
        if not isinstance(v, Tensor):
            out[t] = v
    if tensors:
        values = torch.stack([v for _, v in tensors]).to("cpu").numpy()
        out[[t for t, _ in tensors]] = values
    return out


def trace() -> Trace:
    """A new :class:`Trace`: see the module docstring."""
    return Trace()


__all__ = ["Trace", "TraceCapture", "trace", "SATURATION"]
