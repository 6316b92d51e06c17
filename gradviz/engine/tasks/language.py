"""The character language models: a text (a user's file, or Python's own source) and the
embedded Reber grammar.

Both are models of a symbol stream, cut into windows of T + 1 characters. In stateful
mode (``RunConfig.stateful``) each batch row is one endless stream that every call to
``batch()`` continues where the previous batch stopped (the last target of one batch is
the first input of the next); the streams start on the first call and start again if the
batch size changes. :mod:`gradviz.engine.tasks.texts` reads the text: the user's file, refused
with a message that names the file and the fix when it cannot be used, or the built-in
corpus.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gradviz.engine.tasks.texts import TaskInputError, load_text, read_text, stdlib_folder

from .base import Batch, ClassificationLoss, Task, new_probe_generator, position_parts


class CharStreamTask(ClassificationLoss, Task):
    """A character language model on windows of a symbol stream.

    Input (T, B, V): one-hot characters c_0..c_{T-1}; target (T, B): c_1..c_T; the loss is
    cross-entropy at every step. Subclasses set ``symbols`` and the bigram weights of the
    stream (any positive multiple of the joint probability of each adjacent pair).

    No-memory predictor: P(next character | current character) of the stream; its loss is
    the conditional entropy H(c_{t+1} | c_t) in nats.
    """

    symbols: list[str]

    @classmethod
    def from_config(cls, config, text=None):
        return cls(config.seq_len, stateful=config.stateful)

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


class TextTask(CharStreamTask):
    """Character language model on a UTF-8 text: the file ``RunConfig.text_file`` names,
    or, when it names none, the source of a few modules of Python's standard library
    (:func:`gradviz.engine.tasks.texts.stdlib_corpus`), whose description is the task's ``note``.

    The vocabulary is the sorted distinct characters of the text. Windows of T + 1
    characters start at a uniformly random position and wrap from the end of the text to
    its start, so every adjacent pair of the text, the seam (last, first) included, is
    equally likely at every step; the baseline is the conditional entropy of that circular
    bigram count, which the no-memory predictor reaches exactly in expectation.

    Stateful mode: each row's next window starts where its last one ended (T characters
    on, wrapping around the text).
    """

    name = "text"

    @classmethod
    def from_config(cls, config, text=None):
        """The text task on ``text``, or, when None, on what
        :func:`gradviz.engine.tasks.texts.read_text` reads for ``config.text_file``."""
        note = None
        if text is None:
            text, note = read_text(config.text_file)
        source = (f"The text file {config.text_file}" if config.text_file
                  else f"Python's standard library source in {stdlib_folder()}")
        return cls(text, config.seq_len, stateful=config.stateful, source=source, note=note)

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
            0, len(self._text), (1,), generator=new_probe_generator()))).x

    @property
    def text(self) -> str:
        """The text the task models."""
        return self.decode(self._text)

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

    def position(self) -> tuple[np.ndarray, ...]:
        return () if self._positions is None else (self._positions.numpy().copy(),)

    def set_position(self, parts) -> None:
        if not len(parts):
            self._positions = None
            return
        (start,) = position_parts(self, parts, (1,), "i")
        if start.size and not (0 <= start.min() and start.max() < len(self._text)):
            raise ValueError("not a stream position of the text task: outside the text")
        self._positions = torch.from_numpy(start.astype(np.int64))


class ReberTask(CharStreamTask):
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

    :meth:`metric`: of the closing T or P whose opening one lies in the same window (so a
    model could know it), the fraction the model predicts as the most likely symbol. A
    model without a memory of the opening can do no better than guess: 0.5.
    """

    name = "reber"
    alphabet = ["B", "T", "P", "S", "X", "V", "E"]
    metric_name = "long-range symbol right"

    def __init__(self, seq_len: int, stateful: bool = False):
        self.seq_len = seq_len
        self.stateful = stateful
        self.loss_positions = slice(None)
        self._set_vocabulary(list(self.alphabet))
        self._emit, self._next = self._grammar()
        self._stationary = self._stationary_distribution()
        self._set_bigrams(*self._exact_bigrams())
        self._walk: tuple[np.ndarray, np.ndarray] | None = None
        probe_generator = new_probe_generator()
        self._probe = self._draw(self._start(1, probe_generator), probe_generator)[0].x

    def long_range_positions(self, batch: Batch) -> torch.Tensor:
        """(T, B) bool: the output steps whose target is a closing T or P whose opening T
        or P is in the window."""
        b, t, p, e = (self._index[s] for s in "BTPE")
        chars = torch.cat([batch.x.argmax(2), batch.target[-1:]])          # (T + 1, B)
        tp = (chars == t) | (chars == p)
        # An opening is the symbol between the outer B and the inner B: the only place
        # where B, T or P, B follow each other. A closing one comes right after an inner E.
        opening = torch.zeros_like(tp)
        opening[1:-1] = (chars[:-2] == b) & tp[1:-1] & (chars[2:] == b)
        closing = torch.zeros_like(tp)
        closing[1:] = (chars[:-1] == e) & tp[1:]
        index = torch.arange(len(chars)).view(-1, 1).expand_as(chars)
        last_opening = torch.cummax(torch.where(opening, index, -1), 0).values
        last_closing = torch.cummax(torch.where(closing, index, -1), 0).values
        previous_closing = torch.cat([torch.full_like(last_closing[:1], -1), last_closing[:-1]])
        return (closing & (last_opening > previous_closing))[1:]

    def metric(self, y: torch.Tensor, batch: Batch) -> float:
        chosen = self.long_range_positions(batch)
        if not chosen.any():
            return float("nan")
        hits = y.argmax(2).cpu() == batch.target
        return float(hits[chosen].double().mean())

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

    def position(self) -> tuple[np.ndarray, ...]:
        return () if self._walk is None else tuple(np.array(p) for p in self._walk)

    def set_position(self, parts) -> None:
        if not len(parts):
            self._walk = None
            return
        state, last = position_parts(self, parts, (1, 1), "i")
        if state.size and not (0 <= min(state.min(), last.min()) and state.max() < len(self._next)
                               and last.max() < len(self.alphabet)):
            raise ValueError("not a stream position of the reber task: unknown states")
        self._walk = (state.astype(np.int64), last.astype(np.int64))


__all__ = ["CharStreamTask", "TextTask", "ReberTask", "load_text"]
