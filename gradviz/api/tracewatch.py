"""A watch of a traced recurrence: :class:`TraceWatch` records a
:class:`~gradviz.api.trace.Trace` every k steps of the user's training loop::

    tr = gradviz.trace()
    with gradviz.watch(model, trace=tr, every=10, optimizer=opt, path="runs/mine") as w:
        for x, y in batches:
            opt.zero_grad()
            loss = my_loss(model, x, y, tr)        # the forward pass calls tr.mark(...)
            w.backward(loss)                       # instead of loss.backward()
            opt.step()

The trace is enabled only for the steps that are captured (the marks of the others return
at once). Each capture becomes a row of a :class:`~gradviz.engine.runs.history.History`
(:func:`capture_of_trace`): every name marked without ``gate`` is a row of the
gradient views ("layer" k is the k-th name marked, one direction), the gates marked with
``gate=True`` feed the gate views of the state they belong to, ‖∂L/∂x_t‖ of
:meth:`~gradviz.api.trace.Trace.inputs` is ``dx_norm``; the parameters' norms are those of
the model's ``.grad``, with module-qualified names. The marked names are kept in the run's
summary (``marks``).
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import Tensor, nn

from gradviz.api.recorder import Recorder
from gradviz.api.trace import Trace, TraceCapture
from gradviz.engine.runs.capture import Capture
from gradviz.engine.runs.history import HISTORY_CAPACITY, History


def capture_of_trace(tc: TraceCapture, *, step: int = 0, loss: float = math.nan,
                     lr: float = math.nan, dtype=np.float32) -> Capture:
    """The :class:`Capture` of a traced pass (see the module docstring); its parameter
    fields are empty (a watch fills them from the model). ValueError without a state mark."""
    names = tc.names
    if not names:
        raise ValueError("gradviz.trace: nothing was marked (mark a state with tr.mark(h, t) "
                         "in the forward pass, before loss.backward())")
    L, T = len(names), tc.seq_len
    dh = np.full((L, 1, T), np.nan)
    for k, name in enumerate(names):
        dh[k, 0, :len(tc.norms[name])] = tc.norms[name]
    gate_names = tuple(tc.gates)
    fields: dict = {"gates": None, "sat_low": None, "sat_high": None, "probe_h": None}
    if gate_names:
        widths = [v.shape[1] for v in tc.probe.values()] + \
            [g["mean"].shape[1] for g in tc.gates.values()]
        H, G = max(widths), len(gate_names)
        gates = np.full((L, 1, G, T, H), np.nan)
        low, high = np.full((L, 1, G, T), np.nan), np.full((L, 1, G, T), np.nan)
        for j, gname in enumerate(gate_names):
            owner = tc.gate_of.get(gname)
            if owner not in names:
                raise ValueError(f"gradviz.trace: gate {gname!r} belongs to {owner!r}, which "
                                 f"is not a marked state ({', '.join(names)})")
            k, g = names.index(owner), tc.gates[gname]
            n, width = g["mean"].shape
            gates[k, 0, j, :n, :width] = g["mean"]
            low[k, 0, j, :n], high[k, 0, j, :n] = g["low"], g["high"]
        probe = np.full((L, 1, T, H), np.nan)
        for k, name in enumerate(names):
            rows = tc.probe.get(name)
            if rows is not None:
                probe[k, 0, :rows.shape[0], :rows.shape[1]] = rows
        fields = {"gates": gates.astype(dtype), "sat_low": low.astype(dtype),
                  "sat_high": high.astype(dtype), "probe_h": probe.astype(dtype)}
    dx = None
    if tc.input_norms:
        first = next(iter(tc.input_norms.values()))
        dx = np.full(T, np.nan)
        dx[:len(first)] = first
        dx = dx.astype(dtype)
    return Capture(
        step=step, loss=loss, baseline=math.nan, lr=lr, clip="none", clip_threshold=math.nan,
        dh_norm=dh.astype(dtype), dc_norm=None, gate_names=gate_names,
        gate_ranges=tuple(tc.spans[g] for g in gate_names), probe_c=None,
        param_names=(), param_grad_norm=np.zeros(0, dtype), grad_norm=math.nan,
        grad_norm_clipped=math.nan, clipped=False, nonfinite=not math.isfinite(loss),
        rho=np.full((L, 1, 1), np.nan), sigma_max=np.full((L, 1, 1), np.nan),
        rho_names=("W_hh",), rho_step=step, dx_norm=dx, **fields)


class TraceWatch:
    """Captures of a :class:`~gradviz.api.trace.Trace` every ``every`` calls of
    :meth:`backward`; see the module docstring and :func:`gradviz.watch`."""

    def __init__(self, model: nn.Module, trace: Trace, every: int = 1, *, optimizer=None,
                 path: str | os.PathLike | None = None, capacity: int = HISTORY_CAPACITY,
                 tensorboard: str | os.PathLike | None = None):
        if not isinstance(trace, Trace):
            raise TypeError(f"gradviz.watch: trace must be a gradviz.trace(), got "
                            f"{type(trace).__name__}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"gradviz.watch: model must be a torch.nn.Module, got "
                            f"{type(model).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"gradviz.watch: every must be a whole number >= 1, got {every!r}")
        self.module = self.model = model
        self.trace = trace
        self.every = every
        self.optimizer = optimizer
        self.path = path
        self.history = History(capacity, pad_time=True)
        self.recorder = Recorder(self.history, model=model, optimizer=optimizer,
                                 tensorboard=tensorboard)
        self.steps = self.captured = 0
        self.last_loss = math.nan
        self.marks: tuple[str, ...] = ()
        trace.reset()
        trace.enabled = True

    def __enter__(self) -> "TraceWatch":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
        if self.path is not None and len(self.history):
            from gradviz.api.runs import save_run
            save_run(self, self.path)

    def close(self) -> None:
        """Record what is staged and close the TensorBoard writer."""
        self.recorder.close()

    def backward(self, loss: Tensor) -> Tensor:
        """``loss.backward()``, with the trace captured on every ``every``-th call; returns
        ``loss.detach()`` (read as a number only on captured steps, so the others do not
        wait for a GPU)."""
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError("gradviz.watch: backward takes the scalar loss tensor")
        step = self.steps
        self.steps += 1
        captured = self.trace.enabled
        loss.backward()
        if captured:
            self.last_loss = float(loss.detach())
            tc = self.trace.capture()
            dtype = np.float64 if loss.dtype == torch.float64 else np.float32
            cap = capture_of_trace(tc, step=step, loss=self.last_loss, lr=self.recorder.lr,
                                   dtype=dtype)
            self.marks = tc.names
            self.recorder.stage(cap, layer_names=tc.names)
            self.captured += 1
        self.trace.reset()
        self.trace.enabled = self.steps % self.every == 0
        return loss.detach()

    @property
    def config(self):
        """The nearest settings of a gradviz model (see :attr:`Watch.config
        <gradviz.api.watch.Watch.config>`); not what the run file says."""
        from gradviz.api.python_runs import nearest_config
        return nearest_config(self)

    def recorded(self) -> dict:
        """What the run file says was recorded (:meth:`Watch.recorded
        <gradviz.api.watch.Watch.recorded>`), with the marked names."""
        from gradviz.api.python_runs import recorded
        return recorded(self, "gradviz.watch(trace=...)")

    def summary(self) -> dict:
        """The run file's summary of this run: the steps, captures and last loss."""
        return {"steps_done": self.steps, "captured_steps": self.captured,
                "clipped_steps": self.recorder.clipped_steps,
                "final_loss": self.last_loss if self.steps else None}


__all__ = ["TraceWatch", "capture_of_trace"]
