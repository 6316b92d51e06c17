"""The window's layout: the control panel (scrolling) on the left, the views in a grid
on the right, each under its title, the text view below them for language tasks."""
from __future__ import annotations

from PyQt6 import QtCore, QtWidgets

GRID_COLUMNS = 3


def build_layout(window: QtWidgets.QMainWindow, controls: QtWidgets.QWidget,
                 views: dict, timeline: QtWidgets.QWidget | None = None
                 ) -> dict[str, QtWidgets.QWidget]:
    """Lay out ``window``'s central widget, the ``timeline`` under the plots; returns each
    view's panel (view + title)."""
    scroll = QtWidgets.QScrollArea()
    scroll.setWidget(controls)
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setMinimumWidth(controls.minimumSizeHint().width()
                           + scroll.verticalScrollBar().sizeHint().width() + 4)

    grid_widget = QtWidgets.QWidget()
    grid = QtWidgets.QGridLayout(grid_widget)
    grid.setContentsMargins(0, 0, 0, 0)
    grid.setSpacing(6)
    panels = {key: _panel(view) for key, view in views.items()}
    grid_views = [key for key in panels if key != "text"]
    for index, key in enumerate(grid_views):
        grid.addWidget(panels[key], index // GRID_COLUMNS, index % GRID_COLUMNS)
    for column in range(GRID_COLUMNS):
        grid.setColumnStretch(column, 1)
    plots = QtWidgets.QWidget()
    column = QtWidgets.QVBoxLayout(plots)
    column.setContentsMargins(2, 2, 2, 2)
    column.addWidget(grid_widget, 4)
    if "text" in panels:
        # Shown for language tasks only; while hidden it takes no room.
        column.addWidget(panels["text"], 1)
        panels["text"].hide()
    if timeline is not None:
        column.addWidget(timeline)

    splitter = QtWidgets.QSplitter()
    splitter.addWidget(scroll)
    splitter.addWidget(plots)
    splitter.setStretchFactor(0, 0)
    splitter.setStretchFactor(1, 1)
    splitter.setCollapsible(1, False)
    splitter.setSizes([scroll.minimumWidth(), 10 * scroll.minimumWidth()])
    window.setCentralWidget(splitter)
    return panels


def default_size(window: QtWidgets.QMainWindow) -> None:
    """90% of the screen but at least 1280 x 800 (the whole of a smaller screen) and at
    most 1920 x 1080: six plots need the room."""
    screen = window.screen().availableGeometry() if window.screen() else None
    if screen is None:
        window.resize(1280, 800)
        return
    window.resize(min(screen.width(), max(1280, min(1920, int(screen.width() * 0.9)))),
                  min(screen.height(), max(800, min(1080, int(screen.height() * 0.9)))))


def _panel(view) -> QtWidgets.QWidget:
    """The view under its title."""
    # A click on a plot takes the focus from the controls, so Space, S and R act on the
    # training instead of the last spin box the user typed in.
    view.setFocusPolicy(QtCore.Qt.FocusPolicy.ClickFocus)
    panel = QtWidgets.QWidget()
    # Equal shares of the grid, whatever each view's toolbar would like.
    panel.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                        QtWidgets.QSizePolicy.Policy.Ignored)
    layout = QtWidgets.QVBoxLayout(panel)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(0)
    title = QtWidgets.QLabel(view.title)
    font = title.font()
    font.setBold(True)
    font.setPointSizeF(font.pointSizeF() * 1.1)
    title.setFont(font)
    layout.addWidget(title)
    layout.addWidget(view, 1)
    return panel


__all__ = ["build_layout", "default_size", "GRID_COLUMNS"]
