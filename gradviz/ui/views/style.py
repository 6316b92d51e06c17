"""The house style of every plot: colours, pens, fonts, and the styling of plots and
colour bars.

Dark ink on a white background, saturated colours, a bold line for the curve a plot is
about and 11-13 pt fonts, because the plots are read on lecture projectors, where
light-on-dark washes out.
"""
from __future__ import annotations

import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.ui.views.axes import FitAxis, LogAxis

BACKGROUND = "w"
INK = "k"
GRID = "#d9d9d9"
TICK_FONT_PT = 11
LABEL_STYLE = {"font-size": "12pt", "color": "#000000"}
# Distinct, saturated colours that stay apart on white.
PALETTE = ("#1f5fbf", "#e8730c", "#2a9d3a", "#c8202f", "#7b3fb0", "#8c564b",
           "#d6409f", "#5f5f5f", "#9aa00f", "#12a3b5")
# Auto-range margin, a fraction of the data range on each side.
PADDING = 0.05
LAYOUT_MARGINS = (4, 2, 8, 2)
LAYOUT_SPACING = 2
BAR_END_MARGIN = 9


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def pen(i_or_colour: int | str, width: float = 1.0,
        style: QtCore.Qt.PenStyle = QtCore.Qt.PenStyle.SolidLine) -> QtGui.QPen:
    """An opaque pen of palette colour ``i`` or a named colour.

    Qt strokes lines wider than one pixel about ten times slower (16 curves of 1000
    points: 2 ms at width 1, 15-35 ms wider), so only the one or two curves a plot is
    about get a wide pen; translucent lines are as slow, so fading is done with lighter
    opaque colours.
    """
    c = QtGui.QColor(colour(i_or_colour) if isinstance(i_or_colour, int) else i_or_colour)
    p = pg.mkPen(c, width=width)
    p.setStyle(style)
    return p


def style_colorbar(bar: pg.ColorBarItem, label: str) -> None:
    """House style for a colour bar: ink-coloured axes, readable ticks, a label."""
    font = QtGui.QFont()
    font.setPointSize(TICK_FONT_PT)
    for name in ("left", "right", "top", "bottom"):
        bar.getAxis(name).enableAutoSIPrefix(False)
    for axis in (bar.axis, bar.getAxis("left")):
        axis.setPen(pg.mkPen(INK))
        axis.setTextPen(pg.mkPen(INK))
    bar.axis.setStyle(tickFont=font)
    # As wide as its tick labels instead of pyqtgraph's fixed 45 px: the rest goes to the plot.
    bar.axis.setWidth(None)
    bar.getAxis("left").setLabel(label, **LABEL_STYLE)
    # Room above and below the bar for half of its end labels, which would be cut off at
    # the edge of the panel or run into a key.
    bar.layout.setContentsMargins(0, BAR_END_MARGIN, 0, BAR_END_MARGIN)
    # Only as wide as it needs: an expanding bar's column takes a share of the extra width,
    # and a key beside it in that column would spread into it.
    bar.setSizePolicy(QtWidgets.QSizePolicy.Policy.Fixed, QtWidgets.QSizePolicy.Policy.Expanding)


def style_plot(plot: pg.PlotItem, x_label: str, y_label: str, *, log_y: bool = False,
               grid: bool = True) -> pg.PlotItem:
    """Apply the house style to ``plot`` and label its axes (the label carries the unit)."""
    axes = {"left": LogAxis("left") if log_y else FitAxis("left")}
    if not isinstance(plot.getAxis("bottom"), FitAxis):
        axes["bottom"] = FitAxis("bottom")
    plot.setAxisItems(axes)
    font = QtGui.QFont()
    font.setPointSize(TICK_FONT_PT)
    for name in ("left", "right", "top", "bottom"):
        # Values read as they are: no "(x0.001)" scale appended to the label.
        plot.getAxis(name).enableAutoSIPrefix(False)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setTextPen(pg.mkPen(INK))
        axis.setStyle(tickFont=font)
        if grid:
            # An opaque light grid: pyqtgraph's translucent one costs 3-6 ms a plot to
            # paint (Qt blends translucent lines slowly), more than the data does. Axis
            # line, ticks and grid share the axis pen, so all are light; labels stay black.
            axis.setPen(pg.mkPen(GRID))
            axis.setStyle(tickAlpha=1.0, maxTickLevel=1 if name == "left" else 0)
            axis.setGrid(255)
            axis.setZValue(plot.getViewBox().zValue() - 1)   # grid under the data
        else:
            axis.setPen(pg.mkPen(INK))
    plot.setLabel("bottom", x_label, **LABEL_STYLE)
    plot.setLabel("left", y_label, **LABEL_STYLE)
    plot.setLogMode(x=False, y=log_y)
    plot.getViewBox().setDefaultPadding(PADDING)
    plot.setDownsampling(auto=True, mode="peak")
    plot.setClipToView(True)
    # Our own context menu (export) replaces pyqtgraph's; see View.
    plot.setMenuEnabled(False)
    plot.getViewBox().setMenuEnabled(False)
    return plot
