"""The graphics items the views are built from: text that wraps to its panel, colour
keys that never hide data, and curves for sanitised data (see :mod:`.data`)."""
from __future__ import annotations

import html
import math

import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.ui.views.data import LOG_FLOOR
from gradviz.ui.views.style import INK, TICK_FONT_PT, pen

# Narrower than this, text is not worth wrapping.
MIN_TEXT_WIDTH = 40
NON_BREAKING_HYPHEN = "\u2011"


class WrappedText(pg.GraphicsWidget):
    """Rich text for a plot layout that wraps to the width it is given and takes the
    height it then needs; or, as a ``column`` (a key beside a plot), takes the width of
    its longest line and does not wrap.

    pyqtgraph's LabelItem (plot titles, legends' labels) asks for the width of its whole
    text as a minimum; in a narrow panel that widens the layout beyond the view, and
    everything on the right is cut off. Empty text takes no room.
    """

    def __init__(self, size_pt: float = TICK_FONT_PT, column: bool = False, parent=None):
        super().__init__(parent)
        self._column = column
        self._item = QtWidgets.QGraphicsTextItem(self)
        font = QtGui.QFont()
        font.setPointSizeF(size_pt)
        self._item.setFont(font)
        self._item.setDefaultTextColor(QtGui.QColor(INK))
        option = self._item.document().defaultTextOption()
        option.setAlignment(QtCore.Qt.AlignmentFlag.AlignLeft if column
                            else QtCore.Qt.AlignmentFlag.AlignHCenter)
        option.setWrapMode(QtGui.QTextOption.WrapMode.NoWrap if column
                           else QtGui.QTextOption.WrapMode.WordWrap)
        self._item.document().setDefaultTextOption(option)
        self._html = ""
        # Wrapping text asks for little width (a column it shares keeps the width its
        # plots want) and fills the cell it gets; a column is as wide as its text.
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Fixed if column
                           else QtWidgets.QSizePolicy.Policy.Preferred,
                           QtWidgets.QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(0 if column else MIN_TEXT_WIDTH)
        self.setPreferredWidth(0 if column else MIN_TEXT_WIDTH)
        self._fit()

    @property
    def html(self) -> str:
        return self._html

    def plain_text(self) -> str:
        return self._item.toPlainText()

    def set_html(self, html_text: str) -> None:
        if html_text == self._html:
            return
        self._html = html_text
        self._item.setHtml(html_text)
        self._fit()

    def set_text(self, text: str) -> None:
        self.set_html(html.escape(text))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        """Wrap to the current width; ask the layout for the room the text then needs."""
        if self._column:
            width = math.ceil(self._item.boundingRect().width()) if self._html else 0.0
            if width != self.maximumWidth():
                self.setMinimumWidth(width)
                self.setPreferredWidth(width)
                self.setMaximumWidth(width)
        else:
            width = self.size().width()
            self._item.setTextWidth(width if width >= MIN_TEXT_WIDTH else -1)
        height = math.ceil(self._item.boundingRect().height()) if self._html else 0.0
        if height != self.maximumHeight():
            self.setMinimumHeight(height)
            self.setMaximumHeight(height)


class ColourKey(WrappedText):
    """A colour key, put above a plot (one line, wrapped when the panel is narrow) or
    beside it (a ``column``, one entry a line) so that it never hides data: a sample of
    each curve's colour and line style, then its name."""

    SAMPLES = {"line": "━", "dash": "╍╍", "dot": "┈┈", "marker": "○", "event": "┃",
               "box": "■", "band": "▬▬", "tick": "╷"}

    def __init__(self, column: bool = False, parent=None):
        super().__init__(column=column, parent=parent)
        self._entries: list[tuple[str, str, str]] = []

    @property
    def entries(self) -> list[tuple[str, str, str]]:
        """(colour, sample, label) of every entry, in order."""
        return list(self._entries)

    @property
    def labels(self) -> list[str]:
        return [label for _, _, label in self._entries]

    def set_entries(self, entries: list[tuple[str, str, str]], title: str = "") -> None:
        """``entries``: (colour, sample, label) with ``sample`` one of :attr:`SAMPLES`;
        ``title``, if given, comes first and says what the labels are (e.g. "unit"); a
        newline in it starts a new line."""
        self._entries = list(entries)
        # Lines break between entries only: never inside a label, nor between a sample and
        # its label.
        parts = [f'<span style="color:{c}">{self.SAMPLES[sample]}</span>&nbsp;'
                 + html.escape(label).replace(" ", "&nbsp;").replace("-", NON_BREAKING_HYPHEN)
                 for c, sample, label in self._entries]
        if title and parts:
            parts.insert(0, html.escape(title).replace("\n", "<br>"))
        self.set_html(("<br>" if self._column else "&nbsp; ").join(parts))


