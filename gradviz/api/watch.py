"""Watching a user's own training loop: :class:`Watch` records a capture every k steps.

::

    w = gradviz.watch(model.lstm, every=10, optimizer=opt)
    for x, y in batches:
        opt.zero_grad()
        w.backward(x, lambda out: criterion(model.head(out), y))   # instead of loss.backward()
        opt.step()
    gradviz.save_run(w, "runs/mine")          # the app opens it: gradviz open runs/mine

:meth:`Watch.backward` stands in for ``loss_fn(module(x, h0)[0]).backward()``: on every
``every``-th call it runs :func:`gradviz.capture` (same ``.grad``, with the gradient flow
captured), on the others PyTorch's own module and backward, at PyTorch's speed. The
captures go into a bounded :class:`~gradviz.engine.runs.history.History`; captures of another
shape (another sequence length or batch size) start it afresh, as a run's history does
for a new model. Used as a context manager with ``path``, it saves the run on leaving,
also when the loop is interrupted.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Callable

import torch
from torch import Tensor, nn

from gradviz.api.modules import capture, cell_of
from gradviz.config import LIMITS, ConfigError, RunConfig
from gradviz.engine.runs.history import HISTORY_CAPACITY, History


class Watch:
    """Captures of ``module`` every ``every`` calls of :meth:`backward`.

    ``optimizer``: where the learning rate recorded with each capture is read (its first
    parameter group's ``lr``); without one it is nan. ``path``: the run folder that leaving
    a ``with`` block writes.
    """

    def __init__(self, module: nn.RNNBase, every: int = 1, *, optimizer=None,
                 path: str | os.PathLike | None = None, capacity: int = HISTORY_CAPACITY):
        cell_of(module)                  # refuse what capture cannot follow, at once
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"gradviz.watch: every must be a whole number >= 1, got {every!r}")
        self.module = module
        self.every = every
        self.optimizer = optimizer
        self.path = path
        self.history = History(capacity)
        self.steps = 0                   # calls of backward so far
        self.captured = 0
        self.last_loss = math.nan
        self._shape: tuple[int, int] | None = None    # (T, B) of the latest capture

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *_exc) -> None:
        if self.path is not None and len(self.history):
            from gradviz.api.runs import save_run
            save_run(self, self.path)

    def backward(self, x: Tensor, loss_fn: Callable[[Tensor], Tensor], h0=None) -> float:
        """``loss_fn(module(x, h0)[0]).backward()``, captured on every ``every``-th call;
        returns the loss."""
        step = self.steps
        self.steps += 1
        if step % self.every:
            loss = loss_fn(self.module(x, h0)[0])
            loss.backward()
            self.last_loss = float(loss.detach())
            return self.last_loss
        cap = capture(self.module, x, loss_fn, h0)
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else math.nan
        cap = replace(cap, step=step, lr=float(lr), rho_step=step)
        self.history.append(cap)
        self.captured += 1
        T = cap.seq_len
        self._shape = (T, x.numel() // (T * x.shape[-1]))
        self.last_loss = cap.loss
        return cap.loss

    @property
    def config(self) -> RunConfig:
        """The settings of a gradviz run with the module's cell and sizes and the latest
        capture's sequence length and batch size: what the app shows for the run (Start
        there trains a fresh gradviz model with them). ValueError if the module is beyond
        what the app's settings allow."""
        m = self.module
        T, B = self._shape or (RunConfig().seq_len, RunConfig().batch_size)
        weight = m.weight_ih_l0
        values = dict(cell=cell_of(m), hidden=m.hidden_size, layers=m.num_layers,
                      bidirectional=m.bidirectional, seq_len=T, batch_size=B,
                      dtype="float64" if weight.dtype == torch.float64 else "float32",
                      device="cuda" if weight.is_cuda else "cpu",
                      steps=max(1, self.steps), capture_every=self.every)
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else None
        if lr is not None and LIMITS["lr"][0] <= lr <= LIMITS["lr"][1]:
            values["lr"] = float(lr)
        try:
            return RunConfig(**values).validate()
        except ConfigError as exc:
            raise ValueError(f"gradviz.watch: a run file describes the model in the app's "
                             f"settings, and this one is beyond them ({exc})") from None

    def summary(self) -> dict:
        """What the run file's summary says of a watched run."""
        return {"source": "gradviz.watch", "module": repr(self.module),
                "steps_done": self.steps, "captured_steps": self.captured,
                "final_loss": self.last_loss if self.steps else None}


def watch(module: nn.RNNBase, every: int = 1, *, optimizer=None,
          path: str | os.PathLike | None = None, capacity: int = HISTORY_CAPACITY) -> Watch:
    """A :class:`Watch` of ``module``: see its docstring."""
    return Watch(module, every, optimizer=optimizer, path=path, capacity=capacity)


__all__ = ["Watch", "watch"]
