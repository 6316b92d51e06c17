"""For the lecture hall: full screen (F11), one scale for every font, line and marker of
the plots and panels (Ctrl+= / Ctrl+− / Ctrl+0, remembered), the projector theme, and a
view made to fill its page (F or a double click; Esc) — the View menu's second half.
:func:`install` gives a MainWindow its :class:`Presentation` and its
:class:`~gradviz.ui.focus.Focus`.
"""
from __future__ import annotations

from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.ui.focus import Focus
from gradviz.ui.theme import DEFAULT_THEME, SCALES, THEMES, apply_to_scene, apply_to_widgets

SCALE_KEY = "view/scale"
THEME_KEY = "view/theme"
# Items the views make later (a comparison run's curve) get the scale and theme within
# SOON_MS of the change that made them, or REAPPLY_MS while the scale or theme differs
# from the default. Walking the shown views' items costs ~5-10 ms.
SOON_MS = 300
REAPPLY_MS = 1500


class Presentation(QtCore.QObject):
    """The scale and theme of ``window`` (a MainWindow), remembered in its prefs."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        settings = window.prefs.settings
        try:
            scale = float(settings.value(SCALE_KEY, 1.0))
        except (TypeError, ValueError):
            scale = 1.0
        self.scale = min(SCALES, key=lambda s: abs(s - scale))
        theme = settings.value(THEME_KEY, DEFAULT_THEME)
        self.theme = THEMES[theme if theme in THEMES else DEFAULT_THEME]
        # After a change that makes items (a new run, a comparison) or shows other views,
        # once the views have drawn; and now and then while the scale or theme is not the
        # default, for items a view makes as data comes.
        self._soon = QtCore.QTimer(self)
        self._soon.setSingleShot(True)
        self._soon.setInterval(SOON_MS)
        self._soon.timeout.connect(self.apply_scenes)
        for signal in (window.state.runs_changed, window.state.comparisons_changed,
                       window.dashboard.tabs.currentChanged):
            signal.connect(lambda *_: self._soon.start())
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(REAPPLY_MS)
        self._timer.timeout.connect(self.apply_scenes)

    def schedule(self) -> None:
        """Apply the scale and theme to the shown views' items soon (after they drew)."""
        self._soon.start()

    def eventFilter(self, obj, event) -> bool:
        window = getattr(self, "window", None)     # None while Qt is tearing it down
        if (obj is window and event.type() == QtCore.QEvent.Type.WindowStateChange
                and hasattr(window, "act_full_screen")):
            window.act_full_screen.setChecked(window.isFullScreen())
        return False

    def set_scale(self, scale: float) -> None:
        self.scale = float(scale)
        self.window.prefs.settings.setValue(SCALE_KEY, self.scale)
        self.apply()

    def zoom(self, steps: int) -> None:
        """One step up or down the SCALES (0: back to 1)."""
        if steps == 0:
            self.set_scale(1.0)
            return
        index = min(range(len(SCALES)), key=lambda i: abs(SCALES[i] - self.scale))
        self.set_scale(SCALES[max(0, min(len(SCALES) - 1, index + steps))])
        self.window.statusBar().showMessage(f"Scale {self.scale:g}× (Ctrl+0: 1×)", 3000)

    def set_theme(self, name: str) -> None:
        self.theme = THEMES[name]
        self.window.prefs.settings.setValue(THEME_KEY, name)
        self.apply()

    def apply(self) -> None:
        """Everything at the scale and in the theme now chosen."""
        window = self.window
        apply_to_widgets(window, self.scale)
        controls = window.dashboard.scroll
        controls.setMinimumWidth(window.controls.minimumSizeHint().width()
                                 + controls.verticalScrollBar().sizeHint().width() + 4)
        window.banner.fit_watch()
        self.apply_scenes()
        for action in getattr(window, "theme_actions", {}).values():
            action.setChecked(action.data() == self.theme.name)
        if self.scale != 1.0 or self.theme.name != DEFAULT_THEME:
            self._timer.start()
        else:
            self._timer.stop()
        window.focus.fit()
        self._soon.start()

    def apply_scenes(self) -> None:
        """The scale and theme on the items of the views on screen (the others get them
        when their page is shown)."""
        for view in self.window.views.values():
            if hasattr(view, "graphics") and view.isVisible():
                apply_to_scene(view.graphics.scene(), self.scale, self.theme)


def _add(window, menu: QtWidgets.QMenu, text: str, slot, keys=(), tip: str = "",
         checkable: bool = False) -> QtGui.QAction:
    action = QtGui.QAction(text, window, checkable=checkable)
    if keys:
        action.setShortcuts([QtGui.QKeySequence(k) for k in keys])
        action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
    if tip:
        action.setToolTip(tip)
        action.setStatusTip(tip)
    action.triggered.connect(slot)
    menu.addAction(action)
    window.addAction(action)
    return action


def _view_menu(window) -> QtWidgets.QMenu:
    for action in window.menuBar().actions():
        if action.menu() is not None and action.text().replace("&", "") == "View":
            return action.menu()
    return window.menuBar().addMenu("&View")


def toggle_full_screen(window) -> None:
    if window.isFullScreen():
        window.showNormal()
    else:
        window.showFullScreen()


def install(window) -> Presentation:
    """Give ``window`` its focus (``window.focus``), presentation (``window.presentation``)
    and the View menu's actions for them; applies the remembered scale and theme."""
    window.focus = Focus(window)
    presentation = window.presentation = Presentation(window)
    menu = _view_menu(window)
    menu.addSection("Presentation")
    window.act_full_screen = _add(window, menu, "Full screen", lambda: toggle_full_screen(window),
                                  ("F11",), "Full screen on and off (F11)", checkable=True)
    window.act_bigger = _add(window, menu, "Bigger", lambda: presentation.zoom(1),
                             ("Ctrl+=", "Ctrl++"), "Every text, line and marker bigger (Ctrl+=)")
    window.act_smaller = _add(window, menu, "Smaller", lambda: presentation.zoom(-1),
                              ("Ctrl+-",), "Every text, line and marker smaller (Ctrl+−)")
    window.act_actual = _add(window, menu, "Actual size", lambda: presentation.zoom(0),
                             ("Ctrl+0",), "Back to scale 1 (Ctrl+0)")
    themes = menu.addMenu("Theme")
    group = QtGui.QActionGroup(window)
    window.theme_actions = {}
    for name, theme in THEMES.items():
        action = themes.addAction(theme.label)
        action.setCheckable(True)
        action.setData(name)
        action.setChecked(name == presentation.theme.name)
        action.triggered.connect(lambda _=False, n=name: presentation.set_theme(n))
        group.addAction(action)
        window.theme_actions[name] = action
    window.act_maximize = _add(window, menu, "Enlarge view",
                               lambda: window.focus.toggle_maximized(),
                               ("F",), "The view under the pointer fills the plots' room, or "
                               "the layout comes back (F; or double-click a view)")
    window.act_restore = _add(window, menu, "Restore layout", window.focus.restore, ("Esc",),
                              "Every view back in its place (Esc)")
    window.installEventFilter(presentation)
    presentation.apply()
    return presentation


__all__ = ["Presentation", "install", "toggle_full_screen", "SCALE_KEY", "THEME_KEY"]
