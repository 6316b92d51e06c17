"""Gate activations at the step the timeline shows (the newest full capture while it
follows): a timestep x unit heatmap of one gate, with fixed colour levels (the gate's own
range), and below it the fraction of saturated activations per timestep. With "compare"
checked, the newest comparison run's same gate at its nearest step is drawn under the
heatmap, on the same axes and colour scale.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtWidgets

from gradviz.registry import saturation_bounds
from gradviz.ui.views.axes import EDGE_LABEL_PX
from gradviz.ui.views.data import finite_points
from gradviz.ui.views.items import ColourKey, WrappedText, curve
from gradviz.ui.views.style import LABEL_STYLE, colour, pen, style_colorbar, style_plot
from gradviz.ui.views.view import View, join_groups

GATE_DESCRIPTIONS = {
    "i": "input gate", "f": "forget gate", "g": "cell candidate", "o": "output gate",
    "r": "reset gate", "z": "update gate", "n": "new-state candidate", "h": "hidden state",
}

LEFT_AXIS_WIDTH = 80
SAT_HEIGHT = 100
SAT_MIN_HEIGHT = 56
SAT_LABEL_OVERHANG = 12


def colour_map(lo: float, hi: float) -> pg.ColorMap:
    """Diverging colours for ranges centred on 0 (tanh), sequential otherwise."""
    return pg.colormap.get("CET-D1" if lo < 0 < hi and abs(lo + hi) < 1e-9 else "viridis")


def saturation_labels(lo: float, hi: float) -> list[tuple[str, str, str]]:
    """Key entries of the saturation curves: the fraction of activations in the bottom
    and in the top 10% of the gate's range [lo, hi] (the engine's definition)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return [(colour(0), "line", "in the bottom 10%"), (colour(3), "line", "in the top 10%")]
    low, high = saturation_bounds(lo, hi)
    return [(colour(0), "line", f"< {low:.3g}"), (colour(3), "line", f"> {high:.3g}")]


