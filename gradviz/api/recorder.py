"""What a watch records beside each capture: the gradient norm of every parameter of the
user's whole model (module-qualified names), the norm after the user's own clipping (read
in an optimiser step pre-hook, after the user clipped and before the step), the learning
rate, and a live TensorBoard writer. Used by :class:`~gradviz.api.watch.Watch` and
:class:`~gradviz.api.tracewatch.TraceWatch`.

A capture is *staged* by the watch after its backward pass; it is completed and appended
to the history when the optimiser's step begins (or by the next backward, or on
:meth:`Recorder.close`, for a loop that has no optimiser or skips a step).
"""
from __future__ import annotations

import math
import os
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from gradviz.engine.runs.capture import Capture
from gradviz.engine.runs.history import History

# A post-clip norm this much below the pre-clip one means the user's clipping acted.
CLIP_TOLERANCE = 1e-6


def qualified_names(model: nn.Module | None, module: nn.Module | None) -> str:
    """The prefix ("lstm.") of ``module`` inside ``model``, "" if it is the model or absent."""
    if model is None or module is None or model is module:
        return ""
    for name, sub in model.named_modules():
        if sub is module:
            return name + "."
    return ""


def grad_norms(params: list[tuple[str, nn.Parameter]]) -> tuple[np.ndarray, float]:
    """(P,) float64 norm of each parameter's ``.grad`` (0 where None), and their total;
    computed in float64 so that small norms do not underflow."""
    if not params:
        return np.zeros(0), 0.0
    with torch.no_grad():
        norms = torch.stack([
            torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float64) if p.grad is not None
            else torch.zeros((), dtype=torch.float64, device=p.device) for _, p in params])
        out = norms.to("cpu").numpy()
    return out, float(np.sqrt(np.sum(out * out)))


def describe_optimizer(optimizer) -> dict:
    if optimizer is None:
        return {}
    group = optimizer.param_groups[0]
    return {"optimizer": type(optimizer).__name__,
            "lr": float(group["lr"]) if "lr" in group else None}


def describe_module(model: nn.Module) -> dict:
    params = list(model.parameters())
    return {"model": type(model).__name__, "model_repr": repr(model)[:4000],
            "parameters": int(sum(p.numel() for p in params)),
            "parameter_tensors": len(params),
            "dtype": str(params[0].dtype).replace("torch.", "") if params else None,
            "device": str(params[0].device) if params else None}


class Recorder:
    """See the module docstring. ``model``: whose parameters' ``.grad`` norms replace the
    capture's (None: the capture's own, of this loss, are kept); ``module``: the recurrent
    module the captures follow (inside ``model``, or alone). The clipping is read on
    ``model``'s parameters, else ``module``'s."""

    def __init__(self, history: History, *, model: nn.Module | None = None,
                 module: nn.Module | None = None, optimizer=None,
                 tensorboard: str | os.PathLike | None = None):
        self.history = history
        self.model = model
        self.optimizer = optimizer
        self.prefix = qualified_names(model, module)
        whole = model if model is not None else module
        self.params = list(whole.named_parameters()) if whole is not None else None
        self._pre = math.nan
        self._plain = model is None or model is module     # names as the captures give them
        self.clipped_steps = 0
        self._pending: Capture | None = None
        self._layer_names: tuple[str, ...] = ()
        self._board = None
        self._hook = None
        if tensorboard is not None:
            from gradviz.tensorboard import BoardWriter
            self._board = BoardWriter(tensorboard)
        if optimizer is not None and hasattr(optimizer, "register_step_pre_hook"):
            self._hook = optimizer.register_step_pre_hook(self._before_step)
        # Whether the norm after the user's clipping is read (when the optimiser steps).
        self.reads_clipping = self._hook is not None and self.params is not None

    @property
    def lr(self) -> float:
        if self.optimizer is None:
            return math.nan
        return float(self.optimizer.param_groups[0].get("lr", math.nan))

    def stage(self, cap: Capture, layer_names: tuple[str, ...] = ()) -> None:
        """Take ``cap`` (the capture of this step's backward pass): with the whole model's
        norms if a model was given, completed when the optimiser's step begins.
        ``layer_names``: what the history calls its layer rows (a trace's marks)."""
        self.flush()
        self._layer_names = tuple(layer_names)
        if self.params is not None:
            norms, total = grad_norms(self.params)
            self._pre = total
        if self.model is not None:
            cap = replace(cap, param_names=tuple(self._names()), param_owners=self._owners(cap),
                          param_grad_norm=norms.astype(cap.param_grad_norm.dtype),
                          grad_norm=total, grad_norm_clipped=total,
                          nonfinite=cap.nonfinite or not math.isfinite(total))
        self._pending = cap
        if self._hook is None:
            self.flush()

    def _names(self) -> list[str]:
        return [n for n, _ in self.params]

    def _owners(self, cap: Capture) -> tuple:
        own = dict(zip(cap.param_names, cap.param_owners))
        out = []
        for name in self._names():
            inside = name.startswith(self.prefix) if self.prefix else self._plain
            out.append(own.get(name[len(self.prefix):]) if inside else None)
        return tuple(out)

    def _before_step(self, optimizer, *_args) -> None:
        cap = self._pending
        if cap is None:
            return
        if self.params is None:
            self.flush()
            return
        _, total = grad_norms(self.params)
        clipped = total < self._pre * (1 - CLIP_TOLERANCE)
        self.clipped_steps += bool(clipped)
        self._pending = replace(cap, grad_norm_clipped=total if clipped else cap.grad_norm,
                                clipped=bool(clipped),
                                clip="user" if clipped else cap.clip)
        self.flush()

    def flush(self) -> None:
        """Append the staged capture to the history (and TensorBoard)."""
        cap, self._pending = self._pending, None
        if cap is None:
            return
        self.history.append(cap)
        self.history.layer_names = self._layer_names   # after append: a new model clears it
        if self._board is not None:
            self._board.add_capture(cap)
            self._board.add_qualified(cap)

    def close(self) -> None:
        self.flush()
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._board is not None:
            self._board.close()
            self._board = None


__all__ = ["Recorder", "grad_norms", "qualified_names", "describe_optimizer",
           "describe_module", "CLIP_TOLERANCE"]
