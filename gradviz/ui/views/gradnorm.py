"""Global gradient norm per step, before and after clipping, with the clip threshold and
the clipped and non-finite steps marked; below it, the gradient norm of every parameter."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from gradviz.ui.views.base import (BACKGROUND, View, curve, event_lines, event_marks, make_legend, pen,
                                   positive_finite, style_plot)

NONFINITE_COLOUR = "#d01010"
CLIPPED_COLOUR = "#e8730c"


def step_curve(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A staircase through (steps[k], values[k]) holding each value until the next step.

    (K,), (K,) -> (2K-1,), (2K-1,)."""
    steps = np.asarray(steps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if len(steps) < 2:
        return steps, values
    x = np.empty(2 * len(steps) - 1)
    y = np.empty_like(x)
    x[0::2] = steps
    x[1::2] = steps[1:]
    y[0::2] = values
    y[1::2] = values[:-1]
    return x, y


class GradnormView(View):
    key = "gradnorm"
    title = "Gradient norm and clipping"

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        canvas = self._add_graphics()
        self.plot = canvas.addPlot(row=0, col=0)
        style_plot(self.plot, "training step", "‖∇L‖ global (log scale)", log_y=True)
        self.nonfinite_marks = event_marks(self.plot, NONFINITE_COLOUR)
        self.threshold = curve(self.plot, pen("#000000", width=1.0,
                                              style=QtCore.Qt.PenStyle.DotLine))
        self.before = curve(self.plot, pen(0, width=2.0))
        self.after = curve(self.plot, pen(2, width=2.0, style=QtCore.Qt.PenStyle.DashLine))
        self.clipped_marks = pg.PlotDataItem(pen=None, symbol="o", symbolSize=7,
                                             symbolPen=pg.mkPen(CLIPPED_COLOUR, width=1.5),
                                             symbolBrush=pg.mkBrush(BACKGROUND),
                                             skipFiniteCheck=True)
        self.plot.addItem(self.clipped_marks)
        make_legend(self.plot, [(self.before, "before clipping"), (self.after, "after clipping"),
                                (self.threshold, "clip threshold (norm)"),
                                (self.clipped_marks, "clipped step"),
                                (self.nonfinite_marks, "not finite (step skipped)")], columns=2)
        self.params_plot = canvas.addPlot(row=1, col=0)
        style_plot(self.params_plot, "training step", "‖∇L‖ per parameter (log scale)",
                   log_y=True)
        self.params_plot.setXLink(self.plot)
        self.params_legend = make_legend(self.params_plot, [], columns=4)
        self.param_curves: list[pg.PlotDataItem] = []
        self._param_names: tuple[str, ...] = ()

    def _clear_items(self) -> None:
        for item in (self.before, self.after, self.threshold, self.clipped_marks,
                     self.nonfinite_marks, *self.param_curves):
            item.setData([], [])

    def _set_params(self, names: tuple[str, ...]) -> None:
        """One curve per parameter tensor; made again only when the model changes."""
        if names == self._param_names:
            return
        for item in self.param_curves:
            self.params_plot.removeItem(item)
        self.param_curves = [curve(self.params_plot, pen(i)) for i in range(len(names))]
        self.params_legend = make_legend(self.params_plot, list(zip(self.param_curves, names)),
                                         columns=4, replace=self.params_legend)
        self._param_names = names

    def _norm_clipping(self) -> np.ndarray:
        """(K,) bool: rows whose clip threshold was a norm bound (finite threshold while
        the run clips by norm)."""
        history = self._history
        by_norm = self._latest is not None and self._latest.clip == "norm"
        return np.isfinite(history.clip_threshold) & by_norm

    def _redraw(self) -> None:
        history = self._history
        if history is None or len(history) == 0:
            self._clear_items()
            return
        steps = history.step
        self.before.setData(*positive_finite(steps, history.grad_norm))
        self.after.setData(*positive_finite(steps, history.grad_norm_clipped))
        rows = self._norm_clipping()
        if rows.any():
            self.threshold.setData(*positive_finite(*step_curve(steps[rows],
                                                                history.clip_threshold[rows])))
        else:
            self.threshold.setData([], [])
        clipped = history.clipped & np.isfinite(history.grad_norm)
        self.clipped_marks.setData(*positive_finite(steps[clipped], history.grad_norm[clipped]))
        bad = history.nonfinite | ~np.isfinite(history.grad_norm)
        self.nonfinite_marks.setData(*event_lines(steps[bad], history.grad_norm))
        self._set_params(tuple(history.param_names))
        norms = history.param_grad_norm
        for p, item in enumerate(self.param_curves):
            item.setData(*positive_finite(steps, norms[:, p]))

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        """One row per history row: step, global norm before and after clipping, clip
        threshold (nan unless clipping by norm), clipped and non-finite flags, and the norm
        of every parameter's gradient."""
        history = self._history
        header = ["step", "grad_norm", "grad_norm_clipped", "clip_threshold", "clipped",
                  "nonfinite"]
        if history is None or len(history) == 0:
            return header, np.zeros((0, len(header)))
        header += [f"grad_norm {name}" for name in history.param_names]
        threshold = np.where(self._norm_clipping(), history.clip_threshold, np.nan)
        rows = np.column_stack([history.step, history.grad_norm, history.grad_norm_clipped,
                                threshold, history.clipped, history.nonfinite,
                                history.param_grad_norm]).astype(np.float64)
        return header, rows