class Curve(pg.PlotDataItem):
    """A curve for sanitised data (finite, and raised to :data:`LOG_FLOOR` on log axes).

    On a log y axis its bounds leave out the points at the floor (exact zeros), so that
    auto-range fits the nonzero data and a gradient that vanished to zero drops below the
    bottom edge, instead of stretching the axis over 30 decades.
    """

    def setData(self, *args, **kwargs) -> None:
        super().setData(*args, **kwargs)
        # A line through one point draws nothing: a curve left with one point (the one
        # finite step of a run that diverged at once) shows it as a dot in its colour.
        # Curves with symbols of their own keep them.
        if self.opts.get("pen") is None or (self.opts.get("symbol") is not None
                                            and not getattr(self, "_dot", False)):
            return
        lone = self.xData is not None and len(self.xData) == 1
        if lone != getattr(self, "_dot", False):
            self._dot = lone
            if lone:
                line = pg.mkPen(self.opts["pen"])
                self.setSymbol("o")
                self.setSymbolSize(max(6.0, 3 * line.widthF()))
                self.setSymbolPen(line)
                self.setSymbolBrush(pg.mkBrush(line.color()))
            else:
                self.setSymbol(None)

    def dataBounds(self, ax, frac=1.0, orthoRange=None):
        if ax != 1 or not self.opts["logMode"][1]:
            return super().dataBounds(ax, frac, orthoRange)
        x, y = self.xData, self.yData
        if y is None or len(y) == 0:
            return (None, None)
        keep = y > LOG_FLOOR
        if orthoRange is not None:
            keep &= (x >= orthoRange[0]) & (x <= orthoRange[1])
        if not keep.any():
            return (None, None)
        shown = y[keep]
        return (math.log10(shown.min()), math.log10(shown.max()))


def curve(plot: pg.PlotItem, p: QtGui.QPen) -> Curve:
    """A :class:`Curve` in ``plot``; its data must be sanitised, as pyqtgraph skips the check."""
    item = Curve(pen=p, skipFiniteCheck=True)
    plot.addItem(item)
    return item


def event_marks(plot: pg.PlotItem, colour: str) -> pg.PlotDataItem:
    """An item for :func:`event_lines`: a thin vertical line per event."""
    item = Curve(pen=pen(colour, width=1.5), connect="pairs", skipFiniteCheck=True)
    plot.addItem(item)
    return item



class Band:
    """A band in ``plot`` between a lower and an upper curve (a min-max range around a
    mean line), filled with ``colour`` under the plot's curves; the two edge curves are
    not stroked. Its data are sanitised as for :func:`curve`."""

    Z = -0.8     # under the comparison runs' curves (-0.5) and the live ones (0)

    def __init__(self, plot: pg.PlotItem, colour: str):
        self.low = curve(plot, pg.mkPen(None))
        self.high = curve(plot, pg.mkPen(None))
        self.fill = pg.FillBetweenItem(self.low, self.high, brush=pg.mkBrush(colour))
        self.fill.setZValue(self.Z)
        plot.addItem(self.fill)

    def set_data(self, x, low, high) -> None:
        self.low.setData(x, low)
        self.high.setData(x, high)

    def clear(self) -> None:
        self.set_data([], [], [])
