"""The training problems, each with a seeded batch generator, its loss and the loss a
model with no memory would reach (its baseline).

Shapes: T = sequence length, B = batch, I = input size, O = output size,
P = number of timesteps at which the loss is taken.

Every task draws all of its randomness from the ``torch.Generator`` given to
:meth:`Task.batch`, so a seed reproduces the data bit for bit. The *no-memory predictor*
of a task is the best a model can do that sees only the current input x_t; its mean loss
is the task's ``baseline``, and :meth:`Task.trivial_prediction` implements it.

Stateful mode (``RunConfig.stateful``): the text, Reber and series tasks then treat each
batch row as one endless stream and every call to ``batch()`` continues it where the
previous batch stopped (the last target of one batch is the first input of the next), so
carrying the recurrent state from batch to batch means something. The streams start on
the first call and start again if the batch size changes. The adding, copy and recall
tasks are made of independent sequences and ignore the setting.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gradviz.config import TASKS, RunConfig

PROBE_SEED = 12345  # the probe sequence comes from its own generator, never the run's


class TaskInputError(ValueError):
    """The task cannot be built from what the user gave it (a text file, a sequence length).

    The message names the file or setting and says how to fix it. ``field`` names the
    RunConfig field to blame, when there is one.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


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
    is_language: bool = False  # text-generating tasks (text, reber)
    stateful: bool = False   # batch() continues each row's stream from the previous batch
    note: str | None = None  # a remark for the user about the data (e.g. a partial read)

    @abstractmethod
    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A batch drawn with ``generator`` (float32 on the CPU)."""

    @abstractmethod
    def loss(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss over loss positions and batch. ``y`` is (P, B, O)."""

    @abstractmethod
    def probe(self) -> torch.Tensor:
        """A fixed probe input (T, 1, I), the same every call."""

    @abstractmethod
    def trivial_prediction(self, batch: Batch) -> torch.Tensor:
        """The no-memory predictor's output y (P, B, O) for ``batch``; its mean loss is
        ``baseline`` (up to sampling error)."""


def _probe_generator() -> torch.Generator:
    return torch.Generator().manual_seed(PROBE_SEED)


def _require_length(name: str, seq_len: int, minimum: int, why: str) -> None:
    if seq_len < minimum:
        raise TaskInputError(
            f"The {name} task needs a sequence length of at least {minimum} ({why}); "
            f"it is {seq_len}. Choose a longer sequence length.", field="seq_len")


