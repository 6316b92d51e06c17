"""Gate saturation over training, and per unit for the newest full capture.

Top: for each gate, the fraction of its activations in the bottom 10% of its range
(solid) and in the top 10% (dashed), averaged over t, against the training step (the
history's ``sat_low``/``sat_high`` rows; rows of light captures have none and leave gaps).
Bottom (Karpathy, Johnson & Fei-Fei 2015, Fig. 4): one dot per unit of the chosen gate,
the fraction of timesteps at which its batch-mean activation is left-saturated (x) and
right-saturated (y).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from gradviz.registry import saturation_bounds
from gradviz.ui.views.data import finite_points
from gradviz.ui.views.gates import GATE_DESCRIPTIONS
from gradviz.ui.views.items import ColourKey, WrappedText, curve
from gradviz.ui.views.style import colour, pen, style_plot
from gradviz.ui.views.view import View


def unit_saturation(gates: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the fraction of timesteps whose activation is in the bottom and in the top
    10% of [lo, hi]. ``gates`` (T, H) -> two (H,) arrays."""
    low, high = saturation_bounds(lo, hi)
    return (gates < low).mean(axis=0), (gates > high).mean(axis=0)


class SaturationView(View):
    key = "saturation"
    title = "Gate saturation"
    page = "Why"
    help_text = (
        "Top: for every gate of the chosen layer, the fraction of its activations in the bottom "
        "10% of its range (solid, e.g. σ < 0.1) and in the top 10% (dashed, σ > 0.9), averaged "
        "over the timesteps, against the training step; one colour per gate. Bottom: one dot "
        "per unit of the chosen gate at the newest full capture, at the fraction of timesteps "
        "its batch-mean activation is left-saturated (x) and right-saturated (y). A saturated "
        "gate passes almost no gradient (σ′ and tanh′ are near 0 there): dots in a corner are "
        "units that switch hard; a forget gate right-saturated is one that remembers "
        "(Karpathy, Johnson & Fei-Fei 2015).")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.selector = self._add_selector()
        self.gate_combo = QtWidgets.QComboBox(self)
        # As wide as its longest item ("i — input gate"), which arrives with the first data.
        self.gate_combo.setSizeAdjustPolicy(
            QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.gate_combo.setToolTip("Which gate's units the scatter shows")
        self.gate_combo.currentIndexChanged.connect(self._redraw)
        self.toolbar.addWidget(QtWidgets.QLabel("gate:"))
        self.toolbar.addWidget(self.gate_combo)
        canvas = self._add_graphics()
        self.key_item = ColourKey()
        canvas.addItem(self.key_item, row=0, col=0)
        self.plot = canvas.addPlot(row=1, col=0)
        style_plot(self.plot, "training step", "saturated")
        self._fix_y_range(self.plot, 0.0, 1.0)
        self.heading = WrappedText(size_pt=11)
        canvas.addItem(self.heading, row=2, col=0)
        self.scatter_plot = canvas.addPlot(row=3, col=0)
        style_plot(self.scatter_plot, "left-saturated (fraction of t)", "right-sat.")
        self._fix_x_range(self.scatter_plot, 0.0, 1.0)
        self._fix_y_range(self.scatter_plot, 0.0, 1.0)
        self.scatter = pg.ScatterPlotItem(size=9, pen=pg.mkPen("k"), brush=pg.mkBrush(colour(0)))
        self.scatter_plot.addItem(self.scatter)
        self.low_curves: list = []
        self.high_curves: list = []

    def _curves(self, n: int) -> None:
        while len(self.low_curves) < n:
            i = len(self.low_curves)
            self.low_curves.append(curve(self.plot, pen(i, width=2.0)))
            self.high_curves.append(curve(self.plot, pen(i, style=QtCore.Qt.PenStyle.DashLine)))

    def _set_gates(self, names: tuple[str, ...]) -> None:
        if tuple(self.gate_combo.itemData(i) for i in range(self.gate_combo.count())) == names:
            return
        keep = self.gate_combo.currentData()
        self.gate_combo.blockSignals(True)
        self.gate_combo.clear()
        for name in names:
            self.gate_combo.addItem(f"{name} — {GATE_DESCRIPTIONS.get(name, 'gate')}", name)
        self.gate_combo.setCurrentIndex(max(self.gate_combo.findData(keep), 0))
        self.gate_combo.blockSignals(False)
        self.toolbar.relayout()      # its new width, also while the page is not shown

    def _clear_items(self) -> None:
        for item in self.low_curves + self.high_curves:
            item.setData([], [])
        self.scatter.setData([], [])
        self.key_item.set_entries([])
        self.heading.set_text("")

    def _redraw(self) -> None:
        history = self._history
        if history is None or len(history) == 0:
            self._clear_items()
            return
        _, L, D, G = history.sat_low.shape
        self.selector.set_shape(L, D)
        layer, direction = self.selector.layer_direction
        names = tuple(history.gate_names)
        self._set_gates(names)
        self._curves(G)
        steps = history.step.astype(np.float64)
        for g in range(G):
            self.low_curves[g].setData(*finite_points(steps, history.sat_low[:, layer, direction, g]))
            self.high_curves[g].setData(*finite_points(steps, history.sat_high[:, layer, direction, g]))
        self.key_item.set_entries([(colour(g), "line", names[g]) for g in range(G)],
                                  title="solid bottom 10%, dashed top 10%")
        self._draw_scatter(layer, direction)

    def _draw_scatter(self, layer: int, direction: int) -> None:
        latest = self._latest
        if latest is None or latest.gates is None:
            self.scatter.setData([], [])
            self.heading.set_text("")
            return
        gate = max(self.gate_combo.currentIndex(), 0)
        low, high = self.unit_fractions(layer, direction, gate)
        self.scatter.setData(low, high)
        name = latest.gate_names[gate]
        self.heading.set_text(f"{name} per unit, step {latest.step}")

    def unit_fractions(self, layer: int, direction: int, gate: int) -> tuple[np.ndarray, np.ndarray]:
        """The scatter's (H,) x and y for a gate of the newest full capture."""
        latest = self._latest
        lo, hi = latest.gate_ranges[gate]
        return unit_saturation(latest.gates[layer, direction, gate], lo, hi)

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        """One row per history row: the step, then every gate's bottom and top fractions."""
        history = self._history
        if history is None or len(history) == 0:
            return ["step"], np.zeros((0, 1))
        layer, direction = self.selector.layer_direction
        names = history.gate_names
        header = (["step"] + [f"{n} bottom 10%" for n in names]
                  + [f"{n} top 10%" for n in names])
        rows = np.column_stack([history.step, history.sat_low[:, layer, direction],
                                history.sat_high[:, layer, direction]]).astype(np.float64)
        return header, rows
