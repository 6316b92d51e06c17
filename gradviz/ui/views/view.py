"""The :class:`View` contract every panel of the dashboard follows, and the
layer/direction selector that views of one recurrent layer share."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from gradviz.ui import export
from gradviz.ui.dialogs import FileDialogs
from gradviz.ui.views.flow import FlowBar
from gradviz.ui.views.items import WrappedText
from gradviz.ui.views.style import BACKGROUND, LAYOUT_MARGINS, LAYOUT_SPACING

if TYPE_CHECKING:
    from gradviz.engine.runs.capture import Capture
    from gradviz.engine.runs.history import History
    from gradviz.ui.state import Comparison


class LayerDirectionSelector(QtWidgets.QComboBox):
    """Chooses one (layer, direction) pair; hidden when the network has only one."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setToolTip("Which recurrent layer and direction to show")
        self.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self._shape = (0, 0)
        self.hide()

    def set_names(self, names: tuple[str, ...]) -> None:
        """What to call each layer (a trace's marked names); () for "layer k"."""
        self._names = tuple(names)

    def set_shape(self, layers: int, directions: int) -> None:
        """Offer every (layer, direction) pair; keeps the choice when it still exists."""
        names = getattr(self, "_names", ())
        if (layers, directions, names) == self._shape:
            return
        keep = self.currentData()
        self.blockSignals(True)
        self.clear()
        for layer in range(layers):
            for d in range(directions):
                text = names[layer] if len(names) == layers else f"layer {layer + 1}"
                if directions == 2:
                    text += ", forward" if d == 0 else ", backward"
                self.addItem(text, (layer, d))
        index = self.findData(keep) if keep is not None else -1
        self.setCurrentIndex(max(index, 0))
        self.blockSignals(False)
        self._shape = (layers, directions, names)
        self.setVisible(layers * directions > 1)

    @property
    def layer_direction(self) -> tuple[int, int]:
        data = self.currentData()
        return data if data is not None else (0, 0)


def join_groups(groups: list[tuple[str, list[str], np.ndarray]]) -> tuple[list[str], np.ndarray]:
    """One table of several runs' tables side by side: (label, header, rows) of each; the
    columns named "label: name", shorter tables padded with nan."""
    length = max(len(rows) for _, _, rows in groups)
    header, columns = [], []
    for label, names, rows in groups:
        padded = np.full((length, len(names)), np.nan)
        if len(rows):
            padded[:len(rows)] = rows
        header += [f"{label}: {name}" for name in names]
        columns.append(padded)
    return header, np.hstack(columns)


