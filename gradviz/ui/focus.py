"""Which views the window shows large, and how it keeps them large (issue 19's "focus").

Each guided experiment names the one or two views its lesson is about
(:attr:`Experiment.focus <gradviz.experiments.Experiment.focus>`); without one the window
focuses :data:`DEFAULT_FOCUS`. The :class:`~gradviz.ui.layout.Dashboard` lays the focus
views out large with the others of their page in a strip under them; :class:`Focus` then
makes sure that the focus views get at least :data:`MIN_SHARE` of the window: where they
do not, it hides the control panel (during an experiment, unless the user chose to show
it), then moves the other views to a page of their own. The text panel of a language
task takes at most :data:`TEXT_SHARE` of the plot column.

A double click on a view (its plots or its title), or F with the pointer over it (the
first focus view otherwise), makes it fill its page; Esc brings the layout back.

A page without focus views (the "Why" page, for most lessons) whose panels would be lower
than :data:`MIN_ROW_PX` in two rows keeps one row, and the rest go on to a page of their
own: on a 1280 × 720 projector the five "Why" views were 212 pixels high each, their plots
~60 pixels under their titles and keys.
"""
from __future__ import annotations

from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.ui.layout import GRID_SPACING, columns_for

# What a first-time user learns most from: how the gradient fades through time, and
# whether the model learns.
DEFAULT_FOCUS = ("gradtime", "loss")
MIN_SHARE = 0.40
TEXT_SHARE = 0.22
# The strip of the other views only where each is at least this tall (times the scale):
# lower, their axes cannot be read and they go to a page of their own.
MIN_STRIP_PX = 200
# A page of panels in two rows only where each row is at least this tall (times the scale):
# the "Why" views put two or three lines of key above their plots, which leave a plot of
# ~60 pixels in a row of 232 (1280 x 720) and ~120 in one of 274 (1280 x 800).
MIN_ROW_PX = 260


def scale_of(window) -> float:
    """The window's presentation scale (View ▸ Bigger), 1 before it has one."""
    return getattr(getattr(window, "presentation", None), "scale", 1.0)


def settle() -> None:
    """Let the layouts take their new geometry now."""
    for _ in range(3):
        QtWidgets.QApplication.sendPostedEvents(None, QtCore.QEvent.Type.LayoutRequest)


def area_share(window, keys) -> float:
    """The fraction of the window's area the views ``keys`` cover on screen."""
    total = sum(window.views[k].width() * window.views[k].height()
                for k in keys if window.views[k].isVisible())
    return total / max(1, window.width() * window.height())