class _ClassificationLoss:
    """Cross-entropy over the O classes at every loss position."""

    def loss(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(y.reshape(-1, y.shape[-1]), target.reshape(-1).to(y.device))


class _RegressionLoss:
    """Mean squared error at every loss position."""

    def loss(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(y, target.to(device=y.device, dtype=y.dtype))


# --------------------------------------------------------------------------------------
# Synthetic memory problems
# --------------------------------------------------------------------------------------

class AddingTask(_RegressionLoss, Task):
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
        _require_length(self.name, seq_len, 3, "two marked steps before the last one")
        self.seq_len = seq_len
        self.loss_positions = slice(seq_len - 1, seq_len)
        self.baseline = 1.0 / 6.0
        self._probe = self.batch(1, _probe_generator()).x

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


class CopyTask(_ClassificationLoss, Task):
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

    def __init__(self, seq_len: int):
        _require_length(self.name, seq_len, 3, "a symbol, a delimiter and an answer step")
        self.seq_len = seq_len
        self.string_len = min(10, max(1, seq_len // 3))
        self.input_size = self.alphabet_size + 2
        self.output_size = self.alphabet_size
        self.loss_positions = slice(seq_len - self.string_len, seq_len)
        self.baseline = math.log(self.alphabet_size)
        self._probe = self.batch(1, _probe_generator()).x

    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        T, S, K = self.seq_len, self.string_len, self.alphabet_size
        string = torch.randint(0, K, (S, batch_size), generator=generator)
        sequence = torch.full((T, batch_size), K, dtype=torch.long)
        sequence[:S] = string
        sequence[T - S - 1] = K + 1
        x = F.one_hot(sequence, K + 2).float()
        return Batch(x, string)

    def probe(self) -> torch.Tensor:
        return self._probe.clone()

    def trivial_prediction(self, batch: Batch) -> torch.Tensor:
        return torch.zeros(self.string_len, batch.x.shape[1], self.alphabet_size)


class RecallTask(_ClassificationLoss, Task):
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

    def __init__(self, seq_len: int):
        _require_length(self.name, seq_len, 2, "the class symbol, then at least one distractor")
        self.seq_len = seq_len
        self.loss_positions = slice(seq_len - 1, seq_len)
        self.baseline = math.log(self.classes)
        self._probe = self.batch(1, _probe_generator()).x

    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        C, D = self.classes, self.distractors
        label = torch.randint(0, C, (1, batch_size), generator=generator)
        noise = torch.randint(C, C + D, (self.seq_len - 1, batch_size), generator=generator)
        x = F.one_hot(torch.cat([label, noise]), C + D).float()
        return Batch(x, label)

    def probe(self) -> torch.Tensor:
        return self._probe.clone()

    def trivial_prediction(self, batch: Batch) -> torch.Tensor:
        return torch.zeros(1, batch.x.shape[1], self.classes)


class SeriesTask(_RegressionLoss, Task):
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
    """

    name = "series"
    input_size = 1
    output_size = 1
    amplitude = 0.45
    noise = 0.1
    w_low, w_high = 0.1, 0.8

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
        probe_generator = _probe_generator()
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

    def probe(self) -> torch.Tensor:
        return self._probe.clone()

    def trivial_prediction(self, batch: Batch) -> torch.Tensor:
        return self.coefficient * batch.x[-1:]


# --------------------------------------------------------------------------------------
# Character language models
# --------------------------------------------------------------------------------------

class _CharStreamTask(_ClassificationLoss, Task):
    """A character language model on windows of a symbol stream.

    Input (T, B, V): one-hot characters c_0..c_{T-1}; target (T, B): c_1..c_T; the loss is
    cross-entropy at every step. Subclasses set ``symbols`` and the bigram weights of the
    stream (any positive multiple of the joint probability of each adjacent pair).

    No-memory predictor: P(next character | current character) of the stream; its loss is
    the conditional entropy H(c_{t+1} | c_t) in nats.
    """

    is_language = True
    symbols: list[str]

    def _set_vocabulary(self, symbols: list[str]) -> None:
        self.symbols = symbols
        self.input_size = self.output_size = len(symbols)
        self._index = {s: i for i, s in enumerate(symbols)}

    def _set_bigrams(self, current: torch.Tensor, following: torch.Tensor,
                     weight: torch.Tensor) -> None:
        """Store the bigram distribution sparsely (a large vocabulary would not fit V x V)
        and set ``baseline`` to its conditional entropy."""
        V = len(self.symbols)
        weight = weight.double()
        row_total = torch.zeros(V, dtype=torch.float64).index_add_(0, current, weight)
        conditional = weight / row_total[current]
        self.baseline = float(-(weight * conditional.log()).sum() / weight.sum())
        self._bigram = (current.contiguous(), following.contiguous(), conditional)

    def encode(self, text: str) -> torch.Tensor:
        """Indices (len(text),) of the characters of ``text``."""
        missing = sorted(set(text) - self._index.keys())
        if missing:
            raise TaskInputError(
                f"{missing[0]!r} is not one of the {len(self.symbols)} characters this "
                f"{self.name} model knows; use only characters from its text.")
        return torch.tensor([self._index[c] for c in text], dtype=torch.long)

    def decode(self, indices: torch.Tensor | Sequence[int]) -> str:
        if isinstance(indices, torch.Tensor):
            indices = indices.reshape(-1).tolist()
        return "".join(self.symbols[i] for i in indices)

    def _window_batch(self, chars: torch.Tensor) -> Batch:
        """``chars`` (T + 1, B) long -> one-hot inputs and next-character targets."""
        x = F.one_hot(chars[:-1], len(self.symbols)).float()
        return Batch(x, chars[1:].clone())

    def probe(self) -> torch.Tensor:
        return self._probe.clone()

    def trivial_prediction(self, batch: Batch) -> torch.Tensor:
        """Log-probabilities (T, B, V) of the next character given the current one only."""
        current = batch.x.argmax(dim=2)                                     # (T, B)
        seen, inverse = torch.unique(current, return_inverse=True)
        pair_current, pair_following, conditional = self._bigram
        slot = torch.searchsorted(seen, pair_current).clamp(max=len(seen) - 1)
        used = seen[slot] == pair_current
        rows = torch.zeros(len(seen), len(self.symbols), dtype=torch.float64)
        rows[slot[used], pair_following[used]] = conditional[used]
        return rows.log().float()[inverse]


class TextTask(_CharStreamTask):
    """Character language model on a user's UTF-8 text.

    The vocabulary is the sorted distinct characters of the text. Windows of T + 1
    characters start at a uniformly random position and wrap from the end of the text to
    its start, so every adjacent pair of the text, the seam (last, first) included, is
    equally likely at every step; the baseline is the conditional entropy of that circular
    bigram count, which the no-memory predictor reaches exactly in expectation.

    Stateful mode: each row's next window starts where its last one ended (T characters
    on, wrapping around the text).
    """

    name = "text"

    def __init__(self, text: str, seq_len: int, stateful: bool = False,
                 source: str = "The text", note: str | None = None):
        self.seq_len = seq_len
        self.stateful = stateful
        self.note = note
        self.loss_positions = slice(None)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        distinct = np.unique(codes)
        if len(distinct) < 2:
            raise TaskInputError(
                f"{source} has fewer than 2 distinct characters, so there is nothing to "
                f"predict; choose a text with more variety.", field="text_file")
        if len(codes) < seq_len + 1:
            raise TaskInputError(
                f"{source} has {len(codes)} characters; with sequence length {seq_len} it must "
                f"have at least {seq_len + 1}. Choose a longer text or a shorter sequence "
                f"length.", field="text_file")
        self._set_vocabulary([chr(c) for c in distinct])
        indices = np.searchsorted(distinct, codes).astype(np.int64)
        self._text = torch.from_numpy(indices)
        V = len(distinct)
        pair_codes = indices * V + np.roll(indices, -1)
        if V * V <= 1 << 22:
            # Counting into a dense table is several times faster than sorting the pairs,
            # but a large vocabulary (Chinese, Japanese) would not fit one.
            counts = np.bincount(pair_codes, minlength=V * V)
            pairs = np.flatnonzero(counts)
            counts = counts[pairs]
        else:
            pairs, counts = np.unique(pair_codes, return_counts=True)
        pairs, counts = torch.from_numpy(pairs), torch.from_numpy(counts)
        self._set_bigrams(pairs // V, pairs % V, counts)
        self._positions: torch.Tensor | None = None
        self._probe = self._window_batch(self._window(torch.randint(
            0, len(self._text), (1,), generator=_probe_generator()))).x

    def _window(self, start: torch.Tensor) -> torch.Tensor:
        """Characters (T + 1, B) starting at ``start`` (B,), wrapping around the text."""
        offsets = torch.arange(self.seq_len + 1).view(-1, 1)
        return self._text[(start.view(1, -1) + offsets) % len(self._text)]

    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        start = self._positions
        if start is None or not self.stateful or start.shape[0] != batch_size:
            start = torch.randint(0, len(self._text), (batch_size,), generator=generator)
        if self.stateful:
            self._positions = (start + self.seq_len) % len(self._text)
        return self._window_batch(self._window(start))


class ReberTask(_CharStreamTask):
    """Character language model on a stream of embedded Reber strings
    (Hochreiter & Schmidhuber 1997).

    An embedded Reber string is B, then T or P, then a Reber string (B, a walk through the
    Reber graph, E), then the same T or P again, then E; every branch is taken with
    probability 1/2. The long dependency: the second-last symbol repeats the second one.
    The stream concatenates such strings; it is generated as a Markov chain over the
    grammar's 19 positions, each row starting from the chain's stationary distribution, so
    every window is drawn from the same (stationary) process.

    No-memory predictor: P(next symbol | current symbol) of that stationary stream. The
    joint distribution of adjacent symbols follows exactly from the chain's stationary
    distribution, so the baseline is computed exactly rather than by Monte-Carlo.

    Stateful mode: each row's grammar walk continues from where the last batch left it.
    """

    name = "reber"
    alphabet = ["B", "T", "P", "S", "X", "V", "E"]

    def __init__(self, seq_len: int, stateful: bool = False):
        self.seq_len = seq_len
        self.stateful = stateful
        self.loss_positions = slice(None)
        self._set_vocabulary(list(self.alphabet))
        self._emit, self._next = self._grammar()
        self._stationary = self._stationary_distribution()
        self._set_bigrams(*self._exact_bigrams())
        self._walk: tuple[np.ndarray, np.ndarray] | None = None
        probe_generator = _probe_generator()
        self._probe = self._draw(self._start(1, probe_generator), probe_generator)[0].x

    def _grammar(self) -> tuple[np.ndarray, np.ndarray]:
        """Tables (states, 2) of the symbol emitted and the state entered on each branch;
        a state with one way out lists it twice."""
        code = {s: i for i, s in enumerate(self.alphabet)}
        # Inner Reber graph, positions 0..5; 6 = after its final E; "end" is the state that
        # emits the closing T or P of the embedding.
        inner = {0: [("B", 1)], 1: [("T", 2), ("P", 3)], 2: [("S", 2), ("X", 4)],
                 3: [("T", 3), ("V", 5)], 4: [("X", 3), ("S", 6)], 5: [("P", 4), ("V", 6)],
                 6: [("E", "end")]}
        start, choose, close = 0, 1, 2     # emit B; emit T or P; emit the final E
        edges: dict[int, list[tuple[str, int]]] = {start: [("B", choose)], close: [("E", start)]}
        branch_entry = {}
        for b, letter in enumerate("TP"):
            base = 3 + 8 * b           # this branch's inner positions 0..6, then its "end"
            branch_entry[letter] = base
            for position, ways in inner.items():
                edges[base + position] = [(s, base + (7 if n == "end" else n)) for s, n in ways]
            edges[base + 7] = [(letter, close)]
        edges[choose] = [(letter, branch_entry[letter]) for letter in "TP"]
        states = len(edges)
        emit = np.zeros((states, 2), dtype=np.int64)
        after = np.zeros((states, 2), dtype=np.int64)
        for s, ways in edges.items():
            for k in range(2):
                symbol, target = ways[k % len(ways)]
                emit[s, k], after[s, k] = code[symbol], target
        return emit, after

    def _stationary_distribution(self) -> np.ndarray:
        states = len(self._next)
        transition = np.zeros((states, states))
        for k in range(2):
            np.add.at(transition, (np.arange(states), self._next[:, k]), 0.5)
        # pi (P - I) = 0 with sum(pi) = 1: replace one redundant equation by the sum.
        system = transition.T - np.eye(states)
        system[-1] = 1.0
        rhs = np.zeros(states)
        rhs[-1] = 1.0
        return np.linalg.solve(system, rhs)

    def _exact_bigrams(self):
        V = len(self.alphabet)
        joint = np.zeros((V, V))
        for s, p in enumerate(self._stationary):
            for k in range(2):
                for j in range(2):
                    joint[self._emit[s, k], self._emit[self._next[s, k], j]] += p / 4
        current, following = np.nonzero(joint)
        return (torch.from_numpy(current), torch.from_numpy(following),
                torch.from_numpy(joint[current, following]))

    def _start(self, batch_size: int, generator: torch.Generator):
        """Rows at stationary grammar states, each having emitted one symbol:
        (state (B,), last symbol (B,))."""
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64).numpy()
        state = np.minimum(np.searchsorted(np.cumsum(self._stationary), u, side="right"),
                           len(self._stationary) - 1)
        symbols, state = self._emit_symbols(state, 1, generator)
        return state, symbols[0]

    def _emit_symbols(self, state: np.ndarray, n: int, generator: torch.Generator):
        """Walk every row ``n`` steps: symbols (n, B) and the states reached."""
        branch = (torch.rand(n, len(state), generator=generator) < 0.5).numpy().astype(np.int64)
        symbols = np.empty((n, len(state)), dtype=np.int64)
        for t in range(n):
            symbols[t] = self._emit[state, branch[t]]
            state = self._next[state, branch[t]]
        return symbols, state

    def _draw(self, walk, generator: torch.Generator):
        """The window continuing ``walk`` by T symbols, and the walk after it."""
        state, last = walk
        symbols, state = self._emit_symbols(state, self.seq_len, generator)
        chars = torch.from_numpy(np.concatenate([last[None], symbols]))
        return self._window_batch(chars), (state, symbols[-1])

    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        walk = self._walk
        if walk is None or not self.stateful or len(walk[0]) != batch_size:
            walk = self._start(batch_size, generator)
        batch, after = self._draw(walk, generator)
        if self.stateful:
            self._walk = after
        return batch


# --------------------------------------------------------------------------------------
# Loading a text and building a task from a configuration
# --------------------------------------------------------------------------------------

def _human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def load_text(path: str | Path, max_bytes: int = 5_000_000) -> tuple[str, str | None]:
    """Read a UTF-8 text file for the text task: (text, note).

    A file larger than ``max_bytes`` is read only in part (its first ``max_bytes``, cut back
    to a whole character) and ``note`` says so; otherwise ``note`` is None. A leading byte
    order mark is dropped. Raises :class:`TaskInputError` naming the file and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise TaskInputError(f"The text file {path} does not exist; choose an existing UTF-8 "
                             f"text file.", field="text_file")
    if path.is_dir():
        raise TaskInputError(f"{path} is a folder, not a file; choose a UTF-8 text file.",
                             field="text_file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            data = handle.read(max_bytes)
            partial = bool(handle.read(1))
    except OSError as error:
        raise TaskInputError(f"The text file {path} cannot be read ({error.strerror or error}); "
                             f"check that you may read it, or choose another file.",
                             field="text_file") from None
    if not data:
        raise TaskInputError(f"The text file {path} is empty; choose a file with text in it.",
                             field="text_file")
    if b"\x00" in data[:8192]:
        raise TaskInputError(f"{path} looks like a binary file (it contains NUL bytes), not "
                             f"text; choose a plain UTF-8 text file.", field="text_file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        # A partial read may stop inside a multi-byte character: drop that character.
        if partial and error.end == len(data) and error.reason == "unexpected end of data":
            data = data[:error.start]
            text = data.decode("utf-8")
        else:
            raise TaskInputError(f"The text file {path} is not valid UTF-8 (byte {error.start} "
                                 f"is {data[error.start]:#04x}); save it as UTF-8 and try again.",
                                 field="text_file") from None
    text = text.removeprefix("\ufeff")
    if not text:
        raise TaskInputError(f"The text file {path} holds no text; choose a file with text "
                             f"in it.", field="text_file")
    note = None
    if partial:
        note = f"{path.name}: read the first {_human_size(len(data))} of {_human_size(size)}"
    return text, note


def make_task(config: RunConfig, text: str | None = None) -> Task:
    """The task ``config.task`` for ``config.seq_len`` steps.

    ``text``: the already-loaded contents of ``config.text_file`` for the text task; when
    None, the file is read with :func:`load_text`.
    """
    T = config.seq_len
    if config.task == "adding":
        return AddingTask(T)
    if config.task == "copy":
        return CopyTask(T)
    if config.task == "recall":
        return RecallTask(T)
    if config.task == "series":
        return SeriesTask(T, stateful=config.stateful)
    if config.task == "reber":
        return ReberTask(T, stateful=config.stateful)
    if config.task == "text":
        note = None
        if text is None:
            if not config.text_file:
                raise TaskInputError("The text task needs a UTF-8 text file; choose one.",
                                     field="text_file")
            text, note = load_text(config.text_file)
        source = f"The text file {config.text_file}" if config.text_file else "The text"
        return TextTask(text, T, stateful=config.stateful, source=source, note=note)
    raise TaskInputError(f"Unknown task {config.task!r}; choose one of: {', '.join(TASKS)}.",
                         field="task")


__all__ = ["Batch", "Task", "TaskInputError", "AddingTask", "CopyTask", "RecallTask",
           "SeriesTask", "TextTask", "ReberTask", "load_text", "make_task", "PROBE_SEED"]
