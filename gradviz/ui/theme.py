"""The looks the window offers, and the scaling of everything drawn together.

A :class:`Theme` multiplies font sizes and line widths on top of the user's scale
(Ctrl+= / Ctrl+− / Ctrl+0) and may darken the axes. :func:`apply_to_scene` scales every
text, axis, curve and marker of a pyqtgraph scene from the sizes the views gave them
(remembered on the items the first time, and again whenever a view sets a new one), so
applying twice, or after a view redrew, never compounds.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.ui.views.style import GRID

# An axis title too long for its axis is made smaller, down to this size.
MIN_TITLE_PT = 9.0
SCALES = (0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)


@dataclass(frozen=True)
class Theme:
    name: str
    label: str
    font: float = 1.0          # times the user's scale
    line: float = 1.0          # line widths, times the user's scale
    min_line: float = 0.0      # data lines at least this wide (px)
    axis_colour: str = GRID    # axis line, ticks and grid
    tick_length: int = 5       # pyqtgraph's default


THEMES = {
    "standard": Theme("standard", "Standard"),
    # For projectors: thick lines, larger tick labels and ticks, darker axes; the
    # background stays white (light-on-dark washes out on a projector).
    "projector": Theme("projector", "Projector (high contrast)", font=1.2, line=2.0,
                       min_line=2.0, axis_colour="#8c8c8c", tick_length=9),
}
DEFAULT_THEME = "standard"


def theme_named(name: str) -> Theme:
    if name not in THEMES:
        raise ValueError(f"unknown theme {name!r}; known: {', '.join(THEMES)}")
    return THEMES[name]


def _base(item, attr: str, current):
    """The size the view gave ``item`` (``current`` unless it is what we last set)."""
    stored = getattr(item, "_gv_" + attr, None)
    if stored is None or stored[1] != current:
        stored = (current, current)
    return stored[0]


def _remember(item, attr: str, base, applied) -> None:
    setattr(item, "_gv_" + attr, (base, applied))


def scale_font(item, font: QtGui.QFont, factor: float, attr: str = "font") -> QtGui.QFont:
    base = _base(item, attr, font.pointSizeF())
    size = round(base * factor, 2)
    if size > 0:
        font.setPointSizeF(size)
    _remember(item, attr, base, font.pointSizeF())
    return font


def _scale_pen(item, pen: QtGui.QPen, factor: float, minimum: float, attr: str) -> QtGui.QPen:
    pen = QtGui.QPen(pen)
    base = _base(item, attr, pen.widthF())
    width = base * factor if base > 0 else (minimum if minimum else 0.0)
    width = max(width, minimum) if base > 0 else width
    pen.setWidthF(round(width, 3))
    pen.setCosmetic(True)
    _remember(item, attr, base, pen.widthF())
    return pen


def _scale_axis(axis: pg.AxisItem, scale: float, theme: Theme) -> None:
    """Tick labels, ticks, axis line and title at ``scale`` in ``theme``; a title longer
    than its axis is set smaller (down to MIN_TITLE_PT) rather than cut off."""
    font = axis.style["tickFont"] or QtGui.QFont()
    base_length = _base(axis, "tick", axis.style["tickLength"])
    length = int(round((theme.tick_length if base_length == 5 else base_length) * scale))
    tick_font = scale_font(axis, QtGui.QFont(font), scale * theme.font, "tickfont")
    if tick_font != font or length != axis.style["tickLength"]:
        axis.setStyle(tickFont=tick_font, tickLength=length)
    _remember(axis, "tick", base_length, length)
    style = dict(axis.labelStyle)     # setPen would colour the title like the axis
    pen = axis.pen()
    if pen.color().name() in (GRID, *[t.axis_colour for t in THEMES.values()]):
        pen = pg.mkPen(theme.axis_colour)
    pen = _scale_pen(axis, pen, scale * theme.line, 0.0, "pen")
    if pen != axis.pen():
        axis.setPen(pen)
    text = style.get("font-size", "")
    if text.endswith("pt") and axis.labelText:
        base = _base(axis, "label", float(text[:-2]))
        size = base * scale * theme.font
        along = axis.height() if axis.orientation in ("left", "right") else axis.width()
        if getattr(axis, "_gv_along", None) == (along, base, size):
            return     # fitted already at this length
        axis._gv_along = (along, base, size)
        style["font-size"] = f"{round(size, 1)}pt"
        if style != axis.labelStyle:
            axis.setLabel(axis.labelText, axis.labelUnits, axis.labelUnitPrefix, **style)
        while along > 0 and axis.label.boundingRect().width() > along and size > MIN_TITLE_PT:
            size = max(MIN_TITLE_PT, size - 0.5)
            style["font-size"] = f"{round(size, 1)}pt"
            axis.setLabel(axis.labelText, axis.labelUnits, axis.labelUnitPrefix, **style)
        _remember(axis, "label", base, round(size, 1))


def apply_to_scene(scene: QtWidgets.QGraphicsScene, scale: float, theme: Theme) -> None:
    """Every font, line and marker in ``scene`` at ``scale`` times the views' own, in
    ``theme``."""
    from gradviz.ui.views.items import WrappedText

    line = scale * theme.line
    for item in scene.items():
        if isinstance(item, pg.AxisItem):
            _scale_axis(item, scale, theme)
        elif isinstance(item, QtWidgets.QGraphicsTextItem) and not isinstance(
                item.parentItem(), pg.AxisItem):
            item.setFont(scale_font(item, item.font(), scale * theme.font))
            parent = item.parentItem()
            if isinstance(parent, WrappedText):
                parent._fit()
        elif isinstance(item, pg.PlotDataItem):
            pen = item.opts.get("pen")
            if isinstance(pen, QtGui.QPen) and pen.style() != 0:
                item.setPen(_scale_pen(item, pen, line, theme.min_line, "pen"))
            size = item.opts.get("symbolSize")
            if item.opts.get("symbol") is not None and size:
                base = _base(item, "symbol", size)
                item.setSymbolSize(round(base * scale * theme.font, 2))
                _remember(item, "symbol", base, item.opts["symbolSize"])
        elif isinstance(item, pg.InfiniteLine):
            item.setPen(_scale_pen(item, item.pen, line, 0.0, "pen"))


def apply_to_widgets(root: QtWidgets.QWidget, scale: float) -> None:
    """Every widget under ``root`` (and ``root``) with its font at ``scale`` times the
    size it was made with."""
    widgets = [root] + root.findChildren(QtWidgets.QWidget)
    app_font = QtWidgets.QApplication.font()
    for widget in widgets:
        if widget is root:
            font = QtGui.QFont(app_font)
            widget.setFont(scale_font(widget, font, scale))
        elif widget.testAttribute(QtCore.Qt.WidgetAttribute.WA_SetFont):
            widget.setFont(scale_font(widget, QtGui.QFont(widget.font()), scale))


__all__ = ["Theme", "THEMES", "DEFAULT_THEME", "SCALES", "theme_named", "apply_to_scene",
           "apply_to_widgets", "scale_font"]
