"""The window's run files, whole: saving the live run with its keyframes, sampled text,
colour scales and the model's state (asked of the training process), opening one to show
exactly as it was saved, and, when Space is pressed on an opened run, asking whether to
continue it from its saved weights or to start a new model with its settings."""
from __future__ import annotations

import os

from PyQt6 import QtWidgets

from gradviz.ui.model import CONTINUE, NEW


def colour_scales(views: dict) -> dict[str, tuple[float, float]]:
    """(low, high) of each view's data-driven colour scale, by view key."""
    return {key: tuple(view.levels) for key, view in views.items()
            if getattr(view, "levels", None) is not None}


def save_whole(window, folder: str | os.PathLike) -> None:
    """Save the live run to ``folder`` (:meth:`AppModel.save_run
    <gradviz.ui.model.AppModel.save_run>`) with the colour scales the views show."""
    window.model.save_run(folder, colour_scales(window.views))


def open_whole(window, path: str | os.PathLike) -> None:
    """Show a saved run as it was saved (its colour scales, its text), paused; raises
    :class:`~gradviz.engine.runs.runformat.RunFileError` if it cannot be read."""
    saved = window.model.open_run(path)
    # After the views were cleared for the new run, before they draw it.
    for key, levels in saved.scales.items():
        view = window.views.get(key)
        if view is not None and hasattr(view, "preset_levels"):
            view.preset_levels(levels)


def ask_continue(parent: QtWidgets.QWidget, name: str) -> str | None:
    """Ask whether to continue the opened run ``name`` or start a new model: CONTINUE,
    NEW, or None (cancelled)."""
    box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Question, "Train the opened run?",
                                f"Continue {name} from its saved weights, or start a new "
                                "model with its settings (the opened run stays on screen "
                                "to compare)?", parent=parent)
    go_on = box.addButton("Continue it", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
    fresh = box.addButton("New model", QtWidgets.QMessageBox.ButtonRole.ActionRole)
    box.addButton(QtWidgets.QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(go_on)
    box.setObjectName("continue-or-new")
    box.exec()
    return {go_on: CONTINUE, fresh: NEW}.get(box.clickedButton())


def leave_saved_run(window) -> bool:
    """Before training from an opened run: continue it or start a new model, as the user
    says in :func:`ask_continue`; False if they cancelled."""
    return window.model.leave_saved_run(lambda name: ask_continue(window, name))


__all__ = ["save_whole", "open_whole", "leave_saved_run", "ask_continue", "colour_scales",
           "CONTINUE", "NEW"]
