"""What every view shares: the :class:`View` widget contract, the plot style, the
layer/direction selector and the clean-up of data for log axes.

Style: dark ink on a white background, saturated colours, a bold line for the curve a
plot is about and 11-13 pt fonts, because the plots are read on lecture projectors,
where light-on-dark washes out.
"""
from __future__ import annotations

import html
import math
import os
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.ui import export

if TYPE_CHECKING:
    from gradviz.engine.capture import Capture
    from gradviz.engine.record import History

BACKGROUND = "w"
INK = "k"
GRID = "#d9d9d9"
TICK_FONT_PT = 11
LABEL_STYLE = {"font-size": "12pt", "color": "#000000"}
# Distinct, saturated colours that stay apart on white.
PALETTE = ("#1f5fbf", "#e8730c", "#2a9d3a", "#c8202f", "#7b3fb0", "#8c564b",
           "#d6409f", "#5f5f5f", "#9aa00f", "#12a3b5")
# Flushed denormals reach the plots as exact zeros; log axes need a positive floor.
LOG_FLOOR = 1e-30
# Narrower than this, text is not worth wrapping.
MIN_TEXT_WIDTH = 40
NON_BREAKING_HYPHEN = "\u2011"
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


SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _superscript(exponent: int) -> str:
    return ("⁻" if exponent < 0 else "") + str(abs(exponent)).translate(SUPERSCRIPTS)


def format_magnitude(x: float) -> str:
    """0.02, 150, 10⁻⁵, 2·10⁻⁵: plain decimals where short, powers of ten elsewhere."""
    if 1e-3 <= abs(x) < 1e4:
        return np.format_float_positional(x, precision=3, fractional=False, trim="-")
    mantissa, exponent = f"{x:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return ("" if mantissa == "1" else mantissa + "·") + "10" + _superscript(int(exponent))


# Pixels a tick label may reach past the end of a heatmap's axis: the label of the first
# cell is centred on the image's edge, half of it outside.
EDGE_LABEL_PX = 20


class FitAxis(pg.AxisItem):
    """An axis whose tick labels never run into each other.

    pyqtgraph spaces ticks by the axis length alone, so on a narrow axis the labels of
    0, 200, …, 800 run together into one string; this one widens the major spacing (1, 2,
    5 × 10ᵏ) until the labels fit, with a gap between them.
    """

    LABEL_GAP = 6

    def tickSpacing(self, minVal, maxVal, size):
        levels = super().tickSpacing(minVal, maxVal, size)
        span = abs(maxVal - minVal)
        if not levels or size <= 0 or span == 0:
            return levels
        spacing = chosen = levels[0][0]
        while (span / spacing > 1.0
               and size * spacing / span < self._label_extent(minVal, maxVal, spacing)):
            spacing = next_round_spacing(spacing)
        if spacing == chosen:
            return levels
        return [(spacing, 0.0)] + ([(chosen, 0.0)] if self.style["maxTickLevel"] >= 1 else [])

    def tickStrings(self, values, scale, spacing):
        strings = super().tickStrings(values, scale, spacing)
        if self.logMode or not any(s and "e" in s for s in strings):
            return strings
        # pyqtgraph writes 1e+21 where a number does not print plainly: 10²¹ instead.
        return [format_magnitude(v * scale) if v else "0" for v in values]

    def _label_extent(self, lo: float, hi: float, spacing: float) -> float:
        """Pixels a tick label takes along the axis, gap included: its height on a vertical
        axis, the width of the widest end value printed at ``spacing`` on a horizontal one."""
        metrics = QtGui.QFontMetricsF(self.style["tickFont"] or QtGui.QFont())
        if self.orientation in ("left", "right"):
            return metrics.height() + self.LABEL_GAP
        places = max(0, math.ceil(-math.log10(spacing)))
        ends = (round(v / spacing) * spacing for v in (lo, hi))
        return max(metrics.horizontalAdvance(f"{v:.{places}f}") for v in ends) + self.LABEL_GAP


def next_round_spacing(spacing: float) -> float:
    """The next of 1, 2, 5, 10, 20, … × 10ᵏ above ``spacing``."""
    power = 10.0 ** math.floor(math.log10(spacing) + 1e-9)
    for step in (2.0, 5.0, 10.0):
        if step * power > spacing * (1 + 1e-9):
            return step * power
    return 20.0 * power


