"""The character language models: a user's text file and the embedded Reber grammar.

Both are models of a symbol stream, cut into windows of T + 1 characters. In stateful
mode (``RunConfig.stateful``) each batch row is one endless stream that every call to
``batch()`` continues where the previous batch stopped (the last target of one batch is
the first input of the next); the streams start on the first call and start again if the
batch size changes. :func:`load_text` reads the user's file, refusing what it cannot use
with a message that names the file and the fix.
"""
from __future__ import annotations

import codecs
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gradviz.engine.files import NotRegularFileError, open_regular

from .base import (Batch, ClassificationLoss, Task, TaskInputError, new_probe_generator,
                   position_parts)


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

    @classmethod
    def from_config(cls, config, text=None):
        """The text task on ``text``, or, when None, on ``config.text_file`` read with
        :func:`load_text`."""
        note = None
        if text is None:
            if not config.text_file:
                raise TaskInputError("The text task needs a UTF-8 text file; choose one.",
                                     field="text_file")
            text, note = load_text(config.text_file)
        source = f"The text file {config.text_file}" if config.text_file else "The text"
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
        probe_generator = new_probe_generator()
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


def _human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


# A byte order mark names the encoding of a text that is not UTF-8 (Notepad's "Unicode" is
# UTF-16 with one). UTF-32's marks begin with UTF-16's, so they are tried first.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32", "UTF-32"), (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
         (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"), (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
         (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"))


def load_text(path: str | Path, max_bytes: int = 5_000_000) -> tuple[str, str | None]:
    """Read a text file for the text task: (text, note).

    The text is UTF-8, or UTF-16 or UTF-32 where the file begins with that encoding's byte
    order mark; the mark is dropped. A file larger than ``max_bytes`` is read only in part
    (its first ``max_bytes``, cut back to a whole character) and ``note`` says so;
    otherwise ``note`` is None. Only a regular file is read (a FIFO would wait forever).
    Raises :class:`TaskInputError` naming the file and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise TaskInputError(f"The text file {path} does not exist; choose an existing UTF-8 "
                             f"text file.", field="text_file")
    if path.is_dir():
        raise TaskInputError(f"{path} is a folder, not a file; choose a UTF-8 text file.",
                             field="text_file")
    try:
        handle, size = open_regular(path)
        with handle:
            data = handle.read(max_bytes)
            partial = bool(handle.read(1))
    except NotRegularFileError as error:
        raise TaskInputError(f"The text file {path} is {error.strerror}; choose a plain UTF-8 "
                             f"text file.", field="text_file") from None
    except OSError as error:
        raise TaskInputError(f"The text file {path} cannot be read ({error.strerror or error}); "
                             f"check that you may read it, or choose another file.",
                             field="text_file") from None
    if not data:
        raise TaskInputError(f"The text file {path} is empty; choose a file with text in it.",
                             field="text_file")
    binary = TaskInputError(f"{path} looks like a binary file (it contains NUL bytes), not "
                            f"text; choose a plain UTF-8 text file.", field="text_file")
    codec, name = next(((c, n) for bom, c, n in _BOMS if data.startswith(bom)), ("utf-8", "UTF-8"))
    if name == "UTF-8" and b"\x00" in data:     # before decoding: binary, not "invalid UTF-8"
        raise binary
    # Incremental: a partial read may stop inside a character, which is then left out.
    decoder = codecs.getincrementaldecoder(codec)()
    try:
        text = decoder.decode(data, final=not partial)
    except UnicodeDecodeError as error:
        raise TaskInputError(f"The text file {path} is not valid {name} (byte {error.start} "
                             f"is {data[error.start]:#04x}); save it as UTF-8 and try again.",
                             field="text_file") from None
    if "\x00" in text:
        raise binary
    if not text:
        raise TaskInputError(f"The text file {path} holds no text; choose a file with text "
                             f"in it.", field="text_file")
    note = None
    if partial:
        used = len(data) - len(decoder.getstate()[0])
        note = f"{path.name}: read the first {_human_size(used)} of {_human_size(size)}"
    return text, note


__all__ = ["CharStreamTask", "TextTask", "ReberTask", "load_text"]
