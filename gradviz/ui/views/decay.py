"""The local decay rate of the gradient: ‖∂L/∂h_t‖ / ‖∂L/∂h_{t+1}‖ over t.

Pascanu, Mikolov & Bengio (2013) regularise this ratio towards 1. Below 1 the gradient
shrinks at that step on its way back, above 1 it grows; its geometric mean over t is the
factor per step, written on the plot. The newest history row is drawn
(gradviz.engine.analysis.bounds.decay_ratio).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from gradviz.engine.analysis.bounds import decay_ratio, geometric_mean
from gradviz.engine.analysis.factors import FACTOR_WORDS, factor_summary, is_diagonal, step_factors
from gradviz.ui.views.data import finite_points
from gradviz.ui.views.items import WrappedText, curve
from gradviz.ui.views.style import pen, style_plot
from gradviz.ui.views.view import View


def per_step_text(g: float) -> str:
    """The geometric mean as the plot writes it: "×0.83 per step"."""
    return "no finite ratio" if not np.isfinite(g) else f"×{g:.3g} per step"


class DecayView(View):
    key = "decay"
    title = "Local decay rate ‖∂L/∂hₜ‖ / ‖∂L/∂hₜ₊₁‖"
    page = "Why"
    help_text = (
        "For the newest step, the ratio of the gradient reaching hₜ to the one reaching "
        "hₜ₊₁ (the previous step on the way back: for a backward direction, hₜ₋₁), against the "
        "timestep t on a log axis. The grey line is 1: below it the gradient shrinks at that "
        "step, above it it grows. The heading gives the geometric mean over t, the factor per "
        "step: ×0.83 means that after 20 steps back 0.83²⁰ ≈ 2% is left (vanishing), ×1.2 "
        "means it grows 38-fold (exploding). A loss at every step lifts the ratio where new "
        "gradient enters (Pascanu, Mikolov & Bengio 2013). For the diagonal cells (minGRU, "
        "minLSTM, IndRNN, LRU) the orange curves are their factor ∂hₜ/∂hₜ₋₁ per step, which "
        "the ratio follows; for the orthogonal RNN they are the singular values of its "
        "∂hₜ/∂hₜ₋₁ = diag(1 − hₜ²)·W_hh (mean; smallest and largest dashed, each averaged "
        "over the batch), which are exactly the values of 1 − hₜ² since W_hh is orthogonal.")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.selector = self._add_selector()
        canvas = self._add_graphics()
        self.heading = WrappedText(size_pt=13)
        canvas.addItem(self.heading, row=0, col=0)
        self.plot = canvas.addPlot(row=1, col=0)
        style_plot(self.plot, "timestep t", "ratio (log scale)", log_y=True)
        self.plot.addItem(pg.InfiniteLine(pos=0.0, angle=0, pen=pen(
            "#7f7f7f", style=QtCore.Qt.PenStyle.DashLine)), ignoreBounds=True)
        self.curve = curve(self.plot, pen(0, width=2.0))
        # The diagonal cells' per-step factor a_t (mean over units; min and max dashed),
        # which the ratio equals for one unit and one sequence.
        self.factor_curves = [curve(self.plot, pen(1, width=w, style=st)) for w, st in (
            (1.5, QtCore.Qt.PenStyle.SolidLine), (1.0, QtCore.Qt.PenStyle.DashLine),
            (1.0, QtCore.Qt.PenStyle.DashLine))]
        self.mean = float("nan")

    def _ratio(self) -> tuple[np.ndarray, np.ndarray]:
        history = self._history
        layer, direction = self.selector.layer_direction
        dh = history.dh_norm[-1, layer, direction]
        ratio = decay_ratio(dh, reverse=direction == 1)
        # Ratio i compares t = i with its neighbour further along the processing order.
        t = np.arange(len(ratio), dtype=np.float64) + (1.0 if direction == 1 else 0.0)
        return t, ratio

    def _factors(self) -> tuple[np.ndarray, tuple[np.ndarray, ...], str] | None:
        """(t, (mean, min, max), words) of the diagonal cells' factor, or of the orthogonal
        RNN's singular values of ∂h_t/∂h_{t−1}, at the step each ratio crosses, from the
        newest full capture; None for other cells."""
        cap = self._latest
        if cap is None or cap.gates is None:
            return None
        layer, direction = self.selector.layer_direction
        if cap.jacobian_sv is not None:
            big, small, mean = cap.jacobian_sv[layer, direction].astype(np.float64)
            values, words = (mean, small, big), "σ of diag(1 − h²)·W_hh"
        elif is_diagonal(cap.gate_names):
            values = factor_summary(step_factors(cap.gate_names, cap.gates[layer, direction]))
            words = "the factor " + FACTOR_WORDS[tuple(cap.gate_names)]
        else:
            return None
        T = values[0].shape[0]
        # Ratio at t compares h_t with its neighbour later in the processing order, which
        # reaches h_t through that neighbour's factor.
        if direction == 0:
            return np.arange(T - 1, dtype=np.float64), tuple(v[1:] for v in values), words
        return np.arange(1, T, dtype=np.float64), tuple(v[:-1] for v in values), words

    def _clear_items(self) -> None:
        for item in self.factor_curves:
            item.setData([], [])
        self.curve.setData([], [])
        self.heading.set_text("")
        self.mean = float("nan")

    def _redraw(self) -> None:
        history = self._history
        if history is None or len(history) == 0 or history.dh_norm.shape[-1] < 2:
            self._clear_items()
            return
        _, L, D, _ = history.dh_norm.shape
        self.selector.set_shape(L, D)
        t, ratio = self._ratio()
        x, y = finite_points(t, ratio)
        self.curve.setData(x, y)
        self.mean = geometric_mean(ratio)
        text = f"{per_step_text(self.mean)}  (geometric mean over t, step {int(history.step[-1])})"
        factors = self._factors()
        for item in self.factor_curves:
            item.setData([], [])
        if factors is not None:
            ft, values, words = factors
            for item, v in zip(self.factor_curves, values):
                item.setData(*finite_points(ft, v))
            which = ("batch mean (smallest, largest dashed)" if self._latest.jacobian_sv
                     is not None else "mean over units (min, max dashed)")
            text += f"; orange: {words} per step, {which}, step {self._latest.step}"
        self.heading.set_text(text)

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        """One row per timestep t: the ratio drawn (NaN where not finite)."""
        if self._history is None or len(self._history) == 0:
            return ["t", "ratio"], np.zeros((0, 2))
        t, ratio = self._ratio()
        return ["t", "ratio"], np.column_stack([t, ratio])
