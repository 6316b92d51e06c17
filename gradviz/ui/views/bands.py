"""Curves over training steps drawn as one statistic everywhere: a mean line inside a
min-max band, both over blocks of the same number of steps.

A long run's History merges its old rows into blocks of S steps (their mean, minimum and
maximum kept), while its newest rows are single steps. Drawn as they are, the curve's
noise would narrow suddenly where merged rows end, an event that never happened. So
before drawing, the newer rows are grouped into blocks of the same S steps, aligned as
the History aligns them (counted from the first capture): every point of the line is the
mean of S steps and the band around it spans their smallest to largest value. Before
anything was merged S is 1: the line is the steps themselves and the band has no width.
numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Binned:
    """Per block (B,): ``step`` its last step, ``mean`` the count-weighted mean of the
    finite values, ``low``/``high`` the smallest/largest finite value (NaN where none),
    ``count`` the captures in it. ``size``: S, the captures a full block holds."""
    step: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    count: np.ndarray
    size: int


def block_starts(count: np.ndarray) -> tuple[np.ndarray, int]:
    """The first row of each block of S = max(count) captures (aligned from the first
    capture, as :meth:`History._compact` aligns merged rows), and S."""
    count = np.asarray(count, dtype=np.int64)
    if not len(count):
        return np.zeros(0, np.int64), 1
    size = int(count.max())
    block = (np.cumsum(count) - count) // size
    return np.flatnonzero(np.r_[True, block[1:] != block[:-1]]), size


def binned(history, name: str) -> Binned:
    """``history``'s row array ``name`` (one of ``RANGE_ROWS``: ``loss``, ``grad_norm``,
    ``grad_norm_clipped``) in blocks of equal size (see the module's docstring). A row
    without a kept range (a merged row of an older run file) counts with its mean."""
    values = np.asarray(getattr(history, name), dtype=np.float64)
    low = np.asarray(getattr(history, f"{name}_min", values), dtype=np.float64)
    high = np.asarray(getattr(history, f"{name}_max", values), dtype=np.float64)
    low = np.where(np.isfinite(low), low, values)
    high = np.where(np.isfinite(high), high, values)
    count = np.asarray(history.count, dtype=np.int64)
    steps = np.asarray(history.step, dtype=np.int64)
    first, size = block_starts(count)
    if not len(first):
        empty = np.zeros(0)
        return Binned(empty, empty, empty, empty, np.zeros(0, np.int64), 1)
    if size == 1:
        return Binned(steps.astype(np.float64), values, low, high, count, 1)
    last = np.r_[first[1:] - 1, len(count) - 1]
    finite = np.isfinite(values)
    weight = np.where(finite, count, 0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        total = np.add.reduceat(np.where(finite, values * weight, 0.0), first)
        weights = np.add.reduceat(weight, first)
        mean = np.where(weights > 0, total / np.where(weights > 0, weights, 1.0), np.nan)
    return Binned(steps[last].astype(np.float64), mean, np.fmin.reduceat(low, first),
                  np.fmax.reduceat(high, first), np.add.reduceat(count, first), size)


def binned_column(history, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Any per-row array ``values`` (K,) of ``history`` as the count-weighted mean over the
    same blocks as :func:`binned`: (steps, means), for curves drawn without a band."""
    values = np.asarray(values, dtype=np.float64)
    count = np.asarray(history.count, dtype=np.int64)
    steps = np.asarray(history.step, dtype=np.float64)
    first, size = block_starts(count)
    if size == 1 or not len(first):
        return steps, values
    last = np.r_[first[1:] - 1, len(count) - 1]
    finite = np.isfinite(values)
    weight = np.where(finite, count, 0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        total = np.add.reduceat(np.where(finite, values * weight, 0.0), first)
        weights = np.add.reduceat(weight, first)
        return steps[last], np.where(weights > 0, total / np.where(weights > 0, weights, 1.0),
                                     np.nan)


__all__ = ["Binned", "binned", "binned_column", "block_starts"]
