"""The range of each History row: the smallest and largest finite value of the steps
merged into it, for the scalars whose curves the views draw as a mean inside a min-max
band (gradviz/ui/views/bands.py). A row of one step is its own range; merging takes the
smallest of the smallests and the largest of the largests. NaN where no value was finite.
Optional in run files: those from before they were kept lack them (see :func:`restore`)."""
from __future__ import annotations

import numpy as np

RANGE_ROWS = ("loss", "grad_norm", "grad_norm_clipped")
RANGE_ARRAYS = tuple(f"{name}_{end}" for name in RANGE_ROWS for end in ("min", "max"))


def start(a: dict[str, np.ndarray], i: int) -> None:
    """Row ``i`` of the arrays ``a`` holds one step: its range is its value."""
    for name in RANGE_ROWS:
        value = a[name][i] if np.isfinite(a[name][i]) else np.nan
        a[f"{name}_min"][i] = a[f"{name}_max"][i] = value


def merge(name: str, old: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The ranges of groups of rows starting at ``first`` (fmin/fmax pass over NaN)."""
    return (np.fmin if name.endswith("_min") else np.fmax).reduceat(old, first)


def restore(a: dict[str, np.ndarray], arrays: dict[str, np.ndarray], k: int) -> None:
    """Fill the ranges of ``k`` rows read from a file without them: a single step's row is
    its own range; a merged row's is unknown (NaN)."""
    for name in RANGE_ROWS:
        if f"{name}_min" not in arrays:
            single = np.where((arrays["count"] == 1) & np.isfinite(arrays[name]),
                              arrays[name], np.nan)
            a[f"{name}_min"][:k] = a[f"{name}_max"][:k] = single


__all__ = ["RANGE_ROWS", "RANGE_ARRAYS", "start", "merge", "restore"]
