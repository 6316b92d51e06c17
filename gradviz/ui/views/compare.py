"""What views draw besides the live run: comparison runs, dimmed and behind it, and a mark
at the training step the timeline shows.

Comparison curves are light, opaque colours (translucent lines are slow to paint, see
:func:`~.style.pen`), thin, and under the live run's curves, so the live run stays what
the eye reads first; the key names each by what differs from the live run.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore

from gradviz.ui.views.items import curve
from gradviz.ui.views.style import INK, pen

# Light tints that stay apart from each other and from the live run's saturated colours.
COMPARISON_COLOURS = ("#9a9a9a", "#f0b27a", "#8fcf99", "#c7a6e6")
# Below the live run's curves (z 0) and above the grid.
COMPARISON_Z = -0.5
MARKER_COLOUR = INK


def comparison_colour(index: int) -> str:
    return COMPARISON_COLOURS[index % len(COMPARISON_COLOURS)]


class ComparisonCurves:
    """A pool of dimmed curves in ``plot``, one per comparison run drawn; made as needed,
    emptied (not removed) when fewer runs are drawn."""

    def __init__(self, plot: pg.PlotItem, width: float = 1.5):
        self.plot = plot
        self.width = width
        self.items: list[pg.PlotDataItem] = []

    def set(self, curves: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        """``curves``: (colour index, x, y) of each, the data sanitised as for
        :func:`~.items.curve`."""
        while len(self.items) < len(curves):
            item = curve(self.plot, pen(comparison_colour(0), width=self.width))
            item.setZValue(COMPARISON_Z)
            self.items.append(item)
        for item, (index, x, y) in zip(self.items, curves):
            colour = comparison_colour(index)
            if item.opts["pen"].color().name() != colour:
                item.setPen(pen(colour, width=self.width))
            item.setData(x, y)
        for item in self.items[len(curves):]:
            if item.xData is not None and len(item.xData):
                item.setData([], [])

    def clear(self) -> None:
        self.set([])


class StepMarker:
    """A dashed vertical line in ``plot`` at the training step the timeline shows; hidden
    while the timeline follows the newest step. It does not stretch the plot's range."""

    def __init__(self, plot: pg.PlotItem):
        self.line = pg.InfiniteLine(angle=90, movable=False,
                                    pen=pen(MARKER_COLOUR, width=1.0,
                                            style=QtCore.Qt.PenStyle.DashLine))
        self.line.setZValue(10)
        plot.addItem(self.line, ignoreBounds=True)
        self.line.hide()

    @property
    def step(self) -> float | None:
        return float(self.line.value()) if self.line.isVisible() else None

    def set_step(self, step: float | None) -> None:
        if step is None:
            self.line.hide()
            return
        self.line.setValue(float(step))
        self.line.show()


def key_entries(comparisons, live_label: str, live_entry: tuple[str, str, str]) -> list:
    """Key entries naming the live run and each comparison run by what differs: the live
    run's entry gets its label appended; none are added without comparisons."""
    if not comparisons:
        return [live_entry]
    colour, sample, label = live_entry
    return [(colour, sample, f"{label}: {live_label}")] + [
        (comparison_colour(c.index), "line", c.label) for c in comparisons]


__all__ = ["ComparisonCurves", "StepMarker", "COMPARISON_COLOURS", "comparison_colour",
           "key_entries"]
