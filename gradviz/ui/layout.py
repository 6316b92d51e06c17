"""The window's layout: the control panel (scrolling) on the left; on the right the
description of the chosen experiment above the views, which sit in tabs by their ``page``
("Gradients", "Why"), each page a grid of panels (a view under its title and its "?"
button), the text view below the grid for language tasks, and the timeline under them all.

:class:`Dashboard` keeps the panels and lets the View menu hide and show them: a hidden
panel's neighbours move up into its place, so the room goes to the views still shown.
"""
from __future__ import annotations

from PyQt6 import QtCore, QtWidgets

GRID_COLUMNS = 3
HELP_BUTTON = "help-button"


class Dashboard:
    """The right-hand side: the pages of view panels. ``panels`` maps each view's key to
    its panel; ``tabs`` is the page tabs; ``splitter`` holds the controls and the plots."""

    def __init__(self, window: QtWidgets.QMainWindow, controls: QtWidgets.QWidget,
                 views: dict, banner: QtWidgets.QWidget | None = None,
                 timeline: QtWidgets.QWidget | None = None):
        self.views = views
        self.panels = {key: _panel(view) for key, view in views.items()}
        self._hidden: set[str] = set()
        self._text_wanted = False
        self._grids: dict[str, QtWidgets.QGridLayout] = {}
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.setTabBarAutoHide(True)   # one page: no tab bar
        for page in dict.fromkeys(view.page for key, view in views.items() if key != "text"):
            self.tabs.addTab(self._page(page), page)

        plots = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(plots)
        column.setContentsMargins(2, 2, 2, 2)
        if banner is not None:
            column.addWidget(banner, 0)
        column.addWidget(self.tabs, 4)
        if "text" in self.panels:
            # Shown for language tasks only; while hidden it takes no room.
            column.addWidget(self.panels["text"], 1)
            self.panels["text"].hide()
        if timeline is not None:
            column.addWidget(timeline, 0)

        self.scroll = QtWidgets.QScrollArea()
        self.scroll.setWidget(controls)
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setMinimumWidth(controls.minimumSizeHint().width()
                                    + self.scroll.verticalScrollBar().sizeHint().width() + 4)
        self.splitter = QtWidgets.QSplitter()
        self.splitter.addWidget(self.scroll)
        self.splitter.addWidget(plots)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setCollapsible(1, False)
        self.splitter.setSizes([self.scroll.minimumWidth(), 10 * self.scroll.minimumWidth()])
        window.setCentralWidget(self.splitter)

    def _page(self, page: str) -> QtWidgets.QWidget:
        widget = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(widget)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        self._grids[page] = grid
        self._flow(page)
        return widget

    def page_of(self, key: str) -> str:
        return self.views[key].page

    def keys_on(self, page: str) -> list[str]:
        return [key for key, view in self.views.items() if view.page == page and key != "text"]

    def _flow(self, page: str) -> None:
        """Lay the page's shown panels out in reading order, GRID_COLUMNS a row."""
        grid = self._grids[page]
        keys = self.keys_on(page)
        for key in keys:
            grid.removeWidget(self.panels[key])
        shown = [key for key in keys if key not in self._hidden]
        # Four panels fill a 2 x 2 grid better than a row of three and one alone.
        columns = 2 if len(shown) == 4 else min(GRID_COLUMNS, max(1, len(shown)))
        for index, key in enumerate(shown):
            grid.addWidget(self.panels[key], index // columns, index % columns)
            self.panels[key].show()
        for key in keys:
            if key in self._hidden:
                self.panels[key].hide()
        for c in range(GRID_COLUMNS):
            grid.setColumnStretch(c, 1 if c < columns else 0)
        rows = -(-len(shown) // columns)
        for r in range(max(grid.rowCount(), rows)):
            grid.setRowStretch(r, 1 if r < rows else 0)

    def set_panel_shown(self, key: str, shown: bool) -> None:
        """Hide or show one view's panel; the others on its page close up or make room."""
        if shown == (key not in self._hidden):
            return
        if shown:
            self._hidden.discard(key)
        else:
            self._hidden.add(key)
        if key == "text":
            self.set_text_wanted(self._text_wanted)
            return
        self._flow(self.page_of(key))

    def panel_shown(self, key: str) -> bool:
        return key not in self._hidden

    def set_text_wanted(self, wanted: bool) -> None:
        """The text view is for language tasks, and only while the user has not hidden it."""
        self._text_wanted = wanted
        if "text" in self.panels:
            self.panels["text"].setVisible(wanted and "text" not in self._hidden)

    def set_controls_shown(self, shown: bool) -> None:
        self.scroll.setVisible(shown)

    def show_view(self, key: str) -> None:
        """Bring the page that holds ``key`` to the front."""
        page = self.page_of(key)
        for index in range(self.tabs.count()):
            if self.tabs.tabText(index) == page:
                self.tabs.setCurrentIndex(index)


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
    """The view under its title, with a "?" button that says how to read it."""
    # A click on a plot takes the focus from the controls, so Space, S and R act on the
    # training instead of the last spin box the user typed in.
    view.setFocusPolicy(QtCore.Qt.FocusPolicy.ClickFocus)
    help_html = f"<b>{view.title}</b><p>{view.help_text}</p>"
    view.setWhatsThis(help_html)
    panel = QtWidgets.QWidget()
    # Equal shares of the grid, whatever each view's toolbar would like.
    panel.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                        QtWidgets.QSizePolicy.Policy.Ignored)
    layout = QtWidgets.QVBoxLayout(panel)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(0)
    header = QtWidgets.QHBoxLayout()
    header.setContentsMargins(0, 0, 0, 0)
    title = QtWidgets.QLabel(view.title)
    font = title.font()
    font.setBold(True)
    font.setPointSizeF(font.pointSizeF() * 1.1)
    title.setFont(font)
    header.addWidget(title, 1)
    if view.help_text:
        button = QtWidgets.QToolButton()
        button.setObjectName(HELP_BUTTON)
        button.setText("?")
        button.setAutoRaise(True)
        button.setToolTip(f"How to read “{view.title}”")
        button.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        button.clicked.connect(lambda _=False, b=button: QtWidgets.QWhatsThis.showText(
            b.mapToGlobal(QtCore.QPoint(0, b.height())), help_html, b))
        header.addWidget(button, 0)
    layout.addLayout(header)
    layout.addWidget(view, 1)
    return panel


__all__ = ["Dashboard", "default_size", "GRID_COLUMNS", "HELP_BUTTON"]
