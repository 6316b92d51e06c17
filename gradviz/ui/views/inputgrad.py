"""Input attribution over the gradient-through-time plot: ‖∂L/∂x_t‖, the gradient reaching
the input at each timestep, as one dashed curve on the ‖∂L/∂h_t‖ axes, for runs that
recorded it (gradviz.capture, gradviz.watch and gradviz.trace's ``inputs``)."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore

from gradviz.ui.views.data import positive_finite
from gradviz.ui.views.items import curve
from gradviz.ui.views.style import pen

INPUT_COLOUR = "#e07b00"
INPUT_LABEL = "‖∂L/∂xₜ‖ (input)"


class InputOverlay:
    """The dashed ‖∂L/∂x_t‖ curve of the step drawn bold, on ``plot``."""

    def __init__(self, plot: pg.PlotItem):
        line = pen(INPUT_COLOUR, width=1.8)
        line.setStyle(QtCore.Qt.PenStyle.DashLine)
        self.item = curve(plot, line)
        self._shown: tuple | None = None

    def update(self, dx_norm: np.ndarray | None) -> bool:
        """Draw ``dx_norm`` (T,) (None or all NaN: nothing); True if a curve is drawn."""
        values = None if dx_norm is None else np.asarray(dx_norm, np.float64)
        if values is None or not np.isfinite(values).any():
            if self._shown is not None:
                self.item.setData([], [])
                self._shown = None
            return False
        key = (len(values), values.tobytes())
        if key != self._shown:
            self.item.setData(*positive_finite(np.arange(len(values), dtype=np.float64), values))
            self._shown = key
        return True

    @property
    def entry(self) -> tuple[str, str, str]:
        """The colour key's entry for the curve."""
        return (INPUT_COLOUR, "line", INPUT_LABEL)


__all__ = ["InputOverlay", "INPUT_LABEL"]
