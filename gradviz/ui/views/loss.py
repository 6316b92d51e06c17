"""Training loss per step on a log axis, against the loss of a model with no memory; and,
for a task that measures its own success (the fraction of sums solved, of symbols copied),
that measure over the last few steps, above the plot."""
from __future__ import annotations

import numpy as np
from PyQt6 import QtCore, QtWidgets

from gradviz.ui.views.bands import binned
from gradviz.ui.views.compare import ComparisonCurves, StepMarker, key_entries, run_key
from gradviz.ui.views.data import LOG_FLOOR, event_lines, positive_finite
from gradviz.ui.views.items import Band, ColourKey, curve, event_marks
from gradviz.ui.views.style import LABEL_STYLE, colour, pen, style_plot
from gradviz.ui.views.view import View

NONFINITE_COLOUR = "#d01010"
BASELINE_COLOUR = "#000000"
BAND_COLOUR = "#c9d8ef"     # a light tint of the loss line's blue
METRIC_ROWS = 20  # the task's metric is shown as its mean over this many recent rows


def mean_line(history) -> tuple[np.ndarray, np.ndarray]:
    """A run's loss as the views draw it: the mean over blocks of equal length."""
    blocks = binned(history, "loss")
    return positive_finite(blocks.step, blocks.mean)


class LossView(View):
    key = "loss"
    title = "Training loss"
    help_text = (
        "The training loss at each step on a log axis, and the dashed line of a model "
        "with no memory: the best a network can do without remembering the sequence. A "
        "loss on that line means the network has not found the long-range dependency "
        "(the usual picture when the gradient vanishes); a loss that falls below it has "
        "learned to remember. Red marks are steps whose loss was not finite, and a loss "
        "that jumps up by decades is an explosion. Where the task defines \"solved\", the "
        "fraction of sequences solved is shown with it. In a long run, whose old steps "
        "are kept in blocks, every point is the mean of one block of steps and the light "
        "band spans the block's smallest to largest loss, the same everywhere.")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        canvas = self._add_graphics()
        self.colour_key = ColourKey()
        canvas.addItem(self.colour_key, row=0, col=0)
        self.plot = canvas.addPlot(row=1, col=0)
        style_plot(self.plot, "training step", "loss (task units, log scale)", log_y=True)
        self.loss_band = Band(self.plot, BAND_COLOUR)
        self.loss_curve = curve(self.plot, pen(0, width=2.0))
        self.baseline_curve = curve(self.plot, pen(BASELINE_COLOUR, width=2.0,
                                                   style=QtCore.Qt.PenStyle.DashLine))
        self.nonfinite_marks = event_marks(self.plot, NONFINITE_COLOUR)
        self.comparison_curves = ComparisonCurves(self.plot)
        self.marker = StepMarker(self.plot)

    def _clear_items(self) -> None:
        for item in (self.loss_curve, self.baseline_curve, self.nonfinite_marks):
            item.setData([], [])
        self.loss_band.clear()
        self.comparison_curves.clear()
        self.marker.set_step(None)
        self.colour_key.set_entries([])

    def _draw_comparisons(self) -> None:
        self.comparison_curves.set_lazily(
            [(c.index, run_key(c), lambda c=c: mean_line(c.history))
             for c in self._comparisons])
        self.marker.set_step(self._step)

    def _baseline(self) -> float | None:
        value = getattr(self._history, "baseline", None)
        if value is None or not np.isfinite(value) or value <= 0:
            return None
        return float(value)

    def _redraw(self) -> None:
        history = self._history
        if history is None or len(history) == 0:
            self._clear_items()
            self._draw_comparisons()
            self.colour_key.set_entries(key_entries(self._comparisons, "(no steps yet)",
                                                    (colour(0), "line", "loss"))[1:])
            return
        self._draw_comparisons()
        steps = history.step
        blocks = binned(history, "loss")
        self.loss_curve.setData(*positive_finite(blocks.step, blocks.mean))
        if blocks.size > 1:
            keep = np.isfinite(blocks.mean)
            self.loss_band.set_data(blocks.step[keep], np.maximum(blocks.low[keep], LOG_FLOOR),
                                    np.maximum(blocks.high[keep], LOG_FLOOR))
        else:
            self.loss_band.clear()      # single steps: a band of no width
        baseline = self._baseline()
        if baseline is None:
            self.baseline_curve.setData([], [])
        else:
            self.baseline_curve.setData([float(steps[0]), float(steps[-1])], [baseline, baseline])
        bad = history.nonfinite | ~np.isfinite(history.loss)
        self.nonfinite_marks.setData(*event_lines(steps[bad], history.loss))
        live = "loss" if blocks.size == 1 else f"loss, mean of {blocks.size} steps"
        entries = [*key_entries(self._comparisons, self._live_label, (colour(0), "line", live))]
        # A run recorded from Python has the user's own loss: no task, so no baseline and
        # no "task units".
        if baseline is not None:
            entries.append((BASELINE_COLOUR, "dash", f"no-memory baseline ({baseline:.4g})"))
        label = f"loss ({'task units, ' if baseline is not None else ''}log scale)"
        if self.plot.getAxis("left").labelText != label:
            self.plot.setLabel("left", label, **LABEL_STYLE)
        if blocks.size > 1:
            entries.insert(1 if not self._comparisons else 1 + len(self._comparisons),
                           (BAND_COLOUR, "band", "min–max"))
        if bad.any():
            entries.append((NONFINITE_COLOUR, "event", "not finite (step skipped)"))
        self.colour_key.set_entries(entries, title=self._metric_label())

    def _metric_label(self) -> str:
        """'fraction solved 83% (last 20 steps)', or '' for a task without a metric."""
        history = self._history
        metric, count = history.metric[-METRIC_ROWS:], history.count[-METRIC_ROWS:]
        finite = np.isfinite(metric)
        if not history.metric_name or not finite.any():
            return ""
        value = np.average(metric[finite], weights=count[finite])
        steps = int(count[finite].sum())
        return f"{history.metric_name} {value:.0%} (last {steps} step{'s' * (steps != 1)})"

    def _run_table(self, history) -> tuple[list[str], np.ndarray]:
        """One row per history row of ``history`` (a run drawn): step, loss (nan where not
        finite), baseline, non-finite flag, the task's metric (nan for a task without one)."""
        header = ["step", "loss", "baseline", "nonfinite", "metric"]
        if history is None or len(history) == 0:
            return header, np.zeros((0, 5))
        baseline = history.baseline if np.isfinite(history.baseline) and history.baseline > 0 \
            else np.nan
        rows = np.column_stack([history.step, history.loss, np.full(len(history), baseline),
                                history.nonfinite, history.metric]).astype(np.float64)
        return header, rows
