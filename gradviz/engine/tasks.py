"""The training problems, each with a seeded batch generator, its loss and the loss a
model with no memory would reach (its baseline).

Shapes: T = sequence length, B = batch, I = input size, O = output size,
P = number of timesteps at which the loss is taken.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass
class Batch:
    x: torch.Tensor        # (T, B, I) float inputs
    target: torch.Tensor   # (P, B) long class indices, or (P, B, O) float regression targets


class Task(ABC):
    name: str
    input_size: int
    output_size: int
    # Timesteps whose outputs the loss looks at, as a slice or a LongTensor of indices
    # into range(T). The engine applies the readout only there.
    loss_positions: slice | torch.Tensor
    baseline: float          # mean loss of the no-memory predictor that the task describes
    is_language: bool = False  # text-generating tasks (text, reber)

    @abstractmethod
    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A batch drawn with ``generator`` (float32 on the CPU)."""

    @abstractmethod
    def loss(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss over loss positions and batch. ``y`` is (P, B, O)."""

    @abstractmethod
    def probe(self) -> torch.Tensor:
        """A fixed probe input (T, 1, I), the same every call."""
