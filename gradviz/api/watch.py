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

from torch import Tensor, nn

from gradviz.api.modules import capture, cell_of
from gradviz.config import RunConfig
from gradviz.engine.runs.history import HISTORY_CAPACITY, History


class Watch:
    """Captures of ``module`` every ``every`` calls of :meth:`backward`.

    ``optimizer``: where the learning rate recorded with each capture is read (its first
    parameter group's ``lr``); without one it is nan. With one, the gradient norm after the
    user's own clipping is read when its step begins (:mod:`gradviz.api.recorder`).
    ``path``: the run folder that leaving a ``with`` block writes. ``model``: the whole
    model whose every parameter's gradient norm is recorded, by its qualified name
    (``lstm.weight_hh_l0``, ``head.weight``). ``tensorboard``: a folder written as it
    trains (:meth:`gradviz.tensorboard.BoardWriter.add_qualified`). Batches of different
    sequence lengths are kept in one history padded to the largest T, NaN where absent.
    """

    def __init__(self, module: nn.RNNBase, every: int = 1, *, optimizer=None,
                 path: str | os.PathLike | None = None, capacity: int = HISTORY_CAPACITY,
                 model: nn.Module | None = None, tensorboard: str | os.PathLike | None = None):
        cell_of(module)                  # refuse what capture cannot follow, at once
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"gradviz.watch: every must be a whole number >= 1, got {every!r}")
        self.module = module
        self.every = every
        self.optimizer = optimizer
        self.path = path
        self.history = History(capacity, pad_time=True)
        from gradviz.api.recorder import Recorder
        self.model = model
        self.recorder = Recorder(self.history, model=model, module=module,
                                 optimizer=optimizer, tensorboard=tensorboard)
        self.steps = 0                   # calls of backward so far
        self.captured = 0
        self.last_loss = math.nan
        self._shape: tuple[int, int] | None = None    # (T, B) of the latest capture

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
        if self.path is not None and len(self.history):
            from gradviz.api.runs import save_run
            save_run(self, self.path)

    def _uncaptured(self, loss: Tensor):
        """The loss of a step not captured: a float, but on a GPU the 0-dim tensor, so
        that such a step does not wait for the device (float() of it when needed)."""
        self.last_loss = loss.detach() if loss.is_cuda else float(loss.detach())
        return self.last_loss

    def close(self) -> None:
        """Record the capture still staged and close the TensorBoard writer."""
        self.recorder.close()

    def backward(self, x: Tensor, loss_fn: Callable[[Tensor], Tensor], h0=None,
                 lengths=None) -> float:
        """``loss_fn(module(x, h0)[0]).backward()``, captured on every ``every``-th call;
        returns the loss. ``lengths`` (or a PackedSequence ``x``): the sequences' lengths,
        as :func:`gradviz.capture` takes them; ``loss_fn`` gets the padded output."""
        step = self.steps
        self.steps += 1
        if step % self.every and (lengths is not None or not isinstance(x, Tensor)):
            from gradviz.api.packed import module_output
            loss = loss_fn(module_output(self.module, x, h0, lengths))
            loss.backward()
            return self._uncaptured(loss)
        if step % self.every:
            loss = loss_fn(self.module(x, h0)[0])
            loss.backward()
            return self._uncaptured(loss)
        if lengths is None and isinstance(x, Tensor):
            cap = capture(self.module, x, loss_fn, h0)
        else:
            from gradviz.api.capturing import capture as capture_lengths
            cap = capture_lengths(self.module, x, loss_fn, h0, lengths=lengths)
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else math.nan
        cap = replace(cap, step=step, lr=float(lr), rho_step=step)
        self.recorder.stage(cap)
        self.captured += 1
        T = cap.seq_len
        B = x.numel() // (T * x.shape[-1]) if isinstance(x, Tensor) else int(x.batch_sizes[0])
        self._shape = (T, B)
        self.last_loss = cap.loss
        return cap.loss

    @property
    def config(self) -> RunConfig:
        """The nearest settings of a gradviz model like the one watched (its cell and
        sizes, the latest capture's sequence length and batch size, within the app's
        limits), to train one with :class:`gradviz.Session`. Not what the run file says:
        the watch has no task, and the file says the run was recorded from Python
        (:meth:`recorded`)."""
        from gradviz.api.python_runs import nearest_config
        return nearest_config(self)

    def recorded(self) -> dict:
        """What the run file says was recorded: from Python, the model's description and
        sizes, the optimiser and learning rate, the user's clipping as measured
        (:mod:`gradviz.api.python_runs`)."""
        from gradviz.api.python_runs import recorded
        return recorded(self, "gradviz.watch")

    def summary(self) -> dict:
        """The run file's summary of a watched run: the steps, captures and last loss."""
        return {"steps_done": self.steps, "captured_steps": self.captured,
                "clipped_steps": self.recorder.clipped_steps,
                "final_loss": float(self.last_loss) if self.steps else None}


def watch(module: nn.Module, every: int = 1, *, optimizer=None,
          path: str | os.PathLike | None = None, capacity: int = HISTORY_CAPACITY,
          model: nn.Module | None = None, tensorboard: str | os.PathLike | None = None,
          trace=None):
    """A :class:`Watch` of ``module`` (an nn.RNN, nn.LSTM or nn.GRU): see its docstring.
    With ``trace`` (a :func:`gradviz.trace`), a :class:`~gradviz.api.tracewatch.TraceWatch`
    of the traced recurrence, ``module`` being the whole model."""
    if trace is not None:
        from gradviz.api.tracewatch import TraceWatch
        return TraceWatch(model if model is not None else module, trace, every,
                          optimizer=optimizer, path=path, capacity=capacity,
                          tensorboard=tensorboard)
    return Watch(module, every, optimizer=optimizer, path=path, capacity=capacity,
                 model=model, tensorboard=tensorboard)


__all__ = ["Watch", "watch"]
