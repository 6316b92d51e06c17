"""The Sweep view: a sweep's success rate against the sequence length T, one curve per
cell (and per varied value), with the 95% Wilson interval over seeds as error bars and the
median step of success, dashed, on a second axis at the right. It reads the sweep folder
(sweep.json, sweep.csv; :mod:`gradviz.sweep.results`) and, refreshed while the sweep
runs, fills in as runs finish.

:func:`write_sweep_figures` writes it headless as PNG, SVG and CSV (``gradviz sweep
--figures DIR``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from gradviz.sweep.grid import Grid, load_grid
from gradviz.sweep.results import RESULTS_FILE, Point, curves, read_rows
from gradviz.ui import export
from gradviz.ui.views.style import BACKGROUND, INK, LABEL_STYLE, colour, pen, style_plot

TABLE_HEADER = ["curve", "seq_len", "runs", "successes", "failed", "success_rate",
                "wilson_low", "wilson_high", "median_success_step"]
FIGURE_NAME = "sweep"


class SweepPlot(pg.GraphicsLayoutWidget):
    """The figure: success rate (left axis) and median step of success (right axis)
    against T."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setBackground(BACKGROUND)
        self.title = self.addLabel("", row=0, col=0, color=INK, size="12pt")
        self.plot = self.addPlot(row=1, col=0)
        style_plot(self.plot, "sequence length T (log scale)", "success rate over seeds (95% Wilson)")
        self.plot.setYRange(-0.02, 1.02, padding=0)
        self.plot.getViewBox().setLimits(yMin=-0.05, yMax=1.05)
        self.legend = self.plot.addLegend(offset=(-10, 10), labelTextColor=INK)
        # The median step of success, on its own axis and view box at the right.
        self.steps_box = pg.ViewBox()
        self.plot.showAxis("right")
        self.plot.scene().addItem(self.steps_box)
        right = self.plot.getAxis("right")
        right.linkToView(self.steps_box)
        right.setLabel("median step of success (dashed)", **LABEL_STYLE)
        right.setTextPen(pg.mkPen(INK))
        self.steps_box.setXLink(self.plot)
        self.plot.getViewBox().sigResized.connect(self._align)
        self._items: list = []
        self.curves: dict[str, list[Point]] = {}

    def _align(self) -> None:
        self.steps_box.setGeometry(self.plot.getViewBox().sceneBoundingRect())
        self.steps_box.linkedViewChanged(self.plot.getViewBox(), self.steps_box.XAxis)

    def set_curves(self, found: dict[str, list[Point]], title: str) -> None:
        """Draw ``found`` (:func:`gradviz.sweep.results.curves`) under ``title``."""
        self.curves = found
        self.title.setText(title)
        for item in self._items:
            (self.steps_box if item.getViewBox() is self.steps_box else self.plot).removeItem(item)
        self._items = []
        self.legend.clear()
        top_step = 1.0
        lengths = sorted({p.seq_len for points in found.values() for p in points})
        # T on a log axis, ticked at the lengths swept; the curves a little apart, so
        # that intervals at the same T do not hide each other.
        self.plot.getAxis("bottom").setTicks([[(math.log10(T), str(T)) for T in lengths]])
        spread = 0.012 * (len(found) - 1)
        for i, (name, points) in enumerate(found.items()):
            seen = [p for p in points if p.n]
            if not seen:
                continue
            shift = -spread / 2 + 0.012 * i
            x = np.log10([p.seq_len for p in seen]) + shift
            rate = np.array([p.rate for p in seen])
            bars = pg.ErrorBarItem(x=x, y=rate, top=np.array([p.high for p in seen]) - rate,
                                   bottom=rate - np.array([p.low for p in seen]),
                                   beam=0.0, pen=pen(i, 1.0))
            line = pg.PlotDataItem(x, rate, pen=pen(i, 2.5), symbol="o", symbolSize=8,
                                   symbolBrush=colour(i), symbolPen=pen(i), name=name)
            self.plot.addItem(bars)
            self.plot.addItem(line)
            self._items += [bars, line]
            steps = np.array([p.median_step for p in seen])
            if np.isfinite(steps).any():
                top_step = max(top_step, float(np.nanmax(steps)))
                dashed = pg.PlotDataItem(x, steps, pen=pen(i, 1.5, QtCore.Qt.PenStyle.DashLine),
                                         symbol="t", symbolSize=7, symbolBrush=colour(i),
                                         symbolPen=pen(i), connect="finite")
                self.steps_box.addItem(dashed)
                self._items.append(dashed)
        self.steps_box.setYRange(0, top_step * 1.05, padding=0)
        self.plot.enableAutoRange(axis="x")
        self._align()

    def table(self) -> tuple[list[str], np.ndarray]:
        rows = [[name, p.seq_len, p.n, p.successes, p.failed, p.rate, p.low, p.high,
                 p.median_step] for name, points in self.curves.items() for p in points]
        return TABLE_HEADER, np.array(rows, dtype=object).reshape(len(rows), len(TABLE_HEADER))


