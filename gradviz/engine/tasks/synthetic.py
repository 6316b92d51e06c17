"""The synthetic memory problems: adding (two versions), copy, delayed recall and a
windowed time series.

Adding, copy and recall are made of independent sequences. The series task, in stateful
mode (``RunConfig.stateful``), treats each batch row as one endless signal that every
call to ``batch()`` continues where the previous batch stopped (the last target of one
batch is the first input of the next), so carrying the recurrent state from batch to
batch means something; the signals start on the first call and start again if the batch
size changes.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .base import (Batch, ClassificationLoss, RegressionLoss, Task, accuracy,
                   new_probe_generator, position_parts, require_length)
from .series_file import FileSeriesTask


class AddingTask(RegressionLoss, Task):
    """The adding problem (Hochreiter & Schmidhuber 1997).

    Input (T, B, 2): channel 0 a value drawn uniformly from [0, 1], channel 1 a marker that
    is 1 at exactly two steps. Both marked steps lie before the last step, the first in the
    first half of steps 0..T-2 and the second in the second half, so the last input says
    nothing about the target. Target (1, B, 1): the sum of the two marked values, read out
    at the last step (MSE).

    No-memory predictor: the mean of the target, 1.0; its loss is Var(target) = 2/12 = 1/6.
    """

    name = "adding"
    input_size = 2
    output_size = 1

    def __init__(self, seq_len: int):
        require_length(self.name, seq_len, 3, "two marked steps before the last one")
        self.seq_len = seq_len
        self.loss_positions = slice(seq_len - 1, seq_len)
        self.baseline = 1.0 / 6.0
        self._probe = self.batch(1, new_probe_generator()).x

    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        T, B = self.seq_len, batch_size
        values = torch.rand(T, B, generator=generator)
        half = (T - 1) // 2
        first = torch.randint(0, half, (B,), generator=generator)
        second = torch.randint(half, T - 1, (B,), generator=generator)
        markers = torch.zeros(T, B)
        columns = torch.arange(B)
        markers[first, columns] = 1.0
        markers[second, columns] = 1.0
        target = values[first, columns] + values[second, columns]
        return Batch(torch.stack([values, markers], dim=2), target.view(1, B, 1))

    def probe(self) -> torch.Tensor:
        return self._probe.clone()

    def trivial_prediction(self, batch: Batch) -> torch.Tensor:
        return torch.ones(1, batch.x.shape[1], 1)


class Adding1997Task(RegressionLoss, Task):
    """The adding problem as Hochreiter & Schmidhuber set it (1997, experiment 4).

    Input (T, B, 2): channel 0 a value drawn uniformly from [-1, 1]; channel 1 a marker,
    1 at the two marked steps, -1 at the first and the last step where those are not
    marked, 0 elsewhere. The first marked step is one of the first ten (of the first
    n = max(2, T // 2 - 1) when n < 10), the second one of the other steps among the first
    n (so both come before the last step). Where step 0 is marked its value counts as 0
    (the paper: "in the rare case where the first pair of the sequence gets marked, we set
    X1 to zero"; here whichever draw marked it, so that the input determines the target).
    Target (1, B, 1): 0.5 + (X1 + X2) / 4, the sum scaled into [0, 1], read out at the
    last step (MSE). A sequence is *solved* when the absolute error there is below 0.04;
    :meth:`metric` is the fraction solved. Unlike the paper's, all sequences of a batch
    have the same length T (the paper drew each length from [T, T + T / 10]).

    No-memory predictor: the mean of the target, 0.5; its loss is Var(target) =
    (Var X1 + Var X2) / 16, where a value is uniform on [-1, 1] (variance 1/3) unless it
    is step 0's: Var X1 = (1 - p1) / 3 and Var X2 = (1 - p2) / 3 with p1 = 1/m the chance
    that the first draw is step 0 (m = min(10, n)) and p2 = (1 - p1) / (n - 1) that the
    second is.
    """

    name = "adding-1997"
    input_size = 2
    output_size = 1
    tolerance = 0.04
    metric_name = "fraction solved"

    def __init__(self, seq_len: int):
        require_length(self.name, seq_len, 3, "two marked steps before the last one")
        self.seq_len = seq_len
        self.loss_positions = slice(seq_len - 1, seq_len)
        self.marked_range = max(2, seq_len // 2 - 1)
        self.first_range = min(10, self.marked_range)
        p1 = 1 / self.first_range
        p2 = (1 - p1) / (self.marked_range - 1)
        self.baseline = ((1 - p1) + (1 - p2)) / 3 / 16
        self._probe = self.batch(1, new_probe_generator()).x

    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        T, B = self.seq_len, batch_size
        values = 2 * torch.rand(T, B, generator=generator) - 1
        first = torch.randint(0, self.first_range, (B,), generator=generator)
        other = torch.randint(0, self.marked_range - 1, (B,), generator=generator)
        second = other + (other >= first).long()          # any of the first n but ``first``
        markers = torch.zeros(T, B)
        markers[0] = markers[-1] = -1.0
        columns = torch.arange(B)
        markers[first, columns] = 1.0
        markers[second, columns] = 1.0
        counted = values.clone()
        counted[0] = 0.0                                   # step 0's value counts as 0
        target = 0.5 + (counted[first, columns] + counted[second, columns]) / 4
        return Batch(torch.stack([values, markers], dim=2), target.view(1, B, 1))

    def metric(self, y: torch.Tensor, batch: Batch) -> float:
        error = (y - batch.target.to(device=y.device, dtype=y.dtype)).abs()
        return float((error < self.tolerance).double().mean())

    def probe(self) -> torch.Tensor:
        return self._probe.clone()

    def trivial_prediction(self, batch: Batch) -> torch.Tensor:
        return torch.full((1, batch.x.shape[1], 1), 0.5)


class CopyTask(ClassificationLoss, Task):
    """The copy (memory) task.

    With K = 8 symbols and S = min(10, max(1, T // 3)) symbols to remember, a sequence of
    length T is: S random symbols, T - 2S - 1 blanks, a delimiter, then S blanks during
    which the model must reproduce the S symbols in order. Input (T, B, K + 2): one-hot
    over the K symbols, blank (index K) and delimiter (index K + 1). Target (S, B): the
    symbols, read out at the last S steps (cross-entropy). S shrinks with T so that any
    T >= 3 holds one symbol string, its delimiter and its answer.

    No-memory predictor: every output step sees a blank, so it can only guess uniformly;
    its loss is log K.
    """

    name = "copy"
    alphabet_size = 8
    metric_name = "symbols copied"

    def __init__(self, seq_len: int):
        require_length(self.name, seq_len, 3, "a symbol, a delimiter and an answer step")
        self.seq_len = seq_len
        self.string_len = min(10, max(1, seq_len // 3))
        self.input_size = self.alphabet_size + 2
        self.output_size = self.alphabet_size
        self.loss_positions = slice(seq_len - self.string_len, seq_len)
        self.baseline = math.log(self.alphabet_size)
        self._probe = self.batch(1, new_probe_generator()).x

    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        T, S, K = self.seq_len, self.string_len, self.alphabet_size
        string = torch.randint(0, K, (S, batch_size), generator=generator)
        sequence = torch.full((T, batch_size), K, dtype=torch.long)
        sequence[:S] = string
        sequence[T - S - 1] = K + 1
        x = F.one_hot(sequence, K + 2).float()
        return Batch(x, string)

    def metric(self, y: torch.Tensor, batch: Batch) -> float:
        return accuracy(y, batch.target)

    def probe(self) -> torch.Tensor:
        return self._probe.clone()

    def trivial_prediction(self, batch: Batch) -> torch.Tensor:
        return torch.zeros(self.string_len, batch.x.shape[1], self.alphabet_size)


class RecallTask(ClassificationLoss, Task):
    """Delayed recall: report the class of the first symbol after T - 1 distractors.

    Input (T, B, C + D), one-hot: step 0 one of C = 4 class symbols (indices 0..C-1), steps
    1..T-1 distractors drawn from D = 4 other symbols (indices C..C+D-1). Target (1, B): the
    class, read out at the last step (cross-entropy).

    No-memory predictor: the last input is a distractor, independent of the class, so the
    best guess is uniform; its loss is log C.
    """

    name = "recall"
    classes = 4
    distractors = 4
    input_size = classes + distractors
    output_size = classes
    metric_name = "classes recalled"

    def __init__(self, seq_len: int):
        require_length(self.name, seq_len, 2, "the class symbol, then at least one distractor")
        self.seq_len = seq_len
        self.loss_positions = slice(seq_len - 1, seq_len)
        self.baseline = math.log(self.classes)
        self._probe = self.batch(1, new_probe_generator()).x

    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        C, D = self.classes, self.distractors
        label = torch.randint(0, C, (1, batch_size), generator=generator)
        noise = torch.randint(C, C + D, (self.seq_len - 1, batch_size), generator=generator)
        x = F.one_hot(torch.cat([label, noise]), C + D).float()
        return Batch(x, label)

    def metric(self, y: torch.Tensor, batch: Batch) -> float:
        return accuracy(y, batch.target)

    def probe(self) -> torch.Tensor:
        return self._probe.clone()

    def trivial_prediction(self, batch: Batch) -> torch.Tensor:
        return torch.zeros(1, batch.x.shape[1], self.classes)


class SeriesTask(RegressionLoss, Task):
    """Windowed time series: predict the next value of a noisy signal from the last T.

    Each batch row is x_t = A sin(w1 t + p1) + A sin(w2 t + p2) + sigma e_t with A = 0.45,
    frequencies w uniform in [0.1, 0.8] rad/step, phases p uniform in [0, 2 pi) drawn per
    row, and e_t standard normal noise (sigma = 0.1), so values stay roughly in [-1, 1].
    Input (T, B, 1): x_0..x_{T-1}; target (1, B, 1): x_T, read out at the last step (MSE).

    No-memory predictor: the best linear predictor of x_T from x_{T-1} alone, a x_{T-1} + b.
    With uniform phases the signal is stationary with mean 0, so b = 0, a = c1 / c0 and its
    MSE is c0 - c1^2 / c0, where c0 = Var x_t = A^2 + sigma^2 and
    c1 = Cov(x_t, x_{t+1}) = A^2 E[cos w] (two sines, each contributing A^2 / 2).
    Both are exact here, so no Monte-Carlo fit is needed.

    Stateful mode: each row keeps its frequencies and phases and the next batch continues
    the same signal (its first input is this batch's target).

    With ``series_file`` set, the task is the same problem on a column of the user's CSV
    file instead (:class:`~gradviz.engine.tasks.series_file.FileSeriesTask`).
    """

    name = "series"
    input_size = 1
    output_size = 1
    amplitude = 0.45
    noise = 0.1
    w_low, w_high = 0.1, 0.8

    @classmethod
    def from_config(cls, config, text=None):
        if config.series_file:
            return FileSeriesTask.from_config(config)
        return cls(config.seq_len, stateful=config.stateful)

    def __init__(self, seq_len: int, stateful: bool = False):
        self.seq_len = seq_len
        self.stateful = stateful
        self.loss_positions = slice(seq_len - 1, seq_len)
        mean_cos = (math.sin(self.w_high) - math.sin(self.w_low)) / (self.w_high - self.w_low)
        c0 = self.amplitude ** 2 + self.noise ** 2
        c1 = self.amplitude ** 2 * mean_cos
        self.coefficient = c1 / c0
        self.baseline = c0 - c1 * c1 / c0
        self._stream: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        probe_generator = new_probe_generator()
        self._probe = self._draw(self._start(1, probe_generator), probe_generator)[0].x

    def _start(self, batch_size: int, generator: torch.Generator):
        """A fresh signal per row: (frequencies (2, B), phases (2, B), x at phase time (B,))."""
        w = self.w_low + (self.w_high - self.w_low) * torch.rand(
            2, batch_size, generator=generator, dtype=torch.float64)
        phase = 2 * math.pi * torch.rand(2, batch_size, generator=generator, dtype=torch.float64)
        first = self.amplitude * torch.sin(phase).sum(0) \
            + self.noise * torch.randn(batch_size, generator=generator, dtype=torch.float64)
        return w, phase, first

    def _draw(self, stream, generator: torch.Generator):
        """The window that continues ``stream`` by T values, and the stream after it."""
        w, phase, first = stream
        steps = torch.arange(1, self.seq_len + 1, dtype=torch.float64).view(-1, 1, 1)
        clean = self.amplitude * torch.sin(w * steps + phase).sum(1)          # (T, B)
        noisy = clean + self.noise * torch.randn(
            clean.shape, generator=generator, dtype=torch.float64)
        values = torch.cat([first.view(1, -1), noisy]).float()             # (T + 1, B)
        # Keep the phase small so float64 keeps its precision on an endless stream.
        after = (w, torch.remainder(phase + w * self.seq_len, 2 * math.pi), noisy[-1])
        return Batch(values[:-1].unsqueeze(2), values[-1:].unsqueeze(2)), after

    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        stream = self._stream
        if stream is None or not self.stateful or stream[2].shape[0] != batch_size:
            stream = self._start(batch_size, generator)
        batch, after = self._draw(stream, generator)
        if self.stateful:
            self._stream = after
        return batch

    def position(self) -> tuple[np.ndarray, ...]:
        return () if self._stream is None else tuple(p.numpy().copy() for p in self._stream)

    def set_position(self, parts) -> None:
        if not len(parts):
            self._stream = None
            return
        w, phase, first = position_parts(self, parts, (2, 2, 1), "f")
        if w.shape[0] != 2 or phase.shape[0] != 2 or not all(np.isfinite(p).all()
                                                             for p in (w, phase, first)):
            raise ValueError("not a stream position of the series task")
        self._stream = tuple(torch.from_numpy(p.astype(np.float64)) for p in (w, phase, first))

    def probe(self) -> torch.Tensor:
        return self._probe.clone()

    def trivial_prediction(self, batch: Batch) -> torch.Tensor:
        return self.coefficient * batch.x[-1:]


__all__ = ["AddingTask", "Adding1997Task", "CopyTask", "RecallTask", "SeriesTask"]
