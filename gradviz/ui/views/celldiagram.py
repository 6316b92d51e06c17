"""The cell, live: the classic picture of the chosen cell, drawn with QPainter, for the
newest full capture at a chosen timestep and unit (or all units).

Each gate box is filled with the colour of its value (batch mean; the mean over units
for "all units") and writes it. Each path the gradient flows back along is as wide and
as dark as the gradient it carries (gradviz.engine.analysis.paths: per unit the norm over the
batch; for all units the norm over batch and units, as ‖∂L/∂h_t‖ elsewhere), on a log
scale over DECADES decades below the largest that any path carries at any timestep of
the capture, so that moving t shows the gradient fade; its value is written beside it.
The pictures are data (:mod:`.cellpictures`); what was drawn is kept in :attr:`drawn`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.ui.views.cellpictures import Box, Picture, cell_of, picture
from gradviz.ui.views.view import View

DECADES = 4.0
FRAME = (100.0, 64.0)
FAINT, STRONG = QtGui.QColor("#c8c8c8"), QtGui.QColor("#c8202f")


@dataclass
class Drawn:
    """One thing drawn: a box (``value`` its gate's, ``fill`` its colour), a node, or a
    path (``value`` the gradient it carries, ``width`` its pen), with its rectangle or
    midpoint in widget pixels and the text written on it."""
    kind: str
    name: str
    rect: QtCore.QRectF
    text: str
    value: float = float("nan")
    fill: QtGui.QColor | None = None
    width: float = 0.0
    tip: str = ""


def gate_colour(value: float, lo: float, hi: float) -> QtGui.QColor:
    """The fill of a gate box: viridis over [0, 1] gates, a diverging map over [−1, 1]."""
    diverging = lo < 0 < hi
    cmap = pg.colormap.get("CET-D1" if diverging else "viridis")
    if not np.isfinite(value):
        return QtGui.QColor("#ffffff")
    frac = float(np.clip((value - lo) / (hi - lo), 0.0, 1.0))
    return cmap.map(frac, mode="qcolor")


def strength(g: float, top: float) -> float:
    """0 … 1: where ``g`` lies on the log scale of DECADES decades below ``top``."""
    if not (np.isfinite(g) and g > 0 and top > 0):
        return 0.0
    return float(np.clip((np.log10(g) - np.log10(top) + DECADES) / DECADES, 0.0, 1.0))


def _mix(frac: float) -> QtGui.QColor:
    return QtGui.QColor.fromRgbF(*(a + frac * (b - a) for a, b in zip(
        FAINT.getRgbF()[:3], STRONG.getRgbF()[:3])))


class CellCanvas(QtWidgets.QWidget):
    """Paints one :class:`Picture` with the values it is given."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setMinimumSize(200, 150)    # the picture scales to any panel
        self.picture: Picture | None = None
        self.gates: dict[str, float] = {}
        self.ranges: dict[str, tuple[float, float]] = {}
        self.grads: dict[tuple[str, int], float] = {}
        self.heading = ""
        self.share = ""
        self.top = 0.0                 # the gradient drawn widest and darkest
        self.caption = ""              # the run's name, for figures that leave the app
        self.drawn: list[Drawn] = []

    def show_picture(self, pic: Picture | None, gates: dict, ranges: dict, grads: dict,
                     heading: str, share: str, top: float = 0.0) -> None:
        self.picture, self.gates, self.ranges, self.grads = pic, gates, ranges, grads
        self.heading, self.share, self.top = heading, share, top
        self.update()

    # -- geometry -----------------------------------------------------------------------
    def _frame(self) -> tuple[float, float, float]:
        top = 44.0
        scale = min(self.width() / (FRAME[0] + 8), (self.height() - top - 24) / (FRAME[1] + 4))
        left = (self.width() - scale * FRAME[0]) / 2
        return scale, left, top

    def _at(self, x: float, y: float) -> QtCore.QPointF:
        scale, left, top = self._frame()
        return QtCore.QPointF(left + scale * x, top + scale * y)

    # -- painting -----------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        painter = QtGui.QPainter(self)
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QtGui.QColor("white"))
        self.drawn = []
        font = painter.font()
        font.setPointSizeF(11)
        painter.setFont(font)
        small = painter.font()
        # The picture's text shrinks with it, so that a box's name and value fit in it.
        small.setPointSizeF(float(np.clip(1.9 * self._frame()[0], 6.0, 11.0)))
        painter.setPen(QtGui.QColor("black"))
        painter.drawText(QtCore.QRectF(6, 2, self.width() - 12, 40),
                         QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.TextFlag.TextWordWrap,
                         "\n".join(filter(None, (self.caption, self.heading))) if self.picture
                         else "The cell diagram appears with the first full capture.")
        if self.picture is not None:
            painter.setFont(small)
            self._paint_edges(painter)
            self._paint_nodes(painter)
            self._paint_boxes(painter)
            self._paint_texts(painter)
            painter.setFont(font)
            painter.drawText(QtCore.QRectF(6, self.height() - 22, self.width() - 12, 20),
                             QtCore.Qt.AlignmentFlag.AlignLeft, self.share)
        painter.end()

    def _paint_edges(self, painter: QtGui.QPainter) -> None:
        scale, top = self._frame()[0], self.top
        for edge in self.picture.edges:
            value = self.grads.get(edge.grad, np.nan) if edge.grad else np.nan
            frac = strength(value, top) if edge.grad else 0.0
            width = (1.5 + 1.6 * scale * frac) if edge.grad else 1.2
            colour = _mix(frac) if edge.grad else QtGui.QColor("#555555")
            p = QtGui.QPen(colour, width)
            p.setCapStyle(QtCore.Qt.PenCapStyle.FlatCap)
            if edge.dashed:
                p.setStyle(QtCore.Qt.PenStyle.DashLine)
                p.setColor(QtGui.QColor("#2a9d3a"))
            painter.setPen(p)
            points = [self._at(*pt) for pt in edge.points]
            painter.drawPolyline(QtGui.QPolygonF(points))
            if edge.grad:
                text = "—" if not np.isfinite(value) else f"{value:.2e}"
                mid = (points[0] + points[1]) / 2
                rect = QtCore.QRectF(mid.x() - 40, mid.y() - 18 - width / 2, 80, 16)
                painter.setPen(QtGui.QColor("black"))
                painter.drawText(rect, QtCore.Qt.AlignmentFlag.AlignCenter, text)
                self.drawn.append(Drawn("path", f"{edge.grad[0]}{edge.grad[1]:+d}", rect, text,
                                        value=value, width=width, tip=edge.label))
            elif edge.label:
                mid = (points[0] + points[-1]) / 2
                self.drawn.append(Drawn("link", edge.label, QtCore.QRectF(mid, mid), "",
                                        tip=edge.label))

    def _paint_nodes(self, painter: QtGui.QPainter) -> None:
        radius = 2.6 * self._frame()[0]
        for node in self.picture.nodes:
            centre = self._at(node.x, node.y)
            rect = QtCore.QRectF(centre.x() - radius, centre.y() - radius, 2 * radius, 2 * radius)
            painter.setPen(QtGui.QPen(QtGui.QColor("black"), 1.5))
            painter.setBrush(QtGui.QColor("#fff4c2"))
            painter.drawEllipse(rect)
            painter.drawText(rect, QtCore.Qt.AlignmentFlag.AlignCenter, node.symbol)
            self.drawn.append(Drawn("node", node.symbol, rect, node.symbol, tip=node.equation))

    def _paint_boxes(self, painter: QtGui.QPainter) -> None:
        for box in self.picture.boxes:
            rect = self._box_rect(box)
            value = self.gates.get(box.name, np.nan) if box.gate else np.nan
            fill = (gate_colour(value, *self.ranges.get(box.name, (0.0, 1.0))) if box.gate
                    else QtGui.QColor("#e6e6e6"))
            painter.setPen(QtGui.QPen(QtGui.QColor("black"), 1.5))
            painter.setBrush(fill)
            painter.drawRoundedRect(rect, 4, 4)
            text = box.label + (f"\n{value:.3f}" if box.gate else "")
            painter.setPen(QtGui.QColor("white" if fill.lightnessF() < 0.5 else "black"))
            painter.drawText(rect, QtCore.Qt.AlignmentFlag.AlignCenter, text)
            self.drawn.append(Drawn("box", box.name, rect, text, value=value, fill=fill,
                                    tip=box.equation))

    def _box_rect(self, box: Box) -> QtCore.QRectF:
        scale = self._frame()[0]
        centre = self._at(box.x, box.y)
        return QtCore.QRectF(centre.x() - scale * box.w / 2, centre.y() - scale * box.h / 2,
                             scale * box.w, scale * box.h)

    def _paint_texts(self, painter: QtGui.QPainter) -> None:
        painter.setPen(QtGui.QColor("black"))
        for x, y, text in self.picture.texts:
            painter.drawText(self._at(x, y), text)

    # -- hover --------------------------------------------------------------------------
    def item_at(self, pos: QtCore.QPointF) -> Drawn | None:
        """What the pointer at ``pos`` is over: a box or node first, then a path's label."""
        for kind in ("box", "node", "path"):
            for item in self.drawn:
                if item.kind == kind and item.rect.adjusted(-3, -3, 3, 3).contains(pos):
                    return item
        return None

    def mouseMoveEvent(self, event) -> None:
        item = self.item_at(event.position())
        self.setToolTip(item.tip if item is not None else "")
        if item is not None:
            QtWidgets.QToolTip.showText(event.globalPosition().toPoint(), item.tip, self)
        else:
            QtWidgets.QToolTip.hideText()


