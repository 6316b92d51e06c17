"""What views draw besides the live run: comparison runs, dimmed and behind it, and a mark
at the training step the timeline shows.

Comparison curves are light, opaque colours (translucent lines are slow to paint, see
:func:`~.style.pen`), thin, and under the live run's curves, so the live run stays what
the eye reads first; the key names each by what differs from the live run.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore

from gradviz.ui.views.items import curve
from gradviz.ui.views.style import INK, pen

# Light tints that stay apart from each other, from the live run's saturated colours and
# from the greys of gradient-through-time's earlier steps.
COMPARISON_COLOURS = ("#f0a35e", "#7cc68a", "#c7a6e6", "#e89ab8")
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
        self._keys: list[object] = []

    def set(self, curves: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        """``curves``: (colour index, x, y) of each, the data sanitised as for
        :func:`~.items.curve`."""
        self.set_lazily([(index, None, lambda x=x, y=y: (x, y)) for index, x, y in curves])

    def set_lazily(self, curves: list[tuple[int, object, Callable]]) -> None:
        """``curves``: (colour index, key, make) of each: ``make()`` gives the (x, y) to
        draw, and is called only when ``key`` (None: always) differs from the key the curve
        was last drawn with. Comparison runs do not change, so their curves are made once,
        not on every frame."""
        while len(self.items) < len(curves):
            item = curve(self.plot, pen(comparison_colour(0), width=self.width))
            item.setZValue(COMPARISON_Z)
            self.items.append(item)
            self._keys.append(None)
        for slot, (item, (index, key, make)) in enumerate(zip(self.items, curves)):
            colour = comparison_colour(index)
            if item.opts["pen"].color().name() != colour:
                item.setPen(pen(colour, width=self.width))
            if key is None or key != self._keys[slot]:
                item.setData(*make())
                self._keys[slot] = key
        for slot in range(len(curves), len(self.items)):
            item = self.items[slot]
            self._keys[slot] = None
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


def run_key(c, *more) -> tuple:
    """What identifies what a comparison run's curve shows: its record (which does not
    change while shown) and its place, and ``more`` (e.g. the layer)."""
    return (id(c.history), len(c.history), c.index, *more)


def key_entries(comparisons, live_label: str, live_entry: tuple[str, str, str]) -> list:
    """Key entries naming the live run and each comparison run by what differs: the live
    run's entry gets its label appended; none are added without comparisons."""
    if not comparisons:
        return [live_entry]
    colour, sample, label = live_entry
    return [(colour, sample, f"{label}: {live_label}")] + [
        (comparison_colour(c.index), "line", c.label) for c in comparisons]


__all__ = ["ComparisonCurves", "StepMarker", "run_key", "COMPARISON_COLOURS", "comparison_colour",
           "key_entries"]
