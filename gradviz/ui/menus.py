"""The window's actions, toolbar and menus. Every action is also added to the window
itself, so that its shortcut works with the menu bar or the toolbar hidden."""
from __future__ import annotations

from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.experiments import list_experiments
from gradviz.ui.help import build_help_menu
from gradviz.ui.runsmenu import add_runs_menu


def _action(window: QtWidgets.QMainWindow, text: str, slot, shortcut=None, icon=None,
            tip: str = "") -> QtGui.QAction:
    action = QtGui.QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QtGui.QKeySequence(shortcut))
        action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
    if icon is not None:
        action.setIcon(window.style().standardIcon(icon))
    if tip:
        action.setToolTip(tip)
        action.setStatusTip(tip)
    action.triggered.connect(slot)
    window.addAction(action)
    return action


def build_actions(window) -> None:
    """Give ``window`` (a MainWindow) its actions ``act_run``, ``act_step``, ``act_reset``,
    ``act_open``, ``act_save``, ``act_dashboard``, ``act_tensorboard``, ``act_quit``, the
    training toolbar and the File, Training, Experiments, View and Help menus."""
    icons = QtWidgets.QStyle.StandardPixmap
    key = QtCore.Qt.Key
    std = QtGui.QKeySequence.StandardKey
    window.act_run = _action(window, "Start", window.toggle_running, key.Key_Space,
                             icons.SP_MediaPlay, "Start or pause training (Space)")
    window.act_step = _action(window, "Step", window.step_once, key.Key_S,
                              icons.SP_MediaSkipForward, "Train one batch and pause (S)")
    window.act_reset = _action(window, "Reset", window.reset_training, key.Key_R,
                               icons.SP_BrowserReload,
                               "A fresh model with the same settings and seed (R)")
    window.act_open = _action(window, "Open run…", window.open_run_dialog, std.Open)
    window.act_save = _action(window, "Save run…", window.save_run_dialog, std.Save)
    window.act_dashboard = _action(window, "Export dashboard…", window.export_dashboard_dialog)
    window.act_tensorboard = _action(window, "TensorBoard…", window.export_tensorboard_dialog,
                                     tip="Write the run as TensorBoard event files into a folder")
    # The platform's Quit key, or Ctrl+Q where it names none (offscreen, some desktops).
    quit_key = QtGui.QKeySequence(std.Quit)
    window.act_quit = _action(window, "Quit", window.close,
                              quit_key if not quit_key.isEmpty() else "Ctrl+Q")
    training = (window.act_run, window.act_step, window.act_reset)

    toolbar = window.addToolBar("Training")
    toolbar.setObjectName("training-toolbar")
    toolbar.setMovable(False)
    toolbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    for action in training:
        toolbar.addAction(action)

    menu = window.menuBar().addMenu("&File")
    menu.addAction(window.act_open)
    menu.addAction(window.act_save)
    export_menu = menu.addMenu("Export")
    for view_key, view in window.views.items():
        sub = export_menu.addMenu(view.title)
        for suffix in ("png", "svg", "csv"):
            action = sub.addAction(f"{suffix.upper()}…")
            action.triggered.connect(
                lambda _checked=False, k=view_key, s=suffix: window.export_view_dialog(k, s))
    menu.addAction(window.act_dashboard)
    _image_size_menu(window, export_menu)
    export_menu.addSeparator()
    export_menu.addAction(window.act_tensorboard)
    menu.addSeparator()
    menu.addAction(window.act_quit)

    training_menu = window.menuBar().addMenu("&Training")
    for action in training:
        training_menu.addAction(action)

    experiments_menu = window.menuBar().addMenu("E&xperiments")
    experiments_menu.setToolTipsVisible(True)
    # The description's "Now: …" button from the keyboard (a presenter's remote sends keys).
    window.act_then = _action(window, "Now: the experiment's second step", window.then_step,
                              key.Key_N, tip="A fresh model with the one change the guided "
                              "experiment makes next; the run on screen stays for comparison")
    experiments_menu.addAction(window.act_then)
    theme = None
    for experiment in list_experiments():
        if experiment.theme != theme:
            theme = experiment.theme
            experiments_menu.addSection(theme)
        action = experiments_menu.addAction(experiment.title)
        action.setToolTip(f"{experiment.watch}\n\nExpected: {experiment.expected}\n"
                          f"Source: {experiment.source}")
        action.triggered.connect(
            lambda _checked=False, e=experiment: window.load_experiment(e))
    from gradviz.ui.sweepwindow import add_sweep_actions
    add_sweep_actions(window, experiments_menu)

    add_runs_menu(window)
    build_view_menu(window)
    build_help_menu(window)


# What File ▸ Export ▸ Image size offers for PNG files: (label, (kind, value)).
IMAGE_SIZES = (("As on screen", ("scale", 1.0)), ("2× (slides, the default)", ("scale", 2.0)),
               ("3×", ("scale", 3.0)), ("1920 pixels wide", ("width", 1920.0)),
               ("3840 pixels wide", ("width", 3840.0)))


def _image_size_menu(window, export_menu: QtWidgets.QMenu) -> None:
    """The PNG size of every export (views and dashboard): ``window.export_size``."""
    sizes = export_menu.addMenu("Image size (PNG)")
    group = QtGui.QActionGroup(window)
    window.size_actions = {}
    for label, size in IMAGE_SIZES:
        action = sizes.addAction(label)
        action.setCheckable(True)
        action.setChecked(size == window.export_size)
        group.addAction(action)
        action.triggered.connect(lambda _=False, s=size: setattr(window, "export_size", s))
        window.size_actions[size] = action


def build_view_menu(window) -> QtWidgets.QMenu:
    """Show or hide the control panel, the description and each view's panel; the views
    still shown take the room. The actions are ``window.view_actions[key]`` ("controls",
    "description", and each view's key)."""
    menu = window.menuBar().addMenu("&View")
    window.view_actions = {}

    def toggle(key: str, text: str, slot, checked: bool = True, shortcut=None):
        action = QtGui.QAction(text, window, checkable=True)
        action.setChecked(checked)
        if shortcut is not None:
            action.setShortcut(QtGui.QKeySequence(shortcut))
        action.toggled.connect(slot)
        menu.addAction(action)
        window.addAction(action)
        window.view_actions[key] = action
        return action

    toggle("controls", "Control panel", window.dashboard.set_controls_shown,
           shortcut="Ctrl+B")
    description = toggle("description", "Description", lambda on: window.banner.set_closed(not on),
                         shortcut="Ctrl+D")
    window.banner.closed_changed.connect(lambda closed: description.setChecked(not closed))
    menu.addSeparator()
    page = None
    for key, view in window.views.items():
        if view.page != page and key != "text":
            page = view.page
            menu.addSection(page)
        toggle(key, view.title, lambda on, k=key: window.show_panel(k, on))
    return menu


__all__ = ["build_actions", "build_view_menu"]