class CellDiagramView(View):
    key = "cell"
    title = "The cell, live"
    page = "Why"
    help_text = (
        "The chosen cell drawn as the classic pictures draw it, for the newest full capture: "
        "the state enters on the left, leaves on the right, x_t comes from below; for the LSTM "
        "the cell state runs along the top as a belt. Each gate box is coloured by its value "
        "(batch mean, for the chosen unit or the mean over units) and writes it. Each path "
        "carrying gradient back is wider and redder the more it carries (a log scale over four "
        "decades below the largest path in the picture), with the value beside it. Move the "
        "timestep: in a vanishing RNN the h path fades step by step, while an LSTM with open "
        "forget gates keeps its belt red. Hover a box or node for its equation.")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.selector = self._add_selector()
        self.unit_combo = QtWidgets.QComboBox(self)
        self.unit_combo.setToolTip("Which hidden unit the boxes and paths show")
        self.unit_combo.currentIndexChanged.connect(self._redraw)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal, self)
        self.spin = QtWidgets.QSpinBox(self)
        for control in (self.slider, self.spin):
            control.setToolTip("The timestep t shown")
        self.slider.valueChanged.connect(self.spin.setValue)
        self.spin.valueChanged.connect(self.slider.setValue)
        self.spin.valueChanged.connect(lambda _: self._redraw())
        for widget in (QtWidgets.QLabel("unit:"), self.unit_combo, QtWidgets.QLabel("t:"),
                       self.spin):
            self.toolbar.addWidget(widget)
        self.slider.setMinimumWidth(140)
        self.toolbar.addWidget(self.slider)
        self.canvas_widget = CellCanvas(self)
        self.layout().addWidget(self.canvas_widget, 1)

    @property
    def timestep(self) -> int:
        return self.spin.value()

    def set_timestep(self, t: int) -> None:
        self.spin.setValue(t)

    def set_unit(self, unit: int | None) -> None:
        """``None``: all units."""
        self.unit_combo.setCurrentIndex(0 if unit is None else unit + 1)

    def _set_shape(self, T: int, H: int) -> None:
        if self.spin.maximum() != T - 1:
            for control in (self.slider, self.spin):
                control.setRange(0, T - 1)
        if self.unit_combo.count() != H + 1:
            keep = self.unit_combo.currentIndex()
            self.unit_combo.blockSignals(True)
            self.unit_combo.clear()
            self.unit_combo.addItem("all units", None)
            for u in range(H):
                self.unit_combo.addItem(f"unit {u}", u)
            self.unit_combo.setCurrentIndex(keep if 0 <= keep <= H else 0)
            self.unit_combo.blockSignals(False)

    def _clear_items(self) -> None:
        self.canvas_widget.show_picture(None, {}, {}, {}, "", "")

    def values(self) -> tuple[dict[str, float], dict[tuple[str, int], float]]:
        """What the picture shows at the chosen layer, direction, t and unit: each gate's
        value and, per (path, offset), the gradient along it."""
        cap = self._latest
        layer, direction = self.selector.layer_direction
        unit = self.unit_combo.currentData()
        t, T = self.timestep, cap.gates.shape[3]
        gates = cap.gates[layer, direction, :, t].astype(np.float64)
        gate_values = dict(zip(cap.gate_names, gates.mean(-1) if unit is None else gates[:, unit]))
        grads = {}
        # Offsets count along the processing order, which a backward direction reverses.
        step = -1 if direction == 1 else 1
        for q, name in enumerate(cap.path_names):
            for offset in (0, 1):
                s = t + step * offset
                if not 0 <= s < T:
                    grads[(name, offset)] = 0.0 if name == "belt" else np.nan
                    continue
                per_unit = cap.paths[layer, direction, q, s].astype(np.float64)
                grads[(name, offset)] = float(np.sqrt(np.sum(per_unit ** 2)) if unit is None
                                              else per_unit[unit])
        return gate_values, grads

    def _redraw(self) -> None:
        cap = self._latest
        if cap is None or cap.gates is None or cap.paths is None:
            self._clear_items()
            return
        L, D, _, T, H = cap.gates.shape
        self.selector.set_shape(L, D)
        self._set_shape(T, H)
        cell = cell_of(cap)
        gates, grads = self.values()
        unit = self.unit_combo.currentData()
        who = "all units (gates: mean; gradients: norm)" if unit is None else f"unit {unit}"
        heading = f"{cell}, step {cap.step}, t = {self.timestep}, {who}"
        ranges = dict(zip(cap.gate_names, cap.gate_ranges))
        self.canvas_widget.show_picture(picture(cell), gates, ranges, grads, heading,
                                        self._share(grads), self._top())

    def _top(self) -> float:
        """The largest gradient along any path at any t, for the chosen unit or all."""
        layer, direction = self.selector.layer_direction
        unit = self.unit_combo.currentData()
        paths = self._latest.paths[layer, direction].astype(np.float64)     # (Q, T, H)
        values = np.sqrt(np.sum(paths ** 2, -1)) if unit is None else paths[..., unit]
        values = values[np.isfinite(values) & (values > 0)]
        return float(values.max()) if values.size else 0.0

    def _share(self, grads: dict) -> str:
        """The split of ∂L/∂c_{t−1} (LSTM) or ∂L/∂h_{t−1} (GRU) between the belt and h."""
        belt = grads.get(("belt", 0), np.nan)
        if self._latest.dc_norm is not None:
            rest, state = self._previous("c_h"), "c"
        else:
            rest, state = grads.get(("w", 0), np.nan), "h"
        if not (np.isfinite(belt) and np.isfinite(rest)) or belt + rest <= 0:
            return ""
        share = belt / (belt + rest)
        via = "through hₜ₋₁" if state == "c" else "through W_hh"
        return (f"∂L/∂{state}ₜ₋₁: {100 * share:.0f}% along the belt, "
                f"{100 * (1 - share):.0f}% {via} (shares of the two norms)")

    def _previous(self, path: str) -> float:
        """The gradient along ``path`` one step before t in processing order (NaN at the
        first step)."""
        cap = self._latest
        layer, direction = self.selector.layer_direction
        s = self.timestep + (1 if direction == 1 else -1)
        if not 0 <= s < cap.gates.shape[3]:
            return np.nan
        per_unit = cap.paths[layer, direction, cap.path_names.index(path), s].astype(np.float64)
        unit = self.unit_combo.currentData()
        return float(np.sqrt(np.sum(per_unit ** 2)) if unit is None else per_unit[unit])

    def figure_widget(self) -> QtWidgets.QWidget:
        return self.canvas_widget

    def set_caption(self, text: str) -> None:
        """The picture's first line names the run."""
        self.canvas_widget.caption = text
        self.canvas_widget.update()

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        """One row per timestep for the chosen unit (or all units): every gate's value and
        every path's gradient, as the picture shows them at that t."""
        cap = self._latest
        if cap is None or cap.gates is None or cap.paths is None:
            return ["t"], np.zeros((0, 1))
        keep = self.timestep
        rows, header = [], None
        for t in range(cap.gates.shape[3]):
            self.spin.blockSignals(True)
            self.spin.setValue(t)
            gates, grads = self.values()
            header = (["t"] + [f"gate {g}" for g in gates]
                      + [f"{n} t{o:+d}" for n, o in grads])
            rows.append([t, *gates.values(), *grads.values()])
        self.spin.setValue(keep)
        self.spin.blockSignals(False)
        return header, np.array(rows, dtype=np.float64)