class LogAxis(FitAxis):
    """Axis for log-scale plots whose labels stay readable at any range.

    Over a decade or more, decades are labelled (thinned to fit), and 2× and 5× too where
    a decade is tall enough (5× alone where only one decade is in view); over less than a
    decade, where pyqtgraph's own log axis leaves the axis nearly unlabelled, evenly spaced
    values are labelled instead.
    """

    PIXELS_PER_LABEL = 45
    PIXELS_PER_DECADE_FOR_2_5 = 150
    # Where fewer than two decades are in view, 5× is labelled from this height on (it sits
    # 0.3 decade below the next decade: 18 px here), so that no axis shows a single label.
    PIXELS_PER_DECADE_FOR_5 = 60

    def __init__(self, orientation: str = "left", **kw):
        super().__init__(orientation, **kw)
        # pyqtgraph would pick an SI prefix from the log10 values, not from the magnitudes.
        self.enableAutoSIPrefix(False)
        self._narrow = False
        self._minor_labels: tuple[float, ...] = ()   # mantissas labelled on the minor level

    def logTickValues(self, minVal, maxVal, size, stdTicks):
        lo, hi = sorted((minVal, maxVal))
        span = hi - lo
        self._narrow = span < 1.0
        if self._narrow:
            v_lo, v_hi = 10.0 ** lo, 10.0 ** hi
            levels = []
            seen = np.zeros(0)
            for spacing, offset in self.tickSpacing(v_lo, v_hi, size):
                first = math.ceil((v_lo - offset) / spacing) * spacing + offset
                values = first + spacing * np.arange(int((v_hi - first) / spacing) + 1)
                values = values[values > 0]
                # A finer level repeats the coarser level's ticks; keep each tick once.
                fresh = ~np.isclose(values[:, None], seen[None, :], rtol=0,
                                    atol=spacing * 0.01).any(axis=1)
                seen = np.concatenate([seen, values[fresh]])
                levels.append((spacing, list(np.log10(values[fresh]))))
            return levels
        room = max(2, int(size / self.PIXELS_PER_LABEL))
        every = max(1, math.ceil(span / room))
        decades = np.arange(math.ceil(lo), math.floor(hi) + 1)
        major = [float(d) for d in decades if d % every == 0]
        if every > 1:
            minor = [float(d) for d in decades if d % every != 0]
        else:
            minor = [float(d + math.log10(m)) for d in range(math.floor(lo), math.ceil(hi))
                     for m in range(2, 10) if lo <= d + math.log10(m) <= hi]
        per_decade = size / span
        if every == 1 and per_decade >= self.PIXELS_PER_DECADE_FOR_2_5:
            self._minor_labels = (2.0, 5.0)
        elif every == 1 and len(major) < 2 and per_decade >= self.PIXELS_PER_DECADE_FOR_5:
            self._minor_labels = (5.0,)
        else:
            self._minor_labels = ()
        return [(float(every), major), (None, minor)]

    def logTickStrings(self, values, scale, spacing):
        # logTickValues gives the minor level of a wide range no spacing (None).
        major = self._narrow or spacing is not None
        strings = []
        for v in values:
            x = 10.0 ** v * scale
            mantissa = x / 10.0 ** math.floor(v + 1e-9)
            if major or any(abs(mantissa - m) < 1e-6 for m in self._minor_labels):
                strings.append(format_magnitude(x))
            else:
                strings.append(None)   # pyqtgraph skips None, and does not count it as text
        return strings


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
               "box": "■"}

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