def caption(grid: Grid, rows: list[dict]) -> str:
    """One line naming the sweep and how far it is."""
    base = grid.base
    done = sum(r.get("status") == "ok" for r in rows)
    failed = sum(r.get("status") == "failed" for r in rows)
    text = (f"{base.task} task, H = {base.hidden}, {base.optimizer} lr {base.lr:g}, "
            f"{base.steps} steps, {grid.seeds} seeds: {done}/{len(grid.runs())} runs done")
    return text + (f", {failed} failed" if failed else "")


class SweepView(QtWidgets.QWidget):
    """The Sweep view of one sweep folder, re-read when its sweep.csv changes."""

    key = "sweep"
    title = "Sweep: success rate against T"

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.figure = SweepPlot(self)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.figure)
        self.folder: Path | None = None
        self.grid: Grid | None = None
        self._stamp = None
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.refresh)

    def open_folder(self, folder: str | os.PathLike) -> None:
        """Show the sweep in ``folder`` (GridError if it is not one) and follow it."""
        grid = load_grid(folder)
        self.folder, self.grid, self._stamp = Path(folder), grid, None
        self.refresh()
        self.timer.start()

    def refresh(self) -> bool:
        """Redraw if sweep.csv changed since the last look; True if it did."""
        if self.folder is None or self.grid is None:
            return False
        try:
            info = (self.folder / RESULTS_FILE).stat()
            stamp = (info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp and self._stamp is not None:
            return False
        self._stamp = stamp
        rows = read_rows(self.folder)
        keys = {spec.key for spec in self.grid.runs()}
        rows = [r for r in rows if r.get("key") in keys]
        self.figure.set_curves(curves(rows, self.grid.vary_names), caption(self.grid, rows))
        return True

    def save(self, path: str | os.PathLike, scale: float = 1.0) -> Path:
        """Export to ``path``: .png, .svg or .csv (ExportError naming the file if not)."""
        return export.save(path, self.figure, self.figure.table, scale)


def write_sweep_figures(sweep_folder: str | os.PathLike, figures: str | os.PathLike,
                        size: QtCore.QSize = QtCore.QSize(1000, 600)) -> list[Path]:
    """Write sweep.png, sweep.svg and sweep.csv of the sweep in ``sweep_folder`` into
    ``figures`` (made if missing); the paths written."""
    from gradviz.ui.figures import _application

    target = Path(figures)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise export.cannot_write(target, err.strerror or str(err)) from err
    _application()
    view = SweepView()
    try:
        view.resize(size)
        view.open_folder(sweep_folder)
        view.timer.stop()
        export.prepare_for_render(view)
        return [view.save(target / f"{FIGURE_NAME}{suffix}", 1.0)
                for suffix in (".png", ".svg", ".csv")]
    finally:
        view.deleteLater()


__all__ = ["SweepPlot", "SweepView", "write_sweep_figures", "caption", "TABLE_HEADER"]
