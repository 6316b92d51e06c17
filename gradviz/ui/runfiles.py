"""The window's run files, whole: saving the live run with its keyframes, sampled text,
colour scales and the model's state (asked of the training process), opening one to show
exactly as it was saved, and, when Space is pressed on an opened run, asking whether to
continue it from its saved weights or to start a new model with its settings."""
from __future__ import annotations

import os
import time

from PyQt6 import QtCore, QtWidgets

from gradviz.engine.runs.runfile import save_run
from gradviz.engine.runs.runfile import open_run
from gradviz.ui.state import Run

# How long saving waits for the training process's state before saving without it.
CHECKPOINT_TIMEOUT_S = 10.0
CONTINUE, NEW = "continue", "new"


def colour_scales(views: dict) -> dict[str, tuple[float, float]]:
    """(low, high) of each view's data-driven colour scale, by view key."""
    return {key: tuple(view.levels) for key, view in views.items()
            if getattr(view, "levels", None) is not None}


def checkpoint(worker, timeout_s: float = CHECKPOINT_TIMEOUT_S):
    """The training process's (state, summary), waiting for it with the event loop running
    (captures up to the state's step arrive first); (None, {}) if it does not answer."""
    answer: list = []
    worker.checkpointed.connect(lambda state, summary: answer.append((state, summary)))
    worker.checkpoint()
    loop = QtCore.QEventLoop()
    deadline = time.monotonic() + timeout_s
    while not answer and time.monotonic() < deadline:
        loop.processEvents(QtCore.QEventLoop.ProcessEventsFlag.WaitForMoreEvents, 50)
    worker.checkpointed.disconnect()
    return answer[0] if answer else (None, {})


def save_whole(window, folder: str | os.PathLike) -> None:
    """Save the live run to ``folder``: record, keyframes, text, colour scales, and for a
    run trained here the model's state, so that it can be continued."""
    run = window.state.live
    trained_here = run.source is None and window.worker.is_alive()
    state, summary = checkpoint(window.worker) if trained_here else (None, dict(run.summary))
    save_run(folder, run.config, run.history, summary, keyframes=run.keyframes,
             texts=run.texts, scales=run.scales or colour_scales(window.views), state=state)


def open_whole(window, path: str | os.PathLike) -> None:
    """Show a saved run as it was saved (its colour scales, its text), paused; raises
    :class:`~gradviz.engine.runs.runformat.RunFileError` if it cannot be read."""
    saved = open_run(path)
    window.controls.set_config(saved.config)
    window.state.set_config(saved.config)
    window.worker.reset(saved.config)
    window.state.set_running(False)
    run = Run(saved.config, saved.history, source=str(saved.folder), keyframes=saved.keyframes)
    run.texts = list(saved.texts)
    run.scales = dict(saved.scales)
    run.summary = dict(saved.summary)
    run.can_continue = saved.can_continue
    window.state.new_live_run(run)
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


def _put_back_if_refused(window, run: Run) -> None:
    """If the training process refuses to continue ``run`` (its folder is damaged, or its
    files do not fit together: gradviz.engine.runs.runcheck), the run is put back as it was
    opened, viewed and continuable, with a fresh model of its settings behind it; the
    process's error message says why. Nothing changes once the process is ready."""
    source, worker = run.source, window.worker

    def disconnect() -> None:
        worker.ready.disconnect(ready)
        worker.error.disconnect(refused)

    def ready(_language: bool) -> None:
        disconnect()

    def refused(_message: str, _details: str) -> None:
        disconnect()
        run.source, run.can_continue = source, True
        window.state.runs_changed.emit()
        window.state.data_changed.emit()
        worker.reset(run.config)

    worker.ready.connect(ready)
    worker.error.connect(refused)


def leave_saved_run(window) -> bool:
    """Before training from an opened run: continue it (its record goes on) or start a
    new model (it stays as a comparison), as the user says; False if they cancelled."""
    state = window.state
    if not state.viewing_saved_run:
        return True
    run = state.live
    answer = ask_continue(window, run.name) if run.can_continue else NEW
    if answer is None:
        return False
    if answer == CONTINUE:
        window.worker.reset(run.config, resume=run.source)
        _put_back_if_refused(window, run)
        state.continue_live()
    else:
        # The model behind an opened run is already fresh (reset when it was opened).
        state.new_live_run()
    return True


__all__ = ["save_whole", "open_whole", "leave_saved_run", "ask_continue", "checkpoint",
           "colour_scales", "CONTINUE", "NEW"]