class GatesView(View):
    key = "gates"
    title = "Gate activations"
    help_text = (
        "One gate's activations for the newest full capture: the x axis is the timestep "
        "t, the y axis the hidden unit, and the colour the gate's value averaged over "
        "the batch, on the gate's own fixed range (0 to 1 for sigmoid gates, -1 to 1 "
        "for tanh). The curves below give the fraction of activations saturated near "
        "either end of the range at each t. A saturated gate has a derivative near "
        "zero, so the gradient through it vanishes; a forget gate held near 1 is what "
        "lets an LSTM keep its cell state, and its gradient, over long spans.")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.selector = self._add_selector()
        self.gate_combo = QtWidgets.QComboBox(self)
        self.gate_combo.setToolTip("Which gate of the cell to show")
        self.gate_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.gate_combo.currentIndexChanged.connect(self._redraw)
        self.toolbar.addWidget(QtWidgets.QLabel("gate:"))
        self.toolbar.addWidget(self.gate_combo)
        self.compare_box = QtWidgets.QCheckBox("compare", self)
        self.compare_box.setToolTip("Show the newest comparison run's same gate below, on the "
                                    "same axes and colour scale")
        self.compare_box.toggled.connect(self._redraw)
        self.toolbar.addWidget(self.compare_box)
        canvas = self._add_graphics()
        self.heading = WrappedText(size_pt=12)
        canvas.addItem(self.heading, row=0, col=0, colspan=2)
        self.heat = canvas.addPlot(row=1, col=0)
        style_plot(self.heat, "timestep t", "hidden unit", grid=False)
        self.heat.getViewBox().setDefaultPadding(0.0)     # the axes end where the image does
        self.heat.getAxis("bottom").setStyle(hideOverlappingLabels=EDGE_LABEL_PX)
        self.image = pg.ImageItem(axisOrder="col-major")
        self.heat.addItem(self.image)
        self.bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=colour_map(0.0, 1.0),
                                   interactive=False, colorMapMenu=False)
        style_colorbar(self.bar, "activation")
        self.bar.setImageItem(self.image)
        self._range = (0.0, 1.0)
        canvas.addItem(self.bar, row=1, col=1)
        # Row 2 holds the comparison's heatmap while "compare" is on.
        self.other = pg.PlotItem()
        style_plot(self.other, "timestep t", "hidden unit", grid=False)
        self.other.getViewBox().setDefaultPadding(0.0)
        self.other.getAxis("bottom").setStyle(hideOverlappingLabels=EDGE_LABEL_PX)
        self.other.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
        self.other.setXLink(self.heat)
        self.other.setYLink(self.heat)
        self.other_image = pg.ImageItem(axisOrder="col-major")
        self.other.addItem(self.other_image)
        self.bar.setImageItem([self.image, self.other_image])
        self._stacked = False
        self.sat = canvas.addPlot(row=3, col=0)
        style_plot(self.sat, "timestep t", "fraction")
        # Beside the curves, under the colour bar: a row of its own would take the height
        # the heatmap needs.
        self.sat_key = ColourKey(column=True)
        canvas.addItem(self.sat_key, row=3, col=1)
        self.sat.setXLink(self.heat)
        for plot in (self.heat, self.sat):   # equal axis widths keep timestep t aligned
            plot.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
        self._fix_y_range(self.sat, -0.05, 1.05)
        # Three labels fit the short plot (pyqtgraph's five overlap); with no grid lines
        # from it, the axis may draw the 0 and 1 labels a little past its ends.
        sat_axis = self.sat.getAxis("left")
        sat_axis.setGrid(False)
        sat_axis.setStyle(hideOverlappingLabels=SAT_LABEL_OVERHANG)
        self.low_curve = curve(self.sat, pen(0, width=2.0))
        self.high_curve = curve(self.sat, pen(3, width=2.0))
        # The heatmap is what the view is about: it takes all the height the saturation
        # curves, at a fixed height, leave.
        self._fit_sat_height()
        # The saturation plot below shows the same timestep axis: the heatmap's own would
        # take 40 px of a small panel's height for labels said twice.
        self.heat.getAxis("bottom").setStyle(showValues=False)
        self.heat.setLabel("bottom", "")

    def _fit_sat_height(self) -> None:
        """The curves take at most a third of a small panel (a projector's 720 lines give
        each panel ~200 px), never more than SAT_HEIGHT."""
        height = self.graphics.height() if self.graphics.height() > 0 else 400
        sat = int(min(SAT_HEIGHT, max(SAT_MIN_HEIGHT, height * 0.3)))
        self.sat.setMinimumHeight(sat)
        self.sat.setMaximumHeight(sat)
        # 0.5 between 0 and 1 once there is room for three labels, not before.
        roomy = sat >= SAT_HEIGHT * 0.8
        marks = (0.0, 0.5, 1.0) if roomy else (0.0, 1.0)
        self.sat.getAxis("left").setTicks([[(v, f"{v:g}") for v in marks]])
        # A short plot's axis title would run into the heatmap's ("hidden unit").
        self.sat.setLabel("left", "fraction" if roomy else "", **LABEL_STYLE)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_sat_height()

    @property
    def gate_names(self) -> list[str]:
        """The gates the selector offers, in the cell's order."""
        return [self.gate_combo.itemData(i) for i in range(self.gate_combo.count())]

    def _set_gates(self, names: tuple[str, ...]) -> None:
        if tuple(self.gate_names) == tuple(names):
            return
        keep = self.gate_combo.currentData()
        self.gate_combo.blockSignals(True)
        self.gate_combo.clear()
        for name in names:
            self.gate_combo.addItem(f"{name} — {GATE_DESCRIPTIONS.get(name, 'gate')}", name)
        self.gate_combo.setCurrentIndex(max(self.gate_combo.findData(keep), 0))
        self.gate_combo.blockSignals(False)

    def _selection(self) -> tuple[int, int, int]:
        layer, direction = self.selector.layer_direction
        return layer, direction, max(self.gate_combo.currentIndex(), 0)

    def _clear_items(self) -> None:
        self.image.clear()
        self.low_curve.setData([], [])
        self.high_curve.setData([], [])
        self.heading.set_text("")
        self.sat_key.set_entries([])
        self._show_other(None, "")

    def _show_other(self, values: np.ndarray | None, title: str) -> None:
        """The comparison's (T, H) gate activations under the heatmap, or None: none."""
        if (values is not None) != self._stacked:
            if values is None:
                self.canvas.removeItem(self.other)
            else:
                self.canvas.addItem(self.other, row=2, col=0)
            self.other.setVisible(values is not None)
            self._stacked = values is not None
        if values is None:
            self.other_image.clear()
            return
        self.other_image.setImage(values, autoLevels=False)
        self.other_image.setRect(-0.5, -0.5, float(values.shape[0]), float(values.shape[1]))
        self.other.setTitle(title, size="11pt", color="#000000")

    def _other_gate(self, name: str) -> tuple[np.ndarray | None, str]:
        """The newest comparison run's activations of gate ``name`` at its step shown, if
        "compare" is on and it has that gate; and what to call them."""
        if not (self.compare_box.isChecked() and self._comparisons):
            return None, ""
        c = self._comparisons[0]
        capture = c.capture
        layer, direction = self.selector.layer_direction
        if (capture is None or capture.gates is None or name not in capture.gate_names
                or layer >= capture.gates.shape[0] or direction >= capture.gates.shape[1]):
            return None, ""
        values = capture.gates[layer, direction, capture.gate_names.index(name)]
        return values, f"{c.label}, step {capture.step}"

    def _levels(self, gate: int, values: np.ndarray) -> tuple[float, float]:
        """The gate's fixed range; data-driven only where the range is unbounded."""
        lo, hi = (float(v) for v in self._latest.gate_ranges[gate])
        if not (np.isfinite(lo) and np.isfinite(hi)):
            finite = values[np.isfinite(values)]
            lo = lo if np.isfinite(lo) else float(finite.min()) if finite.size else 0.0
            hi = hi if np.isfinite(hi) else float(finite.max()) if finite.size else 1.0
        return (lo, hi) if hi > lo else (lo, lo + 1.0)

    def _redraw(self) -> None:
        latest = self._latest
        self.compare_box.setEnabled(bool(self._comparisons))
        if latest is None or latest.gates is None:
            self._clear_items()
            return
        L, D, G, T, H = latest.gates.shape
        self.selector.set_shape(L, D)
        self._set_gates(tuple(latest.gate_names))
        layer, direction, gate = self._selection()
        values = latest.gates[layer, direction, gate]
        lo, hi = self._levels(gate, values)
        if (lo, hi) != self._range:
            self.bar.setColorMap(colour_map(lo, hi))
            self._range = (lo, hi)
        self.image.setImage(values, autoLevels=False)
        self._show_other(*self._other_gate(latest.gate_names[gate]))
        self.bar.setLevels((lo, hi))
        # Cell (t, unit) is centred on (t, unit), in line with the saturation curves below.
        self.image.setRect(-0.5, -0.5, float(T), float(H))
        name = latest.gate_names[gate]
        self.heading.set_text(f"{name} ({GATE_DESCRIPTIONS.get(name, 'gate')}), "
                              f"step {latest.step}")
        t = np.arange(T, dtype=np.float64)
        low = latest.sat_low[layer, direction, gate]
        high = latest.sat_high[layer, direction, gate]
        self.low_curve.setData(*finite_points(t, low))
        self.high_curve.setData(*finite_points(t, high))
        self.sat_key.set_entries(saturation_labels(*(float(v) for v in latest.gate_ranges[gate])),
                                 title="activation")

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        """One row per timestep: the shown gate's batch-mean activation of every unit, and
        the fractions of activations in the bottom and top 10% of the gate's range."""
        latest = self._latest
        if latest is None or latest.gates is None:
            return ["t"], np.zeros((0, 1))
        layer, direction, gate = self._selection()
        values = latest.gates[layer, direction, gate]
        T, H = values.shape
        header = ["t"] + [f"unit {u}" for u in range(H)] + ["saturated low", "saturated high"]
        rows = np.column_stack([np.arange(T), values, latest.sat_low[layer, direction, gate],
                                latest.sat_high[layer, direction, gate]]).astype(np.float64)
        other, _ = self._other_gate(latest.gate_names[gate])
        if other is None:
            return header, rows
        # The comparison's heatmap drawn below: its units beside, named by its label.
        c = self._comparisons[0]
        other_header = ["t"] + [f"unit {u}" for u in range(other.shape[1])]
        other_rows = np.column_stack([np.arange(len(other)), other]).astype(np.float64)
        return join_groups([(self._live_label, header, rows), (c.label, other_header, other_rows)])
