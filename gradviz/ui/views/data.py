"""Data made safe to plot: points that are not finite dropped, zeros raised to a floor
for log axes, events turned into vertical marks. numpy only."""
from __future__ import annotations

import numpy as np

# Flushed denormals reach the plots as exact zeros; log axes need a positive floor.
LOG_FLOOR = 1e-30


def finite_points(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop points whose x or y is not finite. ``x``, ``y``: (N,) -> two (M,) float64 arrays."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y) & np.isfinite(x)
    return x[keep], y[keep]


def positive_finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop points whose y is not finite, raise the rest to :data:`LOG_FLOOR` for a log axis.

    ``x``, ``y``: (N,) -> two (M,) float64 arrays, M <= N.
    """
    x, y = finite_points(x, y)
    return x, np.maximum(y, LOG_FLOOR)


def event_lines(x: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertical segments at each of ``x`` (E,), spanning the finite positive range of
    ``values`` so that they never stretch a log axis; draw with ``connect="pairs"``.

    Returns two (2E,) float64 arrays.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.1, 10.0)
    if hi <= lo * 1.01:
        lo, hi = lo / 1.5, hi * 1.5
    x = np.repeat(np.asarray(x, dtype=np.float64), 2)
    return x, np.tile([lo, hi], len(x) // 2)
