"""The series task on a user's own data: one column of numbers from a CSV file.

The column is normalised (mean 0, standard deviation 1) and cut into windows as in the
course notes' windowed series (time_step T: each sequence is T consecutive values and the
target is the value after them), so a file of n values gives n − T windows, the one
starting at i being x = v[i : i+T], target v[i+T]. A batch draws its windows' starts
uniformly; in stateful mode each row's next window starts where its last one ended (its
first input is the last target), and a row that reaches the end of the data starts again
at a random window.

The no-memory baseline is the least-squares line a·v[i+T−1] + b through all the windows'
(last input, target) pairs, and its mean squared error over them: exact for this data.

:func:`load_series` reads the file (a regular file only, at most MAX_BYTES of it) and
raises :class:`~gradviz.engine.tasks.base.TaskInputError` naming the file, the column or
the row, and the fix.
"""
from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np
import torch

from gradviz.engine.runs.files import NotRegularFileError, read_head

from .base import Batch, RegressionLoss, Task, TaskInputError

MAX_BYTES = 20_000_000   # of a CSV file that is read; a longer one is read in part
FIELD = "series_file"


def _error(message: str) -> TaskInputError:
    return TaskInputError(message, field=FIELD)


def _read(path: Path) -> tuple[str, str | None]:
    """The file's text (UTF-8) and a note if only its first MAX_BYTES were read."""
    if not path.exists():
        raise _error(f"The series file {path} does not exist; choose an existing CSV file.")
    try:
        data, partial, size = read_head(path, MAX_BYTES)
    except NotRegularFileError as error:
        raise _error(f"The series file {path} is {error.strerror}; choose a CSV file.") from None
    except OSError as error:
        raise _error(f"The series file {path} cannot be read ({error.strerror or error}); check "
                     "that you may read it, or choose another file.") from None
    if partial:                       # keep whole lines only
        data = data[:data.rfind(b"\n") + 1]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _error(f"The series file {path} is not UTF-8 text (byte {error.start}); save it as "
                     "a UTF-8 CSV file.") from None
    note = (f"{path.name}: read the first {len(data) / 1e6:.0f} MB of {size / 1e6:.0f} MB"
            if partial else None)
    return text, note


def _number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _choose(path: Path, header: list[str] | None, rows: list[tuple[int, list[str]]],
            column: str | None) -> tuple[int, str]:
    """(index, name) of the column asked for, or of the first one holding only numbers."""
    width = max(len(cells) for _, cells in rows)
    names = header if header is not None else [str(i) for i in range(width)]

    def name_of(i: int) -> str:
        return names[i] if i < len(names) else str(i)

    listed = ", ".join(_shown(n) for n in names)
    if column is None:
        numeric = [i for i in range(width)
                   if all(i < len(cells) and _number(cells[i]) is not None for _, cells in rows)]
        if len(numeric) == 1:
            return numeric[0], name_of(numeric[0])
        if numeric:                   # which one is the series is the user's to say
            raise _error(f"The series file {path} has {len(numeric)} columns of numbers: "
                         + ", ".join(f"{_shown(name_of(i))} ({i})" for i in numeric)
                         + "; choose one with --series-column (its name or its number).")
        raise _error(f"The series file {path} has no column that holds only numbers (columns: "
                     f"{listed}); choose one with --series-column and fix its rows.")
    if header is not None and column in header:
        return header.index(column), column
    digits = column.strip()
    if re.fullmatch(r"[0-9]+", digits):            # ASCII digits only: not '²' or '①'
        if len(digits) <= 9 and int(digits) < width:
            return int(digits), name_of(int(digits))
        raise _error(f"The series file {path} has {width} column(s), numbered 0 to {width - 1}; "
                     f"there is no column {digits if len(digits) <= 40 else digits[:40] + '…'}.")
    raise _error(f"The series file {path} has no column named {_shown(column)}; its columns: "
                 f"{listed} (or give a column's number, from 0).")


def _shown(text: str, most: int = 40) -> str:
    """``text`` quoted for a message, cut to ``most`` characters."""
    return repr(text if len(text) <= most else text[:most] + "…")


