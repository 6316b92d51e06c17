"""The app's model: the runs on screen, the training backend and every command, owned in
one place outside the window.

:class:`AppModel` holds the :class:`~gradviz.ui.state.AppState` (runs, the one
configuration, running or not, the step shown), the training backend (a
:class:`~gradviz.ui.worker.TrainingWorker` process, or for tests the
:class:`~gradviz.ui.inprocess.InProcessWorker`) and the user's preferences, and carries out
the commands: start, pause, step, reset, live settings, a fresh model for an experiment,
open and save. The window (:class:`~gradviz.ui.window.MainWindow`) is a view of it: its
widgets show the state's signals and its actions call these commands; the control panel
shows ``state.config`` and nothing else keeps a configuration. What the model has to tell
the user comes out as signals (``message`` for the status bar, ``warning`` for a refusal),
so that it needs no widget, in the spirit of napari's ViewerModel and MNELAB's model.
"""
from __future__ import annotations

import os
from typing import Callable

from PyQt6 import QtCore

from gradviz.config import LIVE_FIELDS, RunConfig, structural_change
from gradviz.engine.runs.runfile import open_run, save_run
from gradviz.engine.training import memory
from gradviz.ui.prefs import Prefs
from gradviz.ui.recordedrun import NOT_TRAINABLE, shown_saved
from gradviz.ui.state import AppState, ShownRun
from gradviz.ui.worker import TrainingWorker

# How long saving waits for the training backend's state before saving without it.
CHECKPOINT_TIMEOUT_S = 10.0
CONTINUE, NEW = "continue", "new"

# A backend is made from the first configuration and a Qt parent.
Backend = Callable[[RunConfig, QtCore.QObject], TrainingWorker]