class Focus(QtCore.QObject):
    """The focus of ``window`` (a MainWindow): set from the experiment loaded, kept at
    :data:`MIN_SHARE` of the window as it is resized or its text scaled."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.dashboard = window.dashboard
        self.experiment = None
        self._controls_auto_hidden = False
        self._controls_chosen = False     # the user toggled the control panel
        self._fitting = False
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.fit)
        window.installEventFilter(self)
        for key, panel in self.dashboard.panels.items():
            if key != "text":
                panel.installEventFilter(self)
                view = window.views[key]
                if hasattr(view, "graphics"):
                    view.graphics.viewport().installEventFilter(self)
        self.dashboard.set_focus(DEFAULT_FOCUS)
        controls = window.view_actions.get("controls") if hasattr(window, "view_actions") else None
        if controls is not None:
            controls.triggered.connect(self._controls_toggled)

    @property
    def keys(self) -> tuple[str, ...]:
        return self.dashboard.focus

    def set_experiment(self, experiment) -> None:
        """Focus the views ``experiment`` names (the default ones if it names none)."""
        self.experiment = experiment
        self._controls_chosen = False
        self.dashboard.set_maximized(None)
        focus = tuple(getattr(experiment, "focus", ()) or DEFAULT_FOCUS)
        self.dashboard.set_focus(focus, self.dashboard.others_apart)
        self.dashboard.show_view(focus[0])
        self.fit()

    # -- keeping the focus large -------------------------------------------------------
    def fit(self) -> None:
        """Give the focus views MIN_SHARE of the window, taking the least away: first the
        strip of the other views under them is tried, then without the control panel
        (during an experiment), then with the others on their own page."""
        if self._fitting or not self.window.isVisible():
            return
        self._fitting = True
        # The page in front stays in front, or where it is gone its views' new page: trying
        # the layouts hides and shows pages, and Qt brings another to the front when the
        # current one is hidden (a resize on "Other views" jumped to "Why").
        tabs, dashboard = self.dashboard.tabs, self.dashboard
        front = tabs.currentIndex()
        in_front = [k for k in dashboard.views
                    if k != "text" and dashboard.page_of(k) == tabs.tabText(front)]
        try:
            self._limit_text()
            options = [(True, False), (True, True)]
            if self.experiment is not None and not self._controls_chosen:
                options += [(False, False), (False, True)]
            for controls, apart in options:
                self._apply(controls, apart)
                if self.dashboard.maximized or self._fits(apart):
                    break
            self._split_low_pages()
            if tabs.isTabVisible(front):
                tabs.setCurrentIndex(front)
            elif in_front:
                dashboard.show_view(in_front[0])
        finally:
            self._fitting = False
        self._rescale_soon()     # axis titles fitted to their new lengths

    def _fits(self, apart: bool) -> bool:
        if area_share(self.window, self.keys) < MIN_SHARE:
            return False
        if apart:
            return True
        scale = scale_of(self.window)
        page = self.dashboard.focus_page
        strip = [k for k in self.dashboard.keys_on(page) if k not in self.keys
                 and self.window.views[k].isVisible()]
        return all(self.window.views[k].height() >= MIN_STRIP_PX * scale for k in strip)

    def _split_low_pages(self) -> None:
        """Split each page without focus views whose two rows of panels would be lower than
        MIN_ROW_PX (:meth:`Dashboard.set_split`); join it again where they would not."""
        if self.dashboard.maximized is not None:
            return
        scale = scale_of(self.window)
        room = self.dashboard.tabs.currentWidget().height()
        for page in self.dashboard.pages:
            if page == self.dashboard.focus_page:
                continue
            n = len(self.dashboard.shown_of(page))
            rows = -(-n // columns_for(n))
            low = rows > 1 and (room - GRID_SPACING * (rows - 1)) / rows < MIN_ROW_PX * scale
            self.dashboard.set_split(page, low)
        settle()

    def _apply(self, controls: bool, apart: bool) -> None:
        if not self._controls_chosen and self._controls_auto_hidden == controls:
            self._controls_auto_hidden = not controls
            self._set_controls(controls)
        self.dashboard.set_focus(self.keys, apart)
        self._limit_text()
        settle()

    def _set_controls(self, shown: bool) -> None:
        action = getattr(self.window, "view_actions", {}).get("controls")
        if action is not None:
            action.setChecked(shown)       # its toggled signal shows or hides the panel
        else:
            self.dashboard.set_controls_shown(shown)

    def _controls_toggled(self, _checked: bool) -> None:
        self._controls_chosen = True
        self._controls_auto_hidden = False

    def _limit_text(self) -> None:
        """The text panel takes at most TEXT_SHARE of the plot column's height."""
        panel = self.dashboard.panels.get("text")
        if panel is None:
            return
        room = self.dashboard.tabs.height() + (panel.height() if panel.isVisible() else 0)
        panel.setMaximumHeight(max(60, int(room * TEXT_SHARE)))

    # -- one view large ----------------------------------------------------------------
    def toggle_maximized(self, key: str | None = None) -> None:
        """``key`` (the view under the pointer, else the first focus view) fills its page,
        or the layout comes back if it already does."""
        if self.dashboard.maximized is not None:
            self.restore()
            return
        key = key or self._view_under_pointer() or self.keys[0]
        self.dashboard.set_maximized(key)
        self._rescale_soon()

    def restore(self) -> None:
        if self.dashboard.maximized is not None:
            self.dashboard.set_maximized(None)
            self.window.scheduler.mark_stale()
            self.fit()
        self._rescale_soon()

    def _rescale_soon(self) -> None:
        presentation = getattr(self.window, "presentation", None)
        if presentation is not None:
            presentation.schedule()

    def _view_under_pointer(self) -> str | None:
        widget = QtWidgets.QApplication.widgetAt(QtGui.QCursor.pos())
        while widget is not None:
            for key, panel in self.dashboard.panels.items():
                if widget is panel and key != "text":
                    return key
            widget = widget.parentWidget()
        return None

    def eventFilter(self, obj, event) -> bool:
        kind = event.type()
        if getattr(self, "dashboard", None) is None:    # Qt is tearing it down
            return False
        if obj is self.window:
            if kind in (QtCore.QEvent.Type.Resize, QtCore.QEvent.Type.Show):
                self._timer.start()
            return False
        if kind == QtCore.QEvent.Type.MouseButtonDblClick:
            for key, panel in self.dashboard.panels.items():
                view = self.window.views[key]
                if obj is panel or (hasattr(view, "graphics")
                                    and obj is view.graphics.viewport()):
                    self.toggle_maximized(key)
                    self.window.scheduler.mark_stale()
                    return True
        return False


__all__ = ["Focus", "DEFAULT_FOCUS", "MIN_SHARE", "TEXT_SHARE", "MIN_STRIP_PX", "MIN_ROW_PX",
           "area_share", "scale_of", "settle"]
