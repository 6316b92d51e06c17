"""What every training problem is: a seeded batch generator, its loss and the loss a model
with no memory would reach (its baseline).

Shapes: T = sequence length, B = batch, I = input size, O = output size,
P = number of timesteps at which the loss is taken.

Every task draws all of its randomness from the ``torch.Generator`` given to
:meth:`Task.batch`, so a seed reproduces the data bit for bit. The *no-memory predictor*
of a task is the best a model can do that sees only the current input x_t; its mean loss
is the task's ``baseline``, and :meth:`Task.trivial_prediction` implements it.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gradviz.config import RunConfig
from gradviz.registry import task_spec
# Defined with the texts (torch-free, for the window), raised by every task.
from gradviz.engine.tasks.texts import TaskInputError

PROBE_SEED = 12345  # the probe sequence comes from its own generator, never the run's


@dataclass
class Batch:
    x: torch.Tensor        # (T, B, I) float inputs
    target: torch.Tensor   # (P, B) long class indices, or (P, B, O) float regression targets


class Task(ABC):
    name: str
    seq_len: int
    input_size: int
    output_size: int
    # Timesteps whose outputs the loss looks at, as a slice or a LongTensor of indices
    # into range(T). The engine applies the readout only there.
    loss_positions: slice | torch.Tensor
    baseline: float          # mean loss of the no-memory predictor that the task describes
    stateful: bool = False   # batch() continues each row's stream from the previous batch
    note: str | None = None  # a remark for the user about the data (e.g. a partial read)
    metric_name: str = ""    # what :meth:`metric` measures; "" for a task without one

    @classmethod
    def from_config(cls, config: RunConfig, text: str | None = None) -> "Task":
        """The task for ``config``: here, ``config.seq_len`` steps of independent sequences
        (``stateful`` does not apply). ``text``: the contents of ``config.text_file``, for
        the task that reads one."""
        return cls(config.seq_len)

    @property
    def is_language(self) -> bool:
        """A character model that can sample text (its registry entry says so)."""
        return task_spec(self.name).is_language

    @abstractmethod
    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A batch drawn with ``generator`` (float32 on the CPU)."""

    @abstractmethod
    def loss(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss over loss positions and batch. ``y`` is (P, B, O)."""

    def metric(self, y: torch.Tensor, batch: Batch) -> float:
        """The task's own measure of success on ``batch``, between 0 and 1 (``y`` (P, B, O)
        as for :meth:`loss`), named by ``metric_name``; nan for a task without one."""
        return math.nan

    @abstractmethod
    def probe(self) -> torch.Tensor:
        """A fixed probe input (T, 1, I), the same every call."""

    @abstractmethod
    def trivial_prediction(self, batch: Batch) -> torch.Tensor:
        """The no-memory predictor's output y (P, B, O) for ``batch``; its mean loss is
        ``baseline`` (up to sampling error)."""

    def position(self) -> tuple[np.ndarray, ...]:
        """Where a stateful task's rows are in their streams, as copies (empty before the
        first batch, and for tasks without streams): with the batch generator's state, what
        a resumed run needs to see the same data. :meth:`set_position` puts it back."""
        return ()

    def set_position(self, parts: Sequence[np.ndarray]) -> None:
        """Put back what :meth:`position` returned; ValueError if it is not this task's."""
        if len(parts):
            raise ValueError(f"the {self.name} task keeps no stream position")


def new_probe_generator() -> torch.Generator:
    """A generator of the probe's own, seeded with PROBE_SEED: the same probe every time."""
    return torch.Generator().manual_seed(PROBE_SEED)


def require_length(name: str, seq_len: int, minimum: int, why: str) -> None:
    if seq_len < minimum:
        raise TaskInputError(
            f"The {name} task needs a sequence length of at least {minimum} ({why}); "
            f"it is {seq_len}. Choose a longer sequence length.", field="seq_len")


def position_parts(task: Task, parts: Sequence[np.ndarray], ndims: tuple[int, ...],
                   kind: str) -> list[np.ndarray]:
    """``parts`` as arrays, if there is one per entry of ``ndims`` with that many dimensions,
    all of numpy kind ``kind`` ("f" or "i") and sharing their last (the batch) dimension;
    ValueError otherwise."""
    arrays = [np.asarray(p) for p in parts]
    if (len(arrays) != len(ndims) or any(a.ndim != n for a, n in zip(arrays, ndims))
            or any(a.dtype.kind not in (kind if kind == "f" else "iu") for a in arrays)
            or len({a.shape[-1] for a in arrays}) != 1):
        raise ValueError(f"not a stream position of the {task.name} task: "
                         f"{[(a.dtype.str, a.shape) for a in arrays]}")
    return arrays


class ClassificationLoss:
    """Cross-entropy over the O classes at every loss position."""

    def loss(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(y.reshape(-1, y.shape[-1]), target.reshape(-1).to(y.device))


def accuracy(y: torch.Tensor, target: torch.Tensor) -> float:
    """The fraction of loss positions where the most likely class of ``y`` (P, B, O) is
    the ``target`` (P, B)."""
    return float((y.argmax(-1) == target.to(y.device)).double().mean())


class RegressionLoss:
    """Mean squared error at every loss position."""

    def loss(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(y, target.to(device=y.device, dtype=y.dtype))


__all__ = ["PROBE_SEED", "TaskInputError", "Batch", "Task", "new_probe_generator",
           "position_parts", "require_length", "ClassificationLoss", "RegressionLoss",
           "accuracy"]