class AppModel(QtCore.QObject):
    """Signals: ``message(str, int)`` a line for the status bar and how long to show it in
    ms (0: until the next); ``warning(str, str)`` a title and text the user must read (a
    setting refused). The state's and the backend's own signals say the rest."""

    message = QtCore.pyqtSignal(str, int)
    warning = QtCore.pyqtSignal(str, str)

    def __init__(self, config: RunConfig | None = None, prefs: Prefs | None = None,
                 backend: Backend | None = None, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.prefs = prefs if prefs is not None else Prefs()
        self.state = AppState(config or self.prefs.load_config() or RunConfig(), self)
        self.worker = (backend or TrainingWorker)(self.state.config, self)
        self.worker.captures_ready.connect(self._on_captures)
        self.worker.text_ready.connect(self.state.set_text)
        self.worker.state_changed.connect(self._on_worker_state)
        self.worker.error.connect(lambda *_: self.state.set_running(False))
        self.worker.diverged.connect(lambda *_: self.state.set_running(False))

    @property
    def config(self) -> RunConfig:
        """The one configuration: the live model's settings, which the controls show."""
        return self.state.config

    # -- training ----------------------------------------------------------------------
    def toggle_running(self, ask: Callable[[str], str | None] | None = None) -> None:
        """Pause if running, else start (``ask``: see :meth:`leave_saved_run`)."""
        if self.state.running:
            self.pause()
        else:
            self.start(ask)

    def start(self, ask: Callable[[str], str | None] | None = None) -> None:
        if self.can_train() and self.leave_saved_run(ask):
            self.worker.start()
            self.state.set_running(True)

    def pause(self) -> None:
        self.worker.pause()
        self.state.set_running(False)

    def step(self, ask: Callable[[str], str | None] | None = None) -> None:
        """Train one batch and pause."""
        if self.can_train() and self.leave_saved_run(ask):
            self.worker.step()
            self.state.set_running(False)

    def can_train(self) -> bool:
        """False (and says so) after an error, until a reset, and while the live run is one
        recorded from Python (gradviz did not train it: there is nothing to train on)."""
        if self.state.live.recorded is not None:
            self.message.emit(NOT_TRAINABLE, 10000)
            return False
        if self.worker.state in ("error", "stopped"):
            self.message.emit("Training stopped after an error: press Reset (R) to start "
                              "again.", 8000)
            return False
        return True

    def reset(self, keep_running: bool = False) -> None:
        """A fresh model from the current settings (same seed); paused unless asked."""
        self.worker.reset(self.state.config)
        self.state.new_live_run()
        if keep_running:
            self.worker.start()
        self.state.set_running(keep_running)

    def apply_config(self, config: RunConfig) -> bool:
        """New settings: a live change goes to the running model on its next step;
        anything else means a new model, restarted if it was running. False if refused (a
        model too large for this machine); the settings stay as they were."""
        old = self.state.config
        if structural_change(old, config) and not self.fits_in_memory(config):
            return False
        self.state.set_config(config)
        self.prefs.save_config(config)
        if structural_change(old, config):
            self.reset(keep_running=self.state.running)
            return True
        changes = {name: getattr(config, name) for name in LIVE_FIELDS
                   if getattr(config, name) != getattr(old, name)}
        if changes:
            self.worker.set_live(changes)
        return True

    def start_fresh(self, config: RunConfig) -> bool:
        """A fresh model from ``config`` (an experiment's), even if it is the one shown;
        False if refused."""
        if not self.fits_in_memory(config):
            return False
        self.state.set_config(config, fresh=True)   # the run on screen keeps its settings
        self.prefs.save_config(config)
        self.reset()
        return True

    def fits_in_memory(self, config: RunConfig) -> bool:
        """Refuse (``warning``) a model that would not fit in this machine's memory; say
        (``message``) when one nearly fills it."""
        too_big = memory.check(config)
        if too_big:
            self.warning.emit("Model too large", f"This model {too_big}. The settings were "
                              "put back.")
            return False
        near = memory.warning(config)
        if near:
            self.message.emit(f"Warning: this model {near}.", 15000)
        return True

    def _on_captures(self, captures: list) -> None:
        self.state.add_captures(captures)
        for capture in captures:
            if capture.nonfinite or capture.events:
                # The engine's events name their step already.
                text = "; ".join(capture.events)
                self.message.emit(text[:1].upper() + text[1:] if text else
                                  f"Step {capture.step}: loss or gradient not finite; step "
                                  "skipped", 8000)

    def _on_worker_state(self, state: str) -> None:
        if state in ("paused", "running", "error", "stopped"):
            self.state.set_running(state == "running")

    # -- run files ---------------------------------------------------------------------
    def open_run(self, path: str | os.PathLike):
        """Show a saved run as it was saved, paused, behind it a fresh model of its
        settings (of a run recorded from Python, which has none, of the settings in use);
        returns the :class:`~gradviz.engine.runs.runfile.SavedRun` (raises
        :class:`~gradviz.engine.runs.runformat.RunFileError` if it cannot be read)."""
        saved = open_run(path)
        if saved.recorded is None:
            self.state.set_config(saved.config)
        self.worker.reset(self.state.config)
        self.state.set_running(False)
        self.state.new_live_run(shown_saved(saved))
        return saved

    def save_run(self, folder: str | os.PathLike,
                 scales: dict[str, tuple[float, float]] | None = None) -> None:
        """Save the live run to ``folder``: record, keyframes, text, colour scales (the
        run's own if it was opened, else ``scales``), and for a run trained here the
        model's state, so that it can be continued."""
        run = self.state.live
        trained_here = run.source is None and self.worker.is_alive()
        state, summary = self.checkpoint() if trained_here else (None, dict(run.summary))
        recorded = run.recorded
        save_run(folder, run.config if recorded is None else None, run.history, summary,
                 keyframes=run.keyframes, texts=run.texts, scales=run.scales or scales or {},
                 state=state, recorded=recorded)

    def checkpoint(self, timeout_s: float = CHECKPOINT_TIMEOUT_S):
        """The backend's (state, summary), waiting for it with the event loop running
        (captures up to the state's step arrive first); (None, {}) if it does not answer."""
        import time

        answer: list = []

        def take(state, summary) -> None:
            answer.append((state, summary))

        self.worker.checkpointed.connect(take)
        try:
            self.worker.checkpoint()
            loop = QtCore.QEventLoop()
            deadline = time.monotonic() + timeout_s
            while not answer and time.monotonic() < deadline:
                loop.processEvents(QtCore.QEventLoop.ProcessEventsFlag.WaitForMoreEvents, 50)
        finally:
            self.worker.checkpointed.disconnect(take)
        return answer[0] if answer else (None, {})

    def leave_saved_run(self, ask: Callable[[str], str | None] | None = None) -> bool:
        """Before training from an opened run: continue it (its record goes on) or start a
        new model (it stays as a comparison). ``ask(name)`` answers CONTINUE, NEW or None
        (cancelled: False); without it, a new model."""
        state = self.state
        if not state.viewing_saved_run:
            return True
        run = state.live
        answer = (ask(run.name) if ask is not None else NEW) if run.can_continue else NEW
        if answer is None:
            return False
        if answer == CONTINUE:
            self.worker.reset(run.config, resume=run.source)
            self._put_back_if_refused(run)
            state.continue_live()
        else:
            # The model behind an opened run is already fresh (reset when it was opened).
            state.new_live_run()
        return True

    def _put_back_if_refused(self, run: ShownRun) -> None:
        """If the backend refuses to continue ``run`` (its folder is damaged, or its files
        do not fit together: gradviz.engine.runs.runcheck), the run is put back as it was
        opened, viewed and continuable, with a fresh model of its settings behind it; the
        backend's error message says why. Nothing changes once the backend is ready."""
        source, worker = run.source, self.worker

        def disconnect() -> None:
            worker.ready.disconnect(ready)
            worker.error.disconnect(refused)

        def ready(_language: bool) -> None:
            disconnect()

        def refused(_message: str, _details: str) -> None:
            disconnect()
            run.source, run.can_continue = source, True
            self.state.runs_changed.emit()
            self.state.data_changed.emit()
            worker.reset(run.config)

        worker.ready.connect(ready)
        worker.error.connect(refused)

    def close(self) -> None:
        """Remember the settings and stop the backend."""
        self.prefs.save_config(self.state.config)
        self.prefs.sync()
        self.worker.close()


__all__ = ["AppModel", "Backend", "CONTINUE", "NEW", "CHECKPOINT_TIMEOUT_S"]