class View(QtWidgets.QWidget):
    """One panel of the dashboard.

    Subclasses set ``key``, ``title``, ``help_text`` (how to read the view: 3-6
    sentences on its axes, its colours and what vanishing and exploding look like there)
    and ``page`` (the window's tab the view sits on), build their pyqtgraph items once in
    ``__init__`` and implement :meth:`_redraw` (draw ``self._history`` and
    ``self._latest`` by updating those items), :meth:`_clear_items` and :meth:`csv_table`.
    A right click offers export to PNG, SVG and CSV through :attr:`file_dialogs`.
    """

    key: str = ""
    title: str = ""
    help_text: str = ""
    page: str = "Gradients"

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._history: History | None = None
        self._latest: Capture | None = None
        self._comparisons: tuple[Comparison, ...] = ()
        self._live_label = ""
        self._step: int | None = None
        self._file_dialogs: FileDialogs | None = None
        self._fixed_x: dict[pg.ViewBox, tuple[float, float]] = {}
        self._fixed_y: dict[pg.ViewBox, tuple[float, float]] = {}
        self._export_setup: Callable[[], tuple[str, float]] | None = None
        self.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._show_context_menu)
        # Wraps onto a second row in a narrow panel rather than cutting a choice's text.
        self.toolbar = FlowBar()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addWidget(self.toolbar)

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
        if isinstance(getattr(self, "selector", None), LayerDirectionSelector):
            self.selector.set_names(getattr(history, "layer_names", ()))
        self._redraw()

    def set_comparisons(self, comparisons: tuple[Comparison, ...], live_label: str = "",
                        step: int | None = None) -> None:
        """The runs to draw behind the live one, the live run's label beside them, and the
        step the timeline shows; the next :meth:`set_data` draws them."""
        self._comparisons = tuple(comparisons)
        self._live_label = live_label
        self._step = step

    def clear(self) -> None:
        """No data (a new model is starting): empty plots, zoomed to fit what comes."""
        self._history = None
        self._latest = None
        self._comparisons = ()
        self._step = None
        self._clear_items()
        self.reset_zoom()

    def reset_zoom(self) -> None:
        """Fit every plot to its data again, as pyqtgraph's "View All" does: after a zoom
        the curves of a new model would be off-screen. A fixed range (see
        :meth:`_fix_y_range`) goes back to what it was."""
        if not hasattr(self, "graphics"):
            return
        for item in self.graphics.scene().items():
            if isinstance(item, pg.ViewBox):
                fixed_x, fixed_y = self._fixed_x.get(item), self._fixed_y.get(item)
                item.enableAutoRange(x=fixed_x is None, y=fixed_y is None)
                if fixed_x is not None:
                    item.setXRange(*fixed_x, padding=0.0)
                if fixed_y is not None:
                    item.setYRange(*fixed_y, padding=0.0)

    def _fix_x_range(self, plot: pg.PlotItem, lo: float, hi: float) -> None:
        """Show ``lo`` to ``hi`` on ``plot``'s x axis whatever the data; a zoom reset
        comes back to it."""
        plot.setXRange(lo, hi, padding=0.0)
        plot.enableAutoRange(x=False)
        self._fixed_x[plot.getViewBox()] = (lo, hi)

    def _fix_y_range(self, plot: pg.PlotItem, lo: float, hi: float) -> None:
        """Show ``lo`` to ``hi`` on ``plot``'s y axis whatever the data; a zoom reset
        comes back to it."""
        plot.setYRange(lo, hi, padding=0.0)
        plot.enableAutoRange(y=False)
        self._fixed_y[plot.getViewBox()] = (lo, hi)

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        """The table a CSV export writes. A view that draws runs' histories
        (:meth:`_run_table`) holds every run drawn, one column group per run, each column
        named "label: column" by the run's label; rows of runs of unequal length are padded
        with nan. Other views override this."""
        header, rows = self._run_table(self._history)
        if not self._comparisons:
            return header, rows
        groups = [(self._live_label or "live", header, rows)]
        groups += [(c.label, *self._run_table(c.history)) for c in self._comparisons]
        return join_groups(groups)

    def _run_table(self, history: History | None) -> tuple[list[str], np.ndarray]:
        raise NotImplementedError

    def export(self, path: str | os.PathLike) -> Path:
        """Write the view to ``path``; the suffix (.png, .svg, .csv) picks the format.
        A figure gets the title line and the PNG scale :meth:`set_export_setup` gives.
        Raises :class:`~gradviz.ui.export.ExportError`."""
        title, scale = self._export_setup() if self._export_setup else ("", 1.0)
        shown = self.caption.plain_text() if hasattr(self, "caption") else ""
        if title and hasattr(self, "caption") and not shown:
            self.set_caption(title)
        try:
            return export.save(path, self.figure_widget(), self.csv_table, scale)
        finally:
            if title and hasattr(self, "caption") and not shown:
                self.set_caption("")

    def set_export_setup(self, setup: Callable[[], tuple[str, float]]) -> None:
        """``setup()`` -> (title line naming the run, PNG scale) for each export: the
        window's settings and its File ▸ Export ▸ Image size."""
        self._export_setup = setup

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
    @property
    def file_dialogs(self) -> FileDialogs:
        """The dialogs the context menu exports with: the window's, once it hands them over
        (:meth:`set_file_dialogs`); until then a plain one of the view's own."""
        if self._file_dialogs is None:
            self._file_dialogs = FileDialogs(self)
        return self._file_dialogs

    def set_file_dialogs(self, dialogs: FileDialogs) -> None:
        self._file_dialogs = dialogs

    def context_menu(self) -> QtWidgets.QMenu:
        menu = QtWidgets.QMenu(self)
        for suffix in export.FORMATS:
            action = menu.addAction(f"Export {suffix[1:].upper()}…")
            action.triggered.connect(
                lambda _=False, s=suffix: self.file_dialogs.export_view(self, s))
        return menu

    def _show_context_menu(self, pos: QtCore.QPoint) -> None:
        menu = self.context_menu()
        menu.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(self.mapToGlobal(pos))
