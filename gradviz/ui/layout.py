"""The window's layout: the control panel (scrolling) on the left; on the right the
description of the chosen experiment above the views, which sit in tabs by their ``page``
("Gradients", "Why"), each page a grid of panels (a view under its title and its "?"
button), the text view below the grid for language tasks, and the timeline under them all.

:class:`Dashboard` keeps the panels and lets the View menu hide and show them: a hidden
panel's neighbours move up into its place, so the room goes to the views still shown.
It also lays out the *focus* (:mod:`gradviz.ui.focus` decides which views and where the
others go): the focus views large in a row, the others of their page in a strip of small
panels under them or on a page of their own ("Other views"); and one view *maximised*,
alone on its page. A page too low for two rows of panels is *split*: its first row stays,
the rest go on to a page of their own ("Why (more)").
"""
from __future__ import annotations

from PyQt6 import QtCore, QtWidgets

GRID_COLUMNS = 3
GRID_SPACING = 6      # pixels between the panels of a page
HELP_BUTTON = "help-button"
OTHER_PAGE = "Other views"
# Where a split page's panels past its first row go: the page's name and this.
MORE = " (more)"
# Height of the focus row to the strip of the other views under it.
FOCUS_STRETCH, STRIP_STRETCH = 3, 1


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
        self.focus: tuple[str, ...] = ()      # the views the lesson is about
        self.others_apart = False             # the focus page's other views on OTHER_PAGE
        self.maximized: str | None = None     # the one view filling its page
        self.split: set[str] = set()          # pages whose second row is on page + MORE
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.setTabBarAutoHide(True)   # one page: no tab bar
        self.pages = list(dict.fromkeys(view.page for key, view in views.items()
                                        if key != "text"))
        for page in self.pages:
            self.tabs.addTab(self._page(page), page)
            self.tabs.setTabVisible(self.tabs.addTab(self._page(page + MORE), page + MORE),
                                    False)
        self.tabs.insertTab(1, self._page(OTHER_PAGE), OTHER_PAGE)
        self.tabs.setTabVisible(1, False)

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
        self.plots = plots
        window.setCentralWidget(self.splitter)

    def _page(self, page: str) -> QtWidgets.QWidget:
        widget = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(widget)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(GRID_SPACING)
        self._grids[page] = grid
        self._flow(page)
        return widget

    def page_of(self, key: str) -> str:
        view_page = self.views[key].page
        if self.focus and view_page == self.focus_page:
            return OTHER_PAGE if self.others_apart and key not in self.focus else view_page
        if view_page in self.split:
            shown = self.shown_of(view_page)
            if key in shown[columns_for(len(shown)):]:
                return view_page + MORE
        return view_page

    def shown_of(self, page: str) -> list[str]:
        """The panels of the views that belong to ``page``, not hidden, in reading order."""
        return [key for key, view in self.views.items()
                if key != "text" and view.page == page and key not in self._hidden]

    def set_split(self, page: str, split: bool) -> None:
        """With ``split``, ``page`` keeps its first row of panels (:func:`columns_for` of
        them) and the others go on to the page ``page + MORE``; without, they come back."""
        if split != (page in self.split):
            if split:
                self.split.add(page)
            else:
                self.split.discard(page)
            self._reflow()

    @property
    def focus_page(self) -> str | None:
        return self.views[self.focus[0]].page if self.focus else None

    def keys_on(self, page: str) -> list[str]:
        return [key for key in self.views if self.page_of(key) == page and key != "text"]

    def set_focus(self, focus: tuple[str, ...], others_apart: bool = False) -> None:
        """Lay the page of the ``focus`` views out around them (see the module's text);
        ``others_apart``: the other views of that page on a page of their own."""
        focus = tuple(key for key in focus if key in self.views and key != "text")
        if (focus, others_apart and bool(focus)) == (self.focus, self.others_apart):
            return
        self.focus, self.others_apart = focus, others_apart and bool(focus)
        self._reflow()

    def set_maximized(self, key: str | None) -> None:
        """``key``'s panel alone fills its page (None: the layout comes back)."""
        if key is not None and (key not in self.views or key == "text"):
            return
        if key != self.maximized:
            self.maximized = key
            self._reflow()
            if key is not None:
                self.show_view(key)

    def _reflow(self) -> None:
        for page in self._grids:
            grid = self._grids[page]
            for key in self.views:
                if key != "text" and grid.indexOf(self.panels[key]) >= 0:
                    grid.removeWidget(self.panels[key])
        for page in self._grids:
            self._flow(page)
        for page in [OTHER_PAGE] + [p + MORE for p in self.pages]:
            index = self.tabs.indexOf(self._grids[page].parentWidget())
            self.tabs.setTabVisible(index, bool(self.keys_on(page)))

    def _flow(self, page: str) -> None:
        """Lay the page's shown panels out: the maximised one alone, the focus views above
        the others, or all in reading order, GRID_COLUMNS a row."""
        grid = self._grids[page]
        keys = self.keys_on(page)
        for key in keys:
            grid.removeWidget(self.panels[key])
        shown = [key for key in keys if key not in self._hidden]
        if self.maximized in shown:
            shown = [self.maximized]
        focus = [key for key in self.focus if key in shown]
        shown = focus + [key for key in shown if key not in focus]
        if focus and len(shown) > len(focus):
            self._flow_focus(grid, keys, focus, [k for k in shown if k not in focus])
            return
        columns = columns_for(len(shown))
        for index, key in enumerate(shown):
            grid.addWidget(self.panels[key], index // columns, index % columns)
            self.panels[key].show()
        for key in keys:
            if key not in shown:
                self.panels[key].hide()
        for c in range(max(grid.columnCount(), GRID_COLUMNS)):
            grid.setColumnStretch(c, 1 if c < columns else 0)
        rows = -(-len(shown) // columns)
        for r in range(max(grid.rowCount(), rows)):
            grid.setRowStretch(r, 1 if r < rows else 0)

    def _flow_focus(self, grid: QtWidgets.QGridLayout, keys: list[str], focus: list[str],
                    others: list[str]) -> None:
        """The focus views side by side in a tall row, the others in a low strip under them."""
        columns = len(focus) * len(others)     # both rows divide it evenly
        for index, key in enumerate(focus):
            span = columns // len(focus)
            grid.addWidget(self.panels[key], 0, index * span, 1, span)
        for index, key in enumerate(others):
            span = columns // len(others)
            grid.addWidget(self.panels[key], 1, index * span, 1, span)
        for key in keys:
            self.panels[key].setVisible(key in focus or key in others)
        for c in range(max(grid.columnCount(), columns)):
            grid.setColumnStretch(c, 1 if c < columns else 0)
        for r in range(max(grid.rowCount(), 2)):
            grid.setRowStretch(r, (FOCUS_STRETCH, STRIP_STRETCH)[r] if r < 2 else 0)

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
        self._reflow()

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


def columns_for(n: int) -> int:
    """How many columns a grid of ``n`` panels has: up to GRID_COLUMNS, and two for four (a
    2 x 2 grid fills the page better than a row of three and one alone)."""
    return 2 if n == 4 else min(GRID_COLUMNS, max(1, n))


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


__all__ = ["Dashboard", "default_size", "columns_for", "GRID_COLUMNS", "GRID_SPACING",
           "HELP_BUTTON", "OTHER_PAGE", "MORE"]
