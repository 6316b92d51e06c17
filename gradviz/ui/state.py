"""The app model: what the window shows, held in one place and announced with signals.

:class:`AppState` holds the runs on screen (``runs[0]`` is the live one, the model the
training process trains; comparison runs, read-only, follow it), the settings of the live
model, whether training runs, and the training step the per-step views show. The window,
the views' redraw scheduler and the status bar react to its signals; nothing else keeps
that state. No training happens here: captures arrive from the worker and are recorded.
"""
from __future__ import annotations

import os

from PyQt6 import QtCore

from gradviz.config import RunConfig
from gradviz.engine.capture import Capture
from gradviz.engine.history import HISTORY_CAPACITY, History



class Run:
    """One run on screen: its settings, bounded history, newest full capture and newest
    sampled text. ``source`` is the folder it was opened from, None for a run trained here."""

    def __init__(self, config: RunConfig, history: History | None = None,
                 source: str | None = None):
        self.config = config
        self.history = history if history is not None else History(HISTORY_CAPACITY)
        self.latest: Capture | None = self.history.latest
        self.text: str | None = None
        self.source = source

    @property
    def name(self) -> str:
        """What the title bar and legends call it: the folder's name for an opened run."""
        if self.source:
            return os.path.basename(os.path.normpath(self.source))
        c = self.config
        return f"{c.cell}, {c.task}, T {c.seq_len}"

    def append(self, captures: list[Capture]) -> None:
        for capture in captures:
            self.history.append(capture)
            if not capture.is_light:
                self.latest = capture


class AppState(QtCore.QObject):
    """Signals: ``runs_changed()`` when a run is replaced, added or removed (views start
    afresh); ``data_changed()`` when the live run's record grew; ``text_changed(str)``;
    ``running_changed(bool)``; ``config_changed(RunConfig)``; ``step_selected(object)``
    (a training step, or None for the newest)."""

    runs_changed = QtCore.pyqtSignal()
    data_changed = QtCore.pyqtSignal()
    text_changed = QtCore.pyqtSignal(str)
    running_changed = QtCore.pyqtSignal(bool)
    config_changed = QtCore.pyqtSignal(object)
    step_selected = QtCore.pyqtSignal(object)

    def __init__(self, config: RunConfig, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self._config = config
        self._runs: list[Run] = [Run(config)]
        self._running = False
        self._selected_step: int | None = None

    # -- reading ------------------------------------------------------------------------
    @property
    def runs(self) -> tuple[Run, ...]:
        return tuple(self._runs)

    @property
    def live(self) -> Run:
        return self._runs[0]

    @property
    def config(self) -> RunConfig:
        """The settings of the live model (what the controls show)."""
        return self._config

    @property
    def running(self) -> bool:
        """What the user asked for; follows the training process's reports."""
        return self._running

    @property
    def viewing_saved_run(self) -> bool:
        return self.live.source is not None

    @property
    def selected_step(self) -> int | None:
        return self._selected_step

    # -- changing -----------------------------------------------------------------------
    def set_config(self, config: RunConfig) -> None:
        if config != self._config:
            self._config = config
            self.config_changed.emit(config)

    def new_live_run(self, history: History | None = None, source: str | None = None) -> Run:
        """The live run starts afresh (a new model) or shows an opened run's record."""
        self._runs[0] = Run(self._config, history, source)
        self._selected_step = None
        self.runs_changed.emit()
        if len(self.live.history):
            self.data_changed.emit()
        return self.live

    def add_captures(self, captures: list[Capture]) -> None:
        self.live.append(captures)
        self.data_changed.emit()

    def set_text(self, text: str) -> None:
        self.live.text = text
        self.text_changed.emit(text)

    def set_running(self, running: bool) -> None:
        if running != self._running:
            self._running = running
            self.running_changed.emit(running)

    def select_step(self, step: int | None) -> None:
        if step != self._selected_step:
            self._selected_step = step
            self.step_selected.emit(step)


__all__ = ["AppState", "Run", "HISTORY_CAPACITY"]
