"""The theory over the gradient-through-time plot: what the chain rule allows.

For a plain RNN, the unrolled bound of gradviz.engine.analysis.bounds on ‖∂L/∂h_t‖ (dashed, over
the h_t plot): B_{T−1} = ‖∂L/∂h_{T−1}‖, B_t = ‖dout_t‖ + γσ_max(W_hh)·B_{t+1}, which for
a loss at the last step only is ‖∂L/∂h_{T−1}‖·(γσ_max)^{T−1−t}; the measured curve stays
under it. For LSTM cells, ‖∂L/∂c_{T−1}‖·∏ f̄ along t (dashed, over the c_t plot): what
the belt alone carries back. Both are drawn for the newest full capture, whose step the
key names; a toggle in the view's toolbar turns them off. For the diagonal cells (minGRU,
minLSTM, IndRNN, LRU), ‖∂L/∂h_{T−1}‖ ⊙ ∏ a along t, a their captured per-step factors
(gradviz.engine.analysis.factors): the measured curve itself for a loss at the last step,
not a bound (exact per sequence; for a batch, the product of the batch-mean factors); where
gradient also enters earlier (a loss at every step, a lower layer of a stack) only the part
carried from the last step, and the key says so.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from gradviz.engine.analysis.bounds import block_gamma, forget_product, rnn_unrolled_bound
from gradviz.engine.analysis.factors import FACTOR_WORDS, factor_product, step_factors
from gradviz.engine.runs.capture import Capture
from gradviz.ui.views.data import positive_finite
from gradviz.ui.views.items import ColourKey
from gradviz.ui.views.style import pen

BOUND_COLOUR = "#c8202f"


def overlay_values(cap: Capture, layer: int, direction: int) -> tuple[str, str, np.ndarray] | None:
    """What the overlay draws for ``cap``: ("h" or "c", its label, (T,) values in time
    order), or None where there is no bound to draw (another cell, or a capture without
    the local terms or the gates it needs)."""
    reverse = direction == 1
    factors = step_factors(cap.gate_names, None if cap.gates is None else cap.gates[layer, direction])
    if factors is not None and cap.paths is not None and "dh" in cap.path_names:
        per_unit = cap.paths[layer, direction, cap.path_names.index("dh")]   # (T, H)
        last = per_unit[0] if reverse else per_unit[-1]
        values = factor_product(last, factors, reverse)
        # With gradient entering before the last step (a loss at every step, or a lower
        # layer fed by the one above at every t) the product is only the part carried from
        # the last step, and the measured curve lies above it: the label says so.
        local = cap.dout_norm[layer, direction] if cap.dout_norm is not None else None
        early = None if local is None else (local[1:] if reverse else local[:-1])
        alone = "carried from T−1 alone: " if early is not None and np.any(early > 0) else ""
        return "h", (f"{alone}‖∂L/∂h_T−1‖ ⊙ ∏ {FACTOR_WORDS[tuple(cap.gate_names)]} "
                     f"(step {cap.step})"), values
    if cap.gate_names == ("h",):
        if cap.dout_norm is None:
            return None
        gs = block_gamma(cap.rho_names[0]) * float(cap.sigma_max[layer, direction, 0])
        values = rnn_unrolled_bound(cap.dh_norm[layer, direction],
                                    cap.dout_norm[layer, direction], gs, reverse)
        return "h", f"bound, γσ_max = {gs:.3g} (step {cap.step})", values
    if "f" in cap.gate_names and cap.dc_norm is not None and cap.gates is not None:
        f = cap.gates[layer, direction, cap.gate_names.index("f")].astype(np.float64)
        values = forget_product(cap.dc_norm[layer, direction], f.mean(-1), reverse)
        # Only what the cell state's belt carries back from the last step: ∂L/∂c_t also
        # gets gradient through h_t at every t, so the measured curve lies above it.
        return "c", f"belt alone: ‖∂L/∂c_T−1‖·∏ f (step {cap.step})", values
    return None


class BoundsOverlay:
    """A dashed curve over the h_t plot and one over the c_t plot, and their toggle."""

    def __init__(self, plot_h: pg.PlotItem, plot_c: pg.PlotItem, toolbar: QtWidgets.QWidget):
        self.toggle = QtWidgets.QCheckBox("theory")
        self.toggle.setChecked(True)
        self.toggle.setToolTip("Draw the chain-rule bound (plain RNNs) or the product of the "
                               "forget gates (LSTM cells) over the measured curves")
        toolbar.addWidget(self.toggle)
        self.curves = {}
        for name, plot in (("h", plot_h), ("c", plot_c)):
            item = pg.PlotDataItem(pen=pen(BOUND_COLOUR, width=2.0,
                                           style=QtCore.Qt.PenStyle.DashLine),
                                   skipFiniteCheck=True)
            # A guide: the axes keep fitting the measurements.
            plot.addItem(item, ignoreBounds=True)
            self.curves[name] = item
        self.key = ColourKey()          # names what is drawn; empty (no room) otherwise
        self.label = ""
        self.values: np.ndarray | None = None

    def update(self, cap: Capture | None, layer: int, direction: int) -> None:
        self.clear()
        if cap is None or not self.toggle.isChecked():
            return
        shown = overlay_values(cap, layer, direction)
        if shown is None:
            return
        name, self.label, self.values = shown
        t = np.arange(len(self.values), dtype=np.float64)
        self.curves[name].setData(*positive_finite(t, self.values))
        self.key.set_entries([(BOUND_COLOUR, "line", self.label)], title="theory")

    def clear(self) -> None:
        for item in self.curves.values():
            item.setData([], [])
        self.key.set_entries([])
        self.label, self.values = "", None
