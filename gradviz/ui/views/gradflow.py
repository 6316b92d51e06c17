"""Gradient flow: log10 ‖∂L/∂h_t‖ for every recorded training step (x) and timestep t (y).

Columns are history rows on a linear training-step axis, each as wide as the steps it
covers (merged old rows are wider, :mod:`.stepimage`), so the heatmap lines up with the
loss and gradient-norm plots; a dashed line marks the step the timeline shows. With
"compare" checked, the newest comparison run's heatmap is drawn below on the same axes
and colour scale.

Drawing cost is kept independent of the history's length: the log values and their
uint8 colour indices are cached per history row, and a new frame quantises only the rows
that arrived since the last one. Everything is recomputed only when the history merged
old rows, the layer/direction or sequence length changed, or the colour levels moved.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtGui, QtWidgets

from gradviz.ui.views.axes import EDGE_LABEL_PX
from gradviz.ui.views.compare import StepMarker
from gradviz.ui.views.data import LOG_FLOOR
from gradviz.ui.views.items import ColourKey, WrappedText
from gradviz.ui.views.stepimage import SteppedImage
from gradviz.ui.views.style import style_colorbar, style_plot
from gradviz.ui.views.view import View, join_groups

LOG_MIN = math.log10(LOG_FLOOR)
# Colour index 255 is reserved for non-finite gradients, 254 for absent timesteps (a batch
# shorter than the longest of a watch, padded with NaN in a finite step); 0..253 span the
# colour levels.
NONFINITE_INDEX = 255
NONFINITE_RGB = (230, 20, 20)
ABSENT_INDEX = 254
ABSENT_RGB = (225, 225, 225)
# Levels follow the 1st-99th percentile of the nonzero gradients, rounded outward to half a
# decade, and shrink only when the data moved a whole decade inside them: no flicker.
LEVEL_PERCENTILES = (1.0, 99.0)
LEVEL_ROUNDING = 0.5
# Rounded outward with this margin (in units of LEVEL_ROUNDING), so that the smallest
# gradients never sit on the scale's bottom colour, which the floor (zeros) owns. Without
# it a value at a rounding boundary (1e-3: log10 is -3 ± 1 ulp, and which side depends on
# the CPU's vector code for log10) landed on index 0 on some machines and not on others.
LEVEL_MARGIN = 0.2
LEVEL_SHRINK = 1.0
LEVEL_SAMPLE = 65536
# Until a gradient is finite and nonzero (a run diverged from its first step), the scale
# shows a typical span instead of one decade at the floor.
DEFAULT_LEVELS = (-8.0, 0.0)


class GradflowView(View):
    key = "gradflow"
    title = "Gradient flow ‖∂L/∂hₜ‖"
    help_text = (
        "Each column is a recorded training step (oldest on the left), each row a "
        "timestep t of the sequence, and the colour is log10 of ‖∂L/∂hₜ‖, the size of "
        "the gradient that reaches the hidden state at t; the colour bar gives the "
        "decades. The loss is read at the last timesteps, so the top rows are "
        "brightest. Vanishing looks like a dark band that spreads down toward t = 0: "
        "the early timesteps get gradients many decades smaller and cannot learn. "
        "Exploding looks like the whole column turning bright, and a red column is a "
        "step whose gradient was not finite. A column that changes over training shows "
        "the network learning to carry (or lose) its gradient.")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.selector = self._add_selector()
        self.compare_box = QtWidgets.QCheckBox("compare", self)
        self.compare_box.setToolTip("Show the newest comparison run's heatmap below, on the "
                                    "same axes and colour scale")
        self.compare_box.toggled.connect(self._redraw)
        self.toolbar.addWidget(self.compare_box)
        canvas = self._add_graphics()
        cmap = pg.colormap.get("viridis")
        self.colour_key = ColourKey()
        self._key_entries = [
            (QtGui.QColor(*NONFINITE_RGB).name(), "box", "not finite"),
            (cmap.map(0.0, mode="qcolor").name(), "box", "at or below the scale's bottom, 0 too")]
        self.colour_key.set_entries(self._key_entries)
        self._absent_shown = False
        canvas.addItem(self.colour_key, row=0, col=0, colspan=2)
        lut = cmap.getLookupTable(nPts=ABSENT_INDEX, alpha=False)
        lut = np.vstack([lut, np.array([ABSENT_RGB, NONFINITE_RGB], np.uint8)])
        self.plot = self._heatmap_plot(canvas, row=1)
        self.axis = self.plot.getAxis("bottom")
        self.image = SteppedImage(self.plot, lut)
        self.marker = StepMarker(self.plot)
        self.bar = pg.ColorBarItem(values=DEFAULT_LEVELS, colorMap=cmap, interactive=False,
                                   colorMapMenu=False)
        style_colorbar(self.bar, "log₁₀ ‖∂L/∂hₜ‖")
        canvas.addItem(self.bar, row=1, col=1, rowspan=3)
        # The comparison's heatmap, below the live one, shown only while "compare" is on.
        self.other_heading = WrappedText()
        self.other_plot = self._heatmap_plot(canvas, row=3)
        self.other_plot.setXLink(self.plot)
        self.other_image = SteppedImage(self.other_plot, lut)
        self.other_marker = StepMarker(self.other_plot)
        canvas.addItem(self.other_heading, row=2, col=0)
        self._stacked = True
        self._show_other(False)
        self._other_key: tuple | None = None   # what the comparison's cached log values are of
        self._other_log = np.zeros((0, 0), np.float32)
        self._other_index: tuple[tuple | None, np.ndarray] = (None, np.zeros((0, 0), np.uint8))
        self._reset_cache()

    @staticmethod
    def _heatmap_plot(canvas: pg.GraphicsLayout, row: int) -> pg.PlotItem:
        plot = canvas.addPlot(row=row, col=0)
        style_plot(plot, "training step", "timestep t", grid=False)
        # The axes end where the image does: padding would show timesteps below 0. The
        # first step's label, centred on the left edge, may then reach past the axis.
        plot.getViewBox().setDefaultPadding(0.0)
        plot.getAxis("bottom").setStyle(hideOverlappingLabels=EDGE_LABEL_PX)
        return plot

    def _show_other(self, show: bool) -> None:
        """The comparison's heatmap (and its heading) in the layout or out of it."""
        if show == self._stacked:
            return
        for item, row in ((self.other_heading, 2), (self.other_plot, 3)):
            if show:
                self.canvas.addItem(item, row=row, col=0)
            else:
                self.canvas.removeItem(item)
            item.setVisible(show)
        self._stacked = show

    def _show_absent(self, show: bool) -> None:
        """The colour key names the absent colour once a drawn row has absent steps."""
        if show == self._absent_shown:
            return
        self._absent_shown = show
        self.colour_key.set_entries(self._key_entries + (
            [(QtGui.QColor(*ABSENT_RGB).name(), "box", "absent (a shorter sequence)")]
            if show else []))

    def _reset_cache(self) -> None:
        self._key: tuple[int, int, int] | None = None   # (layer, direction, T) cached
        self._rows = 0                                   # history rows cached
        self._steps = np.zeros(0, np.int64)
        self._counts = np.zeros(0, np.int64)
        self._log = np.zeros((0, 0), np.float32)        # (capacity, T) log10 ‖∂L/∂h_t‖, nan if not finite
        self._index = np.zeros((0, 0), np.uint8)        # (capacity, T) colour indices
        self._levels: tuple[float, float] | None = None
        if hasattr(self, "colour_key"):
            self._show_absent(False)

    @property
    def levels(self) -> tuple[float, float] | None:
        """The (low, high) log10 values of the colour scale, None before any data."""
        return self._levels

    def preset_levels(self, levels: tuple[float, float]) -> None:
        """Start from the colour scale ``levels`` (an opened run's, as it was saved): the
        same data then draws with the same scale."""
        self._levels = (float(levels[0]), float(levels[1]))

    def image_array(self) -> np.ndarray | None:
        """The drawn (K, T) colour-index image (column k = history row k), None if empty."""
        return None if self._rows == 0 else self._index[:self._rows]

    def _clear_items(self) -> None:
        self.image.clear()
        self.marker.set_step(None)
        self._clear_other()
        self._reset_cache()

    def _clear_other(self) -> None:
        self.other_image.clear()
        self.other_marker.set_step(None)
        self._other_key = None
        self._other_log = np.zeros((0, 0), np.float32)
        self._other_index = (None, np.zeros((0, 0), np.uint8))
        self._show_other(False)

    def _selected(self) -> np.ndarray:
        """(K, T) ‖∂L/∂h_t‖ of the chosen layer and direction (a view into the history)."""
        layer, direction = self.selector.layer_direction
        return self._history.dh_norm[:, layer, direction, :]

    def _redraw(self) -> None:
        history = self._history
        self.compare_box.setEnabled(bool(self._comparisons))
        if history is None or len(history) == 0:
            self._clear_items()
            return
        K, L, D, T = history.dh_norm.shape
        self.selector.set_shape(L, D)
        layer, direction = self.selector.layer_direction
        other = self._other_rows(layer, direction)
        raw = self._selected()
        start = self._reusable_rows((layer, direction, T), history, raw)
        if start == 0:
            self._key = (layer, direction, T)
        self._reserve(K, T)
        fresh = log_rows(raw[start:K], _lengths(history, start, K))
        self._log[start:K] = fresh
        self._show_absent(self._absent_shown or bool(np.isneginf(fresh).any()))
        self._rows = K
        self._steps = np.array(history.step, dtype=np.int64)
        self._counts = np.array(history.count, dtype=np.int64)
        if self._update_levels(other):
            start = 0
        self._quantise(start, K)
        self.image.set_image(self._index[:K], self._steps, self._counts)
        self.marker.set_step(self._step)
        self.bar.setLevels(self._levels)
        self._draw_other(other)

    def _other_rows(self, layer: int, direction: int) -> np.ndarray | None:
        """(K', T') log10 ‖∂L/∂h_t‖ of the newest comparison run shown, when "compare" is
        on and it has this layer and direction; cached, as comparison runs do not change."""
        if not (self.compare_box.isChecked() and self._comparisons):
            return None
        c = self._comparisons[0]
        dh = c.history.dh_norm
        if layer >= dh.shape[1] or direction >= dh.shape[2]:
            return None
        key = (id(c.history), len(c.history), int(c.history.step[-1]), layer, direction)
        if key != self._other_key:
            log = log_rows(dh[:, layer, direction], _lengths(c.history, 0, len(dh)))
            self._other_key, self._other_log = key, log
        return self._other_log

    def _draw_other(self, other: np.ndarray | None) -> None:
        """The comparison's heatmap below the live one, on the live one's colour scale."""
        if other is None:
            self._clear_other()
            return
        self._show_other(True)
        c = self._comparisons[0]
        if self._other_index[0] != (self._other_key, self._levels):
            self._other_index = ((self._other_key, self._levels), self._indices(other))
            self.other_image.set_image(self._other_index[1], c.history.step, c.history.count)
        self.other_marker.set_step(self._step)
        self.other_heading.set_text(c.label)

    def _reusable_rows(self, key: tuple[int, int, int], history, raw: np.ndarray) -> int:
        """How many leading history rows are the same rows as in the cache."""
        kc = self._rows
        if key != self._key or kc == 0 or kc > len(history):
            return 0
        if not (np.array_equal(self._steps[:kc], history.step[:kc])
                and np.array_equal(self._counts[:kc], history.count[:kc])):
            return 0   # the history merged old rows: every column may have moved
        # A history cleared and refilled from step 0 repeats the same step numbers.
        newest = log_rows(raw[kc - 1:kc], _lengths(history, kc - 1, kc))[0]
        if not np.array_equal(newest, self._log[kc - 1], equal_nan=True):
            return 0
        return kc

    def _reserve(self, rows: int, T: int) -> None:
        """Grow the caches (doubling) so they hold ``rows`` rows of length ``T``."""
        if self._log.shape[1] != T:
            self._log = np.zeros((0, T), np.float32)
            self._index = np.zeros((0, T), np.uint8)
        if rows <= self._log.shape[0]:
            return
        capacity = max(rows, 2 * self._log.shape[0], 64)
        log = np.zeros((capacity, T), np.float32)
        index = np.zeros((capacity, T), np.uint8)
        kept = min(self._rows, self._log.shape[0])
        log[:kept] = self._log[:kept]
        index[:kept] = self._index[:kept]
        self._log, self._index = log, index

    @staticmethod
    def _sample(log: np.ndarray) -> np.ndarray:
        """The finite, nonzero values of a strided sample of (K, T) ``log``: percentiles of
        a few thousand values set the scale as well as millions, at a fraction of the cost."""
        K, T = log.shape
        stride_t = max(1, T // 256)
        columns = -(-T // stride_t)
        stride_rows = max(1, -(-K * columns // LEVEL_SAMPLE))
        sample = log[::stride_rows, ::stride_t]
        return sample[np.isfinite(sample) & (sample > LOG_MIN)]

    def _update_levels(self, other: np.ndarray | None = None) -> bool:
        """Move the colour levels if the data (and ``other``, a comparison's log values
        drawn on the same scale) left them; True if they changed."""
        sample = self._sample(self._log[:self._rows])
        if other is not None:
            sample = np.concatenate([sample, self._sample(other)])
        if sample.size == 0:
            target = self._levels or DEFAULT_LEVELS
        else:
            p_lo, p_hi = np.percentile(sample, LEVEL_PERCENTILES)
            target = (math.floor(p_lo / LEVEL_ROUNDING - LEVEL_MARGIN) * LEVEL_ROUNDING,
                      math.ceil(p_hi / LEVEL_ROUNDING + LEVEL_MARGIN) * LEVEL_ROUNDING)
            if target[1] - target[0] < 1.0:
                target = (target[0], target[0] + 1.0)
        if self._levels is None:
            self._levels = target
            return True
        lo, hi = self._levels
        new_lo = target[0] if target[0] < lo or target[0] > lo + LEVEL_SHRINK else lo
        new_hi = target[1] if target[1] > hi or target[1] < hi - LEVEL_SHRINK else hi
        if new_hi - new_lo < 1.0:
            new_lo, new_hi = target
        if (new_lo, new_hi) == self._levels:
            return False
        self._levels = (new_lo, new_hi)
        return True

    def _quantise(self, start: int, stop: int) -> None:
        """Colour indices of rows [start, stop) from their cached log values."""
        if stop > start:
            self._index[start:stop] = self._indices(self._log[start:stop])

    def _indices(self, log: np.ndarray) -> np.ndarray:
        """uint8 colour indices of log10 values on the current levels (NaN: not finite,
        -inf: absent)."""
        lo, hi = self._levels
        scaled = (log - np.float32(lo)) * np.float32((ABSENT_INDEX - 1) / (hi - lo))
        np.clip(scaled, 0, ABSENT_INDEX - 1, out=scaled)
        scaled[np.isnan(scaled)] = NONFINITE_INDEX
        scaled[np.isneginf(log)] = ABSENT_INDEX
        return scaled.astype(np.uint8)

    def other_image_array(self) -> np.ndarray | None:
        """The comparison's drawn (K', T) colour indices, None unless it is shown."""
        items = [item.image for item in self.other_image.items
                 if item.isVisible() and item.image is not None]
        return np.concatenate(items) if self._stacked and items else None

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        """One row per history row: step, captures merged into it, ‖∂L/∂h_t‖ for each t
        of the layer and direction shown."""
        if self._history is None or len(self._history) == 0:
            return ["step", "captures"], np.zeros((0, 2))
        raw = self._selected()
        header = ["step", "captures"] + [f"t={t}" for t in range(raw.shape[1])]
        rows = np.column_stack([self._history.step, self._history.count,
                                raw.astype(np.float64)]).astype(np.float64)
        layer, direction = self.selector.layer_direction
        if self._other_rows(layer, direction) is None:
            return header, rows
        # The comparison's heatmap drawn below: its rows beside, named by its label.
        c = self._comparisons[0]
        other = np.column_stack([c.history.step, c.history.count,
                                 c.history.dh_norm[:, layer, direction]]).astype(np.float64)
        other_header = ["step", "captures"] + [f"t={t}" for t in range(other.shape[1] - 2)]
        return join_groups([(self._live_label, header, rows), (c.label, other_header, other)])



def log_rows(raw: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """(K, T) float32 log10 of ``raw`` ‖∂L/∂h_t‖ rows, floored at LOG_FLOOR: NaN where not
    finite, -inf where absent: the steps at or after each row's ``lengths`` (K,) (the
    timesteps it has: a watch's batch shorter than its longest, padded)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log = np.log10(np.maximum(raw, LOG_FLOOR, dtype=np.float32))
    log[~np.isfinite(log)] = np.nan
    if lengths is not None and len(lengths) == len(raw):
        log[np.arange(raw.shape[1])[None, :] >= np.asarray(lengths)[:, None]] = -np.inf
    return log


def _lengths(history, start: int, stop: int) -> np.ndarray | None:
    """The timesteps rows [start, stop) of ``history`` have (None: a history without)."""
    lengths = getattr(history, "time_len", None)
    return None if lengths is None else lengths[start:stop]
