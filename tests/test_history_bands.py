"""Merged history without artefacts: a History keeps each merged row's smallest and largest
value, the views draw every part of a curve as the same statistic (the mean of blocks of
equal length inside a min-max band), and run files keep the ranges (older ones still open)."""
from __future__ import annotations

import numpy as np
import pytest

from gradviz.config import RunConfig
from gradviz.engine.runs.history import RANGE_ARRAYS, History
from gradviz.engine.runs.runfile import open_run, save_run
from gradviz.ui.views.bands import binned, block_starts

from conftest import synthetic_capture

CAPACITY = 256


def stationary_history(steps: int, capacity: int = CAPACITY, seed: int = 0) -> History:
    """A run whose loss and gradient norm are noise around a constant (nothing happens)."""
    rng = np.random.default_rng(seed)
    history = History(capacity)
    for step in range(steps):
        capture = synthetic_capture(step, T=6, light=step % 50 != 0,
                                    loss=float(np.exp(rng.normal(-1.0, 0.3))))
        capture.grad_norm = float(np.exp(rng.normal(0.0, 0.3)))
        history.append(capture)
    return history


def test_merged_rows_keep_the_smallest_and_largest_of_their_steps():
    rng = np.random.default_rng(1)
    history = History(16)
    losses = np.exp(rng.normal(0.0, 1.0, 40))
    losses[7] = np.nan          # a non-finite step counts in neither
    for step, loss in enumerate(losses):
        history.append(synthetic_capture(step, T=4, light=True, loss=float(loss)))
    assert history.count.max() > 1
    start = 0
    for k, count in enumerate(history.count):
        steps = losses[start:start + count]
        assert history.loss_min[k] == np.nanmin(steps)
        assert history.loss_max[k] == np.nanmax(steps)
        start += count
    assert start == len(losses)


def band_widths(view) -> np.ndarray:
    """The drawn band's width in decades (the plot's y axis is log) at each block."""
    low, high = view.loss_band.low.yData, view.loss_band.high.yData
    np.testing.assert_array_equal(view.loss_band.low.xData, view.loss_band.high.xData)
    return np.log10(high) - np.log10(low)


@pytest.mark.parametrize("key", ["loss", "gradnorm"])
def test_the_band_keeps_its_width_across_the_merge_boundary(qtbot, key):
    from gradviz.ui.views import make_views

    history = stationary_history(600)      # old rows of 8 steps, then ~150 single steps
    merged = int((history.count > 1).sum())
    assert 0 < merged < len(history) and (history.count[merged:] == 1).all()
    view = make_views()[key]
    view.set_data(history, history.latest)
    band = view.loss_band if key == "loss" else view.before_band
    line = view.loss_curve if key == "loss" else view.before
    low, high = band.low.yData, band.high.yData
    width = np.log10(high) - np.log10(low)
    x = band.low.xData
    boundary = float(history.step[merged - 1])
    size = int(history.count.max())
    # Every drawn point is one block of `size` steps, on both sides of the boundary.
    assert len(line.xData) == len(x) == -(-int(history.count.sum()) // size)
    old, new = width[x <= boundary], width[x > boundary][:-1]   # the last block is partial
    assert len(old) >= 15 and len(new) >= 15
    assert (new > 0).all(), "the newer steps are drawn without their band"
    ratio = new.mean() / old.mean()
    assert 0.75 < ratio < 1.33, f"the band's width changes at the merge boundary ({ratio:.2f})"


def test_blocks_are_aligned_as_the_history_merges_them():
    first, size = block_starts(np.array([4, 4, 4, 3, 1, 1, 1, 1, 1]))
    assert size == 4 and list(first) == [0, 1, 2, 3, 5]
    history = stationary_history(CAPACITY // 2)      # nothing merged: the rows themselves
    blocks = binned(history, "loss")
    assert blocks.size == 1
    np.testing.assert_array_equal(blocks.mean, history.loss)
    np.testing.assert_array_equal(blocks.low, blocks.high)


def test_run_files_keep_the_ranges_and_older_files_still_open(tmp_path):
    history = stationary_history(2 * CAPACITY)
    save_run(tmp_path / "run", RunConfig(seq_len=6, hidden=8), history)
    opened = open_run(tmp_path / "run").history
    for name in RANGE_ARRAYS:
        np.testing.assert_array_equal(getattr(opened, name), getattr(history, name))
    # A file from before the ranges were kept: a single step's row is its own range, a
    # merged row's unknown (drawn with its mean).
    import zipfile
    npz = tmp_path / "run" / "capture.npz"
    with zipfile.ZipFile(npz) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(npz, "w") as zf:
        for name, data in members.items():
            if name.removesuffix(".npy") not in RANGE_ARRAYS:
                zf.writestr(name, data)
    old = open_run(tmp_path / "run").history
    single = old.count == 1
    np.testing.assert_array_equal(old.loss_min[single], history.loss[single])
    assert np.isnan(old.loss_min[~single]).all()
    blocks = binned(old, "loss")
    assert np.isfinite(blocks.low).all() and np.isfinite(blocks.mean).all()
