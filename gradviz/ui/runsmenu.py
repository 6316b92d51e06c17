"""The Runs menu: the comparison runs on screen, each to hide, show or remove, and the
runs set aside (of another task or length, or of an earlier experiment) to bring back;
and File ▸ Open as comparison…, which shows a saved run beside the live one. Runs set
aside are announced in the status bar."""
from __future__ import annotations

import os

from PyQt6 import QtGui, QtWidgets

from gradviz.config import differences
from gradviz.engine.runs.runfile import open_run
from gradviz.ui.recordedrun import shown_saved
from gradviz.ui.state import MAX_COMPARISONS, AppState, ShownRun


def open_comparison(state: AppState, path: str | os.PathLike) -> ShownRun:
    """Show the run saved in ``path`` as a (read-only) comparison run; raises
    :class:`~gradviz.engine.runs.runformat.RunFileError` if it cannot be read."""
    run = shown_saved(open_run(path))
    run.can_continue = False            # a comparison is only looked at
    state.add_comparison(run)
    return run


def add_runs_menu(window) -> QtWidgets.QMenu:
    """Give ``window`` (a MainWindow) the Runs menu, and File ▸ Open as comparison… after
    its Open action."""
    state: AppState = window.state
    action = QtGui.QAction("Open as comparison…", window)
    action.setToolTip("Show a saved run beside the live one, dimmed")
    action.triggered.connect(
        lambda: window.dialogs.open_run(lambda path: open_comparison(state, path)))
    window.act_open_comparison = action
    for owner in window.act_open.associatedObjects():
        if isinstance(owner, QtWidgets.QMenu):   # the File menu
            actions = owner.actions()
            place = actions.index(window.act_open) + 1
            owner.insertAction(actions[place] if place < len(actions) else None, action)
            break

    state.runs_set_aside.connect(lambda text: window.statusBar().showMessage(text, 15000))
    menu = window.menuBar().addMenu("R&uns")
    menu.setToolTipsVisible(True)
    menu.aboutToShow.connect(lambda: _fill(menu, state))
    _fill(menu, state)
    return menu


def _fill(menu: QtWidgets.QMenu, state: AppState) -> None:
    """The menu's items for the runs on screen now."""
    menu.clear()
    live = state.live
    menu.addSection(f"Live: {live.name}" + (f" ({state.label(live)})" if state.comparisons
                                             else ""))
    runs = state.comparisons
    if not runs:
        empty = menu.addAction("No comparison runs")
        empty.setEnabled(False)
        empty.setToolTip("A new model (cell, task, sizes, init, experiment, Reset) keeps the "
                         f"run on screen as a comparison, up to {MAX_COMPARISONS}")
        _fill_aside(menu, state)
        return
    menu.addSection("Comparison runs")
    for run in runs:
        sub = menu.addMenu(state.label(run))
        shown = sub.addAction("Shown")
        shown.setCheckable(True)
        shown.setChecked(not run.hidden)
        # The actions name the run by its number: a reference would keep a removed run's
        # arrays alive for as long as the menu lives.
        shown.toggled.connect(lambda on, n=run.number: _act(state, n, state.set_hidden, not on))
        sub.addAction("Remove").triggered.connect(
            lambda _=False, n=run.number: _act(state, n, state.remove_run))
    menu.addSeparator()
    menu.addAction("Remove all comparison runs").triggered.connect(
        lambda: _remove_all(state))
    _fill_aside(menu, state)


def _fill_aside(menu: QtWidgets.QMenu, state: AppState) -> None:
    """The set-aside runs, each with the action that shows it again."""
    if not state.set_aside:
        return
    menu.addSection("Set aside")
    for run in state.set_aside:
        c = run.config
        action = menu.addAction(f"Bring back: {run.name}, {', '.join(_aside_label(state, run))}")
        action.setToolTip(f"{run.task_label}, T {c.seq_len}: shown again as a comparison run")
        action.triggered.connect(lambda _=False, n=run.number: _bring_back(state, n))


def _aside_label(state: AppState, run: ShownRun) -> list[str]:
    if run.recorded is not None or state.live.recorded is not None:
        return [run.task_label]
    return differences(run.config, [state.live.config]) or ["same settings"]


def _bring_back(state: AppState, number: int) -> None:
    for run in state.set_aside:
        if run.number == number:
            state.bring_back(run)


def _act(state: AppState, number: int, change, *args) -> None:
    """``change(run, *args)`` for the comparison run numbered ``number``, if still shown."""
    for run in state.comparisons:
        if run.number == number:
            change(run, *args)


def _remove_all(state: AppState) -> None:
    for run in state.comparisons:
        state.remove_run(run)


__all__ = ["add_runs_menu", "open_comparison"]
