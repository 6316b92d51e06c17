"""Runs recorded from Python (gradviz.watch) in the window, shown as what they are.

Such a run was trained by the user's own loop, not by gradviz: it has no gradviz task,
clipping, initialisation or seed (:mod:`gradviz.engine.runs.recorded`). Opened, it shows
its views (gradient flow, gradient through time, gates where marked, parameter norms) under
a description of what was recorded; the control panel gives way to that description
(:class:`RecordedPanel`), and Space does not train it (:data:`NOT_TRAINABLE`): a new
gradviz model is trained only when the user asks for one (the panel's button, Reset or an
experiment), with the settings the control panel then shows.
"""
from __future__ import annotations

from PyQt6 import QtCore, QtWidgets

from gradviz.config import LIMITS, RunConfig
from gradviz.engine.runs.recorded import describe
from gradviz.ui.state import ShownRun

NOT_TRAINABLE = ("Recorded from Python: gradviz cannot train this run on. Reset (R) trains "
                 "a new gradviz model.")


def layout_config(history) -> RunConfig:
    """Settings that only lay out the views of a run recorded from Python (its time axis);
    never shown, saved or trained (the run has no gradviz settings)."""
    low, high = LIMITS["seq_len"]
    T = int(history.dh_norm.shape[-1]) if len(history) else int(low)
    return RunConfig(seq_len=int(min(max(T, low), high)))


def shown_saved(saved) -> ShownRun:
    """The :class:`ShownRun` of an opened :class:`~gradviz.engine.runs.runfile.SavedRun`,
    as it was saved; of a run recorded from Python, with what was recorded."""
    config = saved.config if saved.recorded is None else layout_config(saved.history)
    run = ShownRun(config, saved.history, source=str(saved.folder), keyframes=saved.keyframes)
    run.texts = list(saved.texts)
    run.scales = dict(saved.scales)
    run.summary = dict(saved.summary)
    run.can_continue = saved.can_continue
    run.recorded = saved.recorded
    return run


def recorded_text(run: ShownRun) -> str | None:
    """The one line that names a run recorded from Python; None for another run."""
    return None if run.recorded is None else describe(run.recorded)


class RecordedPanel(QtWidgets.QWidget):
    """The control panel's column: the control panel, or, while the live run is one
    recorded from Python, what was recorded and a button to train a new gradviz model
    (``new_model``) instead of settings the run was not trained with."""

    new_model = QtCore.pyqtSignal()

    def __init__(self, controls: QtWidgets.QWidget, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.controls = controls
        self.note = QtWidgets.QLabel()
        self.note.setObjectName("recorded-note")
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop)
        self.button = QtWidgets.QPushButton("Train a new gradviz model")
        self.button.setToolTip("Shows the control panel: choose a task and settings, then "
                               "press Space (the recorded run waits in the Runs menu, under Set aside)")
        self.button.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.button.clicked.connect(self.new_model)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.note)
        layout.addWidget(self.button)
        layout.addWidget(controls, 1)
        layout.addStretch(0)         # below the note while the controls are hidden
        self.set_recorded(None)

    def minimumSizeHint(self) -> QtCore.QSize:
        """As wide as the controls need, as tall as what is shown needs."""
        return QtCore.QSize(self.controls.minimumSizeHint().width(),
                            super().minimumSizeHint().height())

    @property
    def showing_recorded(self) -> bool:
        return not self.note.isHidden()

    def set_recorded(self, text: str | None) -> None:
        """Show ``text`` (a run recorded from Python) in place of the controls; None: the
        controls."""
        if text:
            self.note.setText(f"<b>{_escape(text)}</b><p>Its own training loop trained it, "
                              "not gradviz: it has no gradviz task, clipping, "
                              "initialisation or seed, so there are no settings to show or "
                              "change, and Space does not train it.</p><p>The views show what "
                              "was recorded: gradient flow, gradient through time, gates "
                              "where marked, parameter norms.</p>")
        self.note.setVisible(bool(text))
        self.button.setVisible(bool(text))
        self.controls.setVisible(not text)
        self.controls.setEnabled(not text)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = ["NOT_TRAINABLE", "RecordedPanel", "layout_config", "recorded_text", "shown_saved"]
