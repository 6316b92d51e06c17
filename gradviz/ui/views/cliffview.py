"""Pascanu's cliff, a lab: the loss surface of one sigmoid unit run for 50 steps, and
gradient descent from a clicked point with and without norm clipping, side by side.

The surface and the paths come from gradviz.engine.analysis.cliff (a hand-written BPTT). The lab
needs no training run: it is drawn as soon as the view is made.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtWidgets

from gradviz.engine.analysis import cliff
from gradviz.ui.views.items import WrappedText, curve
from gradviz.ui.views.style import pen, style_colorbar, style_plot
from gradviz.ui.views.view import View

W_RANGE = (0.0, 10.0)
B_RANGE = (-6.0, 1.0)
GRID = 161
START = (6.0, -3.0)      # on the wall: plain descent jumps far off it
PATH_COLOUR = "#ffffff"


class CliffView(View):
    key = "cliff"
    title = "Pascanu's cliff: one unit, 50 steps"
    page = "Why"
    help_text = (
        "One unit x_t = w·σ(x_{t−1}) + b run from x₀ = 0.5 for 50 steps, with the loss "
        "(σ(x₅₀) − 0.7)² (Pascanu, Mikolov & Bengio 2013, Fig. 6). Each heatmap is log₁₀ of the "
        "loss over the weight w (x) and the bias b (y): the sharp edge is the cliff, where a "
        "small change of (w, b) sends x₅₀ to the other fixed point and the gradient is huge. "
        "Click a point to start gradient descent there; the white path on the left is plain "
        "descent, which jumps off the cliff when a step lands on the wall, the one on the right "
        "clips the gradient's norm to the threshold and keeps walking. Ring: start, square: end.")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.lr = self._spin("lr", "learning rate", 0.01, 100.0, 2.0, 2)
        self.threshold = self._spin("clip", "clipping threshold (gradient norm)", 0.01, 100.0, 1.0, 2)
        self.steps = QtWidgets.QSpinBox(self)
        self.steps.setRange(1, 2000)
        self.steps.setValue(100)
        self.steps.setToolTip("Gradient-descent steps from the clicked point")
        self.steps.valueChanged.connect(lambda _: self.run())
        self.toolbar.addWidget(QtWidgets.QLabel("steps"))
        self.toolbar.addWidget(self.steps)
        canvas = self._add_graphics()
        self.heading = WrappedText(size_pt=11)
        canvas.addItem(self.heading, row=0, col=0, colspan=3)
        self.ws = np.linspace(*W_RANGE, GRID)
        self.bs = np.linspace(*B_RANGE, GRID)
        self.surface = cliff.loss_surface(self.ws, self.bs)
        log_loss = np.log10(np.maximum(self.surface, 1e-12))
        self.plots, self.paths, self.marks = [], [], []
        images = []
        for col, name in enumerate(("plain", "clipped")):
            plot = canvas.addPlot(row=1, col=col, title=name)
            style_plot(plot, "w", "b", grid=False)
            plot.getViewBox().setDefaultPadding(0.0)
            image = pg.ImageItem(log_loss.T, axisOrder="col-major")
            image.setRect(W_RANGE[0], B_RANGE[0], W_RANGE[1] - W_RANGE[0], B_RANGE[1] - B_RANGE[0])
            plot.addItem(image)
            images.append(image)
            path = curve(plot, pen(PATH_COLOUR, width=2.0))
            path.setSymbol("o")
            path.setSymbolSize(4)
            path.setSymbolBrush(PATH_COLOUR)
            ends = pg.ScatterPlotItem(size=13, pen=pg.mkPen("#c8202f", width=2.5), brush=None,
                                      symbol="o")
            plot.addItem(ends)
            plot.setRange(xRange=W_RANGE, yRange=B_RANGE, padding=0.0)
            plot.scene().sigMouseClicked.connect(lambda ev, p=plot: self._clicked(ev, p))
            self.plots.append(plot)
            self.paths.append(path)
            self.marks.append(ends)
        self.plots[1].setXLink(self.plots[0])
        self.plots[1].setYLink(self.plots[0])
        bar = pg.ColorBarItem(values=(float(log_loss.min()), float(log_loss.max())),
                              colorMap=pg.colormap.get("viridis"), interactive=False,
                              colorMapMenu=False)
        style_colorbar(bar, "log₁₀ loss")
        bar.setImageItem(images)
        canvas.addItem(bar, row=1, col=2)
        self.start = START
        self.results: tuple[cliff.Path, cliff.Path] | None = None
        self.run()

    def _spin(self, label: str, tip: str, lo: float, hi: float, value: float, decimals: int):
        spin = QtWidgets.QDoubleSpinBox(self)
        spin.setRange(lo, hi)
        spin.setDecimals(decimals)
        spin.setValue(value)
        spin.setToolTip(tip)
        spin.valueChanged.connect(lambda _: self.run())
        self.toolbar.addWidget(QtWidgets.QLabel(label))
        self.toolbar.addWidget(spin)
        return spin

    def _clicked(self, event, plot: pg.PlotItem) -> None:
        vb = plot.getViewBox()
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        point = vb.mapSceneToView(event.scenePos())
        self.start_at(point.x(), point.y())

    def start_at(self, w: float, b: float) -> None:
        """Start both descents at (w, b)."""
        self.start = (float(w), float(b))
        self.run()

    def run(self) -> None:
        w0, b0 = self.start
        plain = cliff.descend(w0, b0, self.lr.value(), self.steps.value())
        clipped = cliff.descend(w0, b0, self.lr.value(), self.steps.value(),
                                clip=self.threshold.value())
        self.results = (plain, clipped)
        for path, marks, result in zip(self.paths, self.marks, self.results):
            pts = result.points
            path.setData(pts[:, 0], pts[:, 1])
            marks.setData([{"pos": tuple(pts[0]), "symbol": "o"},
                           {"pos": tuple(pts[-1]), "symbol": "s"}])
        longest = float(np.max(plain.grad_norm)) if plain.grad_norm.size else 0.0
        ends = "; ".join(f"{name} ends at ({r.points[-1, 0]:.2f}, {r.points[-1, 1]:.2f}), loss "
                         f"{r.loss[-1]:.3g}" for name, r in (("plain", plain), ("clipped", clipped)))
        self.heading.set_text(f"start (w, b) = ({w0:.2f}, {b0:.2f}), largest gradient norm "
                              f"{longest:.3g}; {ends}")

    # The lab draws no run: the history and the capture are not its input.
    def _redraw(self) -> None:
        return

    def _clear_items(self) -> None:
        return

    def set_caption(self, text: str) -> None:
        """The lab shows no run, so there is no run to name."""

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        """One row per descent step: w, b, loss and gradient norm of both paths (NaN after
        a path ended early)."""
        plain, clipped = self.results
        n = max(len(plain.points), len(clipped.points))
        columns = [np.arange(n, dtype=np.float64)]
        for result in (plain, clipped):
            block = np.full((n, 4), np.nan)
            k = len(result.points)
            block[:k, :2] = result.points
            block[:k, 2] = result.loss
            block[:len(result.grad_norm), 3] = result.grad_norm[:n]
            columns.append(block)
        header = ["step"] + [f"{w} {q}" for w in ("plain", "clipped")
                             for q in ("w", "b", "loss", "grad norm")]
        return header, np.column_stack(columns)
