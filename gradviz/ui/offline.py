"""Training without a process, for ``gradviz snapshot`` and tests: :class:`OfflineWorker`
has the signals of :class:`~gradviz.ui.worker.TrainingWorker` and takes its commands
without acting on them, and :func:`train_window` trains a
:class:`~gradviz.engine.training.session.Session` in this process and sends what it
captures through those signals, so the window draws it along the same paths as a real
run's reports. Deterministic: which captures are full depends on the step only, not on
the clock (the training process picks them by time).
"""
from __future__ import annotations

import contextlib

from PyQt6 import QtCore

from gradviz.config import RunConfig
from gradviz.ui.worker import WorkerSignals

# Full captures (per-unit arrays, the timeline's keyframes) in a run, at most, besides the last.
FULL_CAPTURES = 48


class OfflineWorker(WorkerSignals):
    """A :class:`~gradviz.ui.worker.TrainingWorker` stand-in with no process."""

    def __init__(self, config: RunConfig, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.config = config
        self.state = "paused"
        self.responding = True
        self.run_id = 1
        self.pid = None
        self.exitcode = None
        self.session = None          # what train_window trains, while it does
        self.tree_settings = None    # the prediction tree's settings last asked

    def ask_tree(self, settings) -> None:
        """Answered at once from the session train_window trains (none: later, when it
        has one)."""
        self.tree_settings = settings
        self.send_tree()

    def send_tree(self) -> None:
        if self.session is not None and self.tree_settings is not None \
                and self.session.is_language:
            from gradviz.engine.analysis.treereport import tree_snapshot
            self.tree_ready.emit(tree_snapshot(self.session.trainer, self.tree_settings))

    def is_alive(self) -> bool:
        return False

    def reset(self, config: RunConfig, resume: str | None = None) -> None:
        self.config = config
        self.run_id += 1

    def start(self) -> None: pass

    def pause(self) -> None: pass

    def step(self) -> None: pass

    def set_live(self, changes: dict) -> None: pass

    def checkpoint(self) -> None: pass

    def close(self) -> None:
        self.state = "stopped"


@contextlib.contextmanager
def offline_windows():
    """Windows made inside this block get an :class:`OfflineWorker`."""
    from gradviz.ui import model as model_module   # the app model makes the window's worker

    real = model_module.TrainingWorker
    model_module.TrainingWorker = OfflineWorker
    try:
        yield
    finally:
        model_module.TrainingWorker = real


def train_window(window, steps: int, chunk: int = 50) -> int:
    """Train the window's live model (a fresh one from ``window.state.config``) ``steps``
    steps in this process, feeding the window as the training process would; stops where
    the divergence rule trips, as the app pauses there. Returns the steps trained."""
    import torch

    from gradviz.engine.training.divergence import advice
    from gradviz.engine.training.session import Session

    torch.set_num_threads(1)
    worker = window.worker
    session = Session(window.state.config, history=False)
    worker.session = session
    worker.ready.emit(session.is_language)
    if session.data_note:
        worker.note.emit(session.data_note)
    every = max(1, steps // FULL_CAPTURES)
    pending: list = []
    done = 0
    for index in range(steps):
        last = index == steps - 1
        report = session.step(full=last or index % every == 0 or session.trips_if_next_fails())
        done += 1
        if report.capture is not None:
            pending.append(report.capture)
        if report.divergence is not None or last or len(pending) >= chunk:
            if pending:
                worker.captures_ready.emit(pending)
                pending = []
            worker.status.emit({"step": session.steps_done, "steps_per_s": None,
                                "loss": session.last_loss})
        if report.divergence is not None:
            worker.diverged.emit(report.divergence.message(), advice(session.config))
            break
    if pending:
        worker.captures_ready.emit(pending)
    if session.is_language:
        text = session.generate()
        if text is not None:
            worker.text_ready.emit(text, session.steps_done)
        worker.send_tree()
    worker.state_changed.emit("paused")
    return done


__all__ = ["OfflineWorker", "offline_windows", "train_window", "FULL_CAPTURES"]