def load_series(path: str | Path, column: str | None = None) -> tuple[np.ndarray, str, str | None]:
    """(values (n,) float64, the column's name, a note or None) of ``column`` (a header's
    name, or a number from 0; None: the first column of numbers) in the CSV file ``path``.
    A first row that is not all numbers is the header."""
    path = Path(path)
    text, note = _read(path)
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel           # one column, or nothing to tell the delimiter by
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        rows = [(reader.line_num, [c.strip() for c in cells]) for cells in reader
                if any(c.strip() for c in cells)]
    except csv.Error as error:        # a field over csv's limit (131,072 characters), a NUL
        raise _error(f"The series file {path}, line {reader.line_num}: not a CSV row gradviz "
                     f"can read ({error}); choose a CSV file of numbers.") from None
    header = None
    if rows and any(_number(c) is None for c in rows[0][1]):
        header = rows.pop(0)[1]
    if not rows:
        raise _error(f"The series file {path} holds no rows of data; choose a CSV file with a "
                     "column of numbers.")
    index, name = _choose(path, header, rows, column)
    values = np.empty(len(rows))
    for j, (line, cells) in enumerate(rows):
        value = _number(cells[index]) if index < len(cells) else None
        if value is None:
            cell = repr(cells[index]) if index < len(cells) else "missing"
            raise _error(f"The series file {path}, line {line}: column {name!r} is {cell}, not a "
                         "finite number; choose a column of numbers (--series-column) or fix "
                         "that line.")
        values[j] = value
    return values, name, note


def _normalised(values: np.ndarray) -> np.ndarray:
    """(values − mean) / standard deviation, also where the values are near float64's
    largest (their sum and squares would overflow) or smallest: then computed on the values
    divided by the largest magnitude."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = np.mean(values), np.std(values)
        if np.isfinite(mean) and np.isfinite(std) and std > 1e-150:
            return (values - mean) / std
    scaled = values / np.max(np.abs(values))
    return (scaled - np.mean(scaled)) / np.std(scaled)


class FileSeriesTask(RegressionLoss, Task):
    """Predict the next value of a column of a CSV file from the T before it (see the
    module docstring). Input (T, B, 1), target (1, B, 1), read out at the last step."""

    name = "series"
    input_size = 1
    output_size = 1

    @classmethod
    def from_config(cls, config, text=None):
        values, column, note = load_series(config.series_file, config.series_column)
        return cls(values, config.seq_len, stateful=config.stateful,
                   source=f"{Path(config.series_file).name}, column {column!r}", note=note)

    def __init__(self, values: np.ndarray, seq_len: int, stateful: bool = False,
                 source: str = "the data", note: str | None = None):
        n = len(values)
        if n < seq_len + 1:
            raise _error(f"{source} has {n} values; with sequence length {seq_len} the series "
                         f"task needs at least {seq_len + 1} (a window of {seq_len} and the value "
                         "after it). Choose a shorter sequence length or a longer series.")
        peak = float(np.max(np.abs(values)))
        std = float(np.std(values / peak)) if peak > 0 else 0.0
        if not std > 0:
            raise _error(f"{source} holds one value only ({values[0]:g}); there is nothing to "
                         "predict. Choose a column whose values change.")
        self.values = torch.from_numpy(_normalised(values))                # (n,) float64
        self.seq_len = seq_len
        self.stateful = stateful
        self.note = note
        self.windows = n - seq_len
        self.loss_positions = slice(seq_len - 1, seq_len)
        last, target = self.values[seq_len - 1:n - 1], self.values[seq_len:]
        slope = float(((last - last.mean()) * (target - target.mean())).mean()) / max(
            float(last.var(unbiased=False)), 1e-300)
        self.fit = (slope, float(target.mean() - slope * last.mean()))
        self.baseline = float(((self.fit[0] * last + self.fit[1] - target) ** 2).mean())
        self._starts: torch.Tensor | None = None    # (B,) next window of each row, stateful

    def _window(self, starts: torch.Tensor) -> Batch:
        index = starts.view(1, -1) + torch.arange(self.seq_len + 1).view(-1, 1)   # (T+1, B)
        values = self.values[index].float()
        return Batch(values[:-1].unsqueeze(2), values[-1:].unsqueeze(2))

    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        fresh = torch.randint(self.windows, (batch_size,), generator=generator)
        starts = self._starts
        if not self.stateful or starts is None or starts.shape[0] != batch_size:
            starts = fresh
        else:
            starts = torch.where(starts < self.windows, starts, fresh)
        if self.stateful:
            self._starts = starts + self.seq_len
        return self._window(starts)

    def probe(self) -> torch.Tensor:
        return self._window(torch.zeros(1, dtype=torch.long)).x

    def trivial_prediction(self, batch: Batch) -> torch.Tensor:
        return self.fit[0] * batch.x[-1:] + self.fit[1]


__all__ = ["FileSeriesTask", "load_series", "MAX_BYTES"]
