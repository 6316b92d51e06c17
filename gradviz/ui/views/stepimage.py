"""A heatmap whose columns are history rows on a linear training-step axis.

A history row covers the steps since the row before it: one step while rows are fresh,
several once old rows were merged (:class:`~gradviz.engine.runs.history.History`). So that the
axis stays linear in steps, and lines up with the loss and gradient-norm plots, each row
is drawn as wide as the steps it covers: the rows fall into runs of equal width
(*segments*: the merged blocks, then the fresh rows), and each segment is one ImageItem
stretched over its steps. There are few segments (merging makes blocks of one size), so
drawing costs what one image did.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore


def column_edges(steps: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(K + 1,) x edges of the columns of rows with (K,) ``steps`` (the last step of
    each row) and ``counts`` (captures it holds): row k spans (steps[k-1], steps[k]],
    drawn from steps[k-1] + 0.5 to steps[k] + 0.5, so a one-step row is centred on its
    step; the first row reaches back over its count."""
    steps = np.asarray(steps, dtype=np.float64)
    if len(steps) == 0:
        return np.zeros(1)
    first = steps[0] - max(1, int(counts[0])) + 0.5
    return np.concatenate([[first], steps + 0.5])


def segments(edges: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of columns of equal width, given their (K + 1,) ``edges``."""
    widths = np.diff(edges)
    if len(widths) == 0:
        return []
    cuts = np.flatnonzero(widths[1:] != widths[:-1]) + 1
    bounds = np.concatenate([[0], cuts, [len(widths)]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


class SteppedImage:
    """The columns of a (K, T) uint8 colour-index image in ``plot``, each as wide as the
    training steps its history row covers; cell (row k, t) spans t - 0.5 … t + 0.5."""

    def __init__(self, plot: pg.PlotItem, lut: np.ndarray):
        self.plot = plot
        self.lut = lut
        self.items: list[pg.ImageItem] = []
        self.edges = np.zeros(1)

    def set_image(self, index: np.ndarray, steps: np.ndarray, counts: np.ndarray) -> None:
        """``index``: (K, T) uint8; ``steps``, ``counts``: (K,) of the history rows."""
        self.edges = column_edges(steps, counts)
        runs = segments(self.edges)
        while len(self.items) < len(runs):
            item = pg.ImageItem(axisOrder="col-major")
            item.setLookupTable(self.lut)
            self.plot.addItem(item)
            self.items.append(item)
        T = index.shape[1]
        for item, (a, b) in zip(self.items, runs):
            item.setImage(index[a:b], autoLevels=False, levels=(0, 255))
            item.setRect(QtCore.QRectF(self.edges[a], -0.5, self.edges[b] - self.edges[a],
                                       float(T)))
            item.show()
        for item in self.items[len(runs):]:
            item.clear()
            item.hide()

    def clear(self) -> None:
        for item in self.items:
            item.clear()
            item.hide()
        self.edges = np.zeros(1)

    def column_at(self, x: float) -> int | None:
        """The row whose column covers x (a training step), None outside the image."""
        if len(self.edges) < 2 or not self.edges[0] <= x < self.edges[-1]:
            return None
        return int(np.searchsorted(self.edges, x, side="right")) - 1


__all__ = ["SteppedImage", "column_edges", "segments"]