def finite_points(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop points whose x or y is not finite. ``x``, ``y``: (N,) -> two (M,) float64 arrays."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y) & np.isfinite(x)
    return x[keep], y[keep]


def positive_finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop points whose y is not finite, raise the rest to :data:`LOG_FLOOR` for a log axis.

    ``x``, ``y``: (N,) -> two (M,) float64 arrays, M <= N.
    """
    x, y = finite_points(x, y)
    return x, np.maximum(y, LOG_FLOOR)


def event_lines(x: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertical segments at each of ``x`` (E,), spanning the finite positive range of
    ``values`` so that they never stretch a log axis; draw with ``connect="pairs"``.

    Returns two (2E,) float64 arrays.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.1, 10.0)
    if hi <= lo * 1.01:
        lo, hi = lo / 1.5, hi * 1.5
    x = np.repeat(np.asarray(x, dtype=np.float64), 2)
    return x, np.tile([lo, hi], len(x) // 2)


def event_marks(plot: pg.PlotItem, colour: str) -> pg.PlotDataItem:
    """An item for :func:`event_lines`: a thin vertical line per event."""
    item = Curve(pen=pen(colour, width=1.5), connect="pairs", skipFiniteCheck=True)
    plot.addItem(item)
    return item


class LayerDirectionSelector(QtWidgets.QComboBox):
    """Chooses one (layer, direction) pair; hidden when the network has only one."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setToolTip("Which recurrent layer and direction to show")
        self._shape = (0, 0)
        self.hide()

    def set_shape(self, layers: int, directions: int) -> None:
        """Offer every (layer, direction) pair; keeps the choice when it still exists."""
        if (layers, directions) == self._shape:
            return
        keep = self.currentData()
        self.blockSignals(True)
        self.clear()
        for layer in range(layers):
            for d in range(directions):
                text = f"layer {layer + 1}"
                if directions == 2:
                    text += " forward" if d == 0 else " backward"
                self.addItem(text, (layer, d))
        index = self.findData(keep) if keep is not None else -1
        self.setCurrentIndex(max(index, 0))
        self.blockSignals(False)
        self._shape = (layers, directions)
        self.setVisible(layers * directions > 1)

    @property
    def layer_direction(self) -> tuple[int, int]:
        data = self.currentData()
        return data if data is not None else (0, 0)


class View(QtWidgets.QWidget):
    """One panel of the dashboard.

    Subclasses set ``key`` and ``title``, build their pyqtgraph items once in
    ``__init__`` and implement :meth:`_redraw` (draw ``self._history`` and
    ``self._latest`` by updating those items), :meth:`_clear_items` and :meth:`csv_table`.
    """

    key: str = ""
    title: str = ""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._history: History | None = None
        self._latest: Capture | None = None
        self.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._show_context_menu)
        self.toolbar = QtWidgets.QHBoxLayout()
        self.toolbar.setContentsMargins(0, 0, 0, 0)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addLayout(self.toolbar)

    def _add_graphics(self) -> pg.GraphicsLayout:
        """The plot area: one pyqtgraph scene, so PNG and SVG export hold every plot.

        Returns ``self.canvas``, the layout the view's plots go in; above it is a caption
        line, empty (and of no height) unless :meth:`set_caption` fills it.
        """
        self.graphics = pg.GraphicsLayoutWidget(self)
        self.graphics.setBackground(BACKGROUND)
        self.caption = WrappedText(size_pt=12)
        self.graphics.addItem(self.caption, row=0, col=0)
        self.canvas = self.graphics.addLayout(row=1, col=0)
        # Qt's default margins (9 px around each layout, 6 px between items) take a fifth
        # of a small panel's height.
        self.graphics.ci.setContentsMargins(*LAYOUT_MARGINS)
        self.graphics.ci.setSpacing(0)
        self.canvas.setContentsMargins(0, 0, 0, 0)
        self.canvas.setSpacing(LAYOUT_SPACING)
        self.layout().addWidget(self.graphics, 1)
        return self.canvas

    def set_caption(self, text: str) -> None:
        """A line above the plots naming the run, for figures that leave the app."""
        self.caption.set_text(text)

    def _show_cell_plot(self, show: bool) -> None:
        """For views with an h_t plot and a c_t plot (``self.plot_c`` at row 1, column 1 of
        the canvas, ``self._c_shown``): only LSTM cells have c_t, so otherwise the c_t plot
        leaves the layout."""
        if show == self._c_shown:
            return
        if show:
            self.canvas.addItem(self.plot_c, row=1, col=1)
        else:
            self.canvas.removeItem(self.plot_c)
        self._c_shown = show

    def _add_selector(self) -> LayerDirectionSelector:
        selector = LayerDirectionSelector(self)
        selector.currentIndexChanged.connect(self._redraw)
        self.toolbar.addWidget(selector)
        return selector

    # -- the contract -----------------------------------------------------------------
    def set_data(self, history: History, latest: Capture | None) -> None:
        """Redraw from ``history`` (all recorded rows) and ``latest`` (newest full capture)."""
        self._history = history
        self._latest = latest
        self._redraw()

    def clear(self) -> None:
        self._history = None
        self._latest = None
        self._clear_items()

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        raise NotImplementedError

    def export(self, path: str | os.PathLike) -> None:
        """Write the view to ``path``; the suffix (.png, .svg, .csv) picks the format."""
        export.export_view(self, path)

    def figure_widget(self) -> QtWidgets.QWidget:
        """The part of the view that PNG and SVG export show (the plots, not the controls)."""
        return self.graphics

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(640, 400)

    # -- for subclasses -----------------------------------------------------------------
    def _redraw(self) -> None:
        raise NotImplementedError

    def _clear_items(self) -> None:
        raise NotImplementedError

    # -- context menu -------------------------------------------------------------------
    def context_menu(self) -> QtWidgets.QMenu:
        menu = QtWidgets.QMenu(self)
        for label, suffix, filt in (("Export PNG…", ".png", "PNG image (*.png)"),
                                    ("Export SVG…", ".svg", "SVG drawing (*.svg)"),
                                    ("Export CSV…", ".csv", "CSV table (*.csv)")):
            action = menu.addAction(label)
            action.triggered.connect(lambda _=False, s=suffix, f=filt: self._export_dialog(s, f))
        return menu

    def _show_context_menu(self, pos: QtCore.QPoint) -> None:
        menu = self.context_menu()
        menu.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(self.mapToGlobal(pos))

    def _export_dialog(self, suffix: str, file_filter: str) -> None:
        start = os.path.join(QtCore.QDir.homePath(), self.key + suffix)
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, f"Export {self.title}", start,
                                                        file_filter)
        if not path:
            return
        if not path.lower().endswith(suffix):
            path += suffix
        try:
            self.export(path)
        except export.ExportError as err:
            QtWidgets.QMessageBox.warning(self, "Export failed", str(err))
