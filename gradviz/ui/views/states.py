"""Hidden-state (and LSTM cell-state) trajectories of the fixed probe sequence over t,
for a chosen range of units, from the newest full capture."""
from __future__ import annotations

import numpy as np
from PyQt6 import QtWidgets

from gradviz.ui.views.data import finite_points
from gradviz.ui.views.items import ColourKey, curve
from gradviz.ui.views.style import colour, pen, style_plot
from gradviz.ui.views.view import View

MAX_UNITS = 16
DEFAULT_UNITS = 8


class StatesView(View):
    key = "states"
    title = "Hidden states of the probe sequence"
    help_text = (
        "The hidden state hₜ (and an LSTM's cell state cₜ) of a few units while the "
        "network reads one fixed probe sequence, against the timestep t; choose which "
        "units with the control above. Flat lines that forget their start show a "
        "network that cannot carry information; curves pinned at +1 or -1 are tanh "
        "units in saturation, where the gradient vanishes. Values that grow without "
        "bound are a ReLU network exploding. The probe is the same sequence at every "
        "step, so the curves change only because the weights do.")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.selector = self._add_selector()
        self.first_unit = QtWidgets.QSpinBox(self)
        self.first_unit.setRange(0, 0)
        self.first_unit.setToolTip("First hidden unit shown")
        self.unit_count = QtWidgets.QSpinBox(self)
        self.unit_count.setRange(1, MAX_UNITS)
        self.unit_count.setValue(DEFAULT_UNITS)
        self.unit_count.setToolTip(f"How many units to show (at most {MAX_UNITS})")
        for label, box in (("units from", self.first_unit), ("count", self.unit_count)):
            self.toolbar.addWidget(QtWidgets.QLabel(label))
            self.toolbar.addWidget(box)
            box.valueChanged.connect(self._redraw)
        canvas = self._add_graphics()
        # One key for both plots: a unit has the same colour in each.
        self.colour_key = ColourKey()
        canvas.addItem(self.colour_key, row=0, col=0, colspan=2)
        self.plot_h = canvas.addPlot(row=1, col=0)
        style_plot(self.plot_h, "timestep t", "hₜ (activation)")
        self.plot_c = canvas.addPlot(row=1, col=1)
        style_plot(self.plot_c, "timestep t", "cₜ (cell state)")
        self.plot_c.setXLink(self.plot_h)
        self.curves_h = [curve(self.plot_h, pen(i)) for i in range(MAX_UNITS)]
        self.curves_c = [curve(self.plot_c, pen(i)) for i in range(MAX_UNITS)]
        self._c_shown = True
        self._show_cell_plot(False)

    def units(self) -> list[int]:
        """The hidden units drawn, given the spin boxes and the number of units."""
        latest = self._latest
        if latest is None or latest.probe_h is None:
            return []
        H = latest.probe_h.shape[3]
        first = min(self.first_unit.value(), H - 1)
        return list(range(first, min(first + self.unit_count.value(), H)))

    def _clear_items(self) -> None:
        for item in self.curves_h + self.curves_c:
            item.setData([], [])
        self.colour_key.set_entries([])

    def _redraw(self) -> None:
        latest = self._latest
        if latest is None or latest.probe_h is None:
            self._clear_items()
            return
        L, D, T, H = latest.probe_h.shape
        self.selector.set_shape(L, D)
        self.first_unit.blockSignals(True)
        self.first_unit.setMaximum(H - 1)
        self.first_unit.blockSignals(False)
        layer, direction = self.selector.layer_direction
        units = self.units()
        t = np.arange(T, dtype=np.float64)
        has_c = latest.probe_c is not None
        self._show_cell_plot(has_c)
        for items, data in ((self.curves_h, latest.probe_h),
                            (self.curves_c, latest.probe_c if has_c else None)):
            shown = len(units) if data is not None else 0
            for slot in range(shown):
                items[slot].setData(*finite_points(t, data[layer, direction, :, units[slot]]))
            for item in items[shown:]:
                if item.xData is not None and len(item.xData):
                    item.setData([], [])
        self.colour_key.set_entries(
            [(colour(slot), "line", str(unit)) for slot, unit in enumerate(units)], title="unit")

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        """One row per timestep: h_t (and c_t) of each unit shown."""
        latest = self._latest
        units = self.units()
        if not units:
            return ["t"], np.zeros((0, 1))
        layer, direction = self.selector.layer_direction
        T = latest.probe_h.shape[2]
        header = ["t"] + [f"h unit {u}" for u in units]
        columns = [np.arange(T)] + [latest.probe_h[layer, direction, :, u] for u in units]
        if latest.probe_c is not None:
            header += [f"c unit {u}" for u in units]
            columns += [latest.probe_c[layer, direction, :, u] for u in units]
        return header, np.column_stack(columns).astype(np.float64)
