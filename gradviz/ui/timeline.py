"""The timeline: a slider under the plots that chooses the training step the per-step views
show (gradient through time, gates, states, text), with ← / → (the previous / next
keyframe), Home (the first) and End (follow the newest step again).

The slider runs over training steps, linearly, from the live run's first recorded step to
its newest; where it is let go, it snaps to the nearest *keyframe* (a step whose full
capture the run kept, see :mod:`gradviz.engine.runs.keyframes`) and its label says which step is
shown. While it follows the newest step (the state's ``selected_step`` is None) it moves
on as training runs; once the user moves it, it stays where it was put.
"""
from __future__ import annotations

from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.ui.state import AppState


class Timeline(QtWidgets.QWidget):
    def __init__(self, state: AppState, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.state = state
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(QtWidgets.QLabel("Timeline"))
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal, self)
        self.slider.setToolTip("The training step the gradient-through-time, gate, state and "
                               "text views show (← / →: previous / next kept step, Home: the "
                               "first, End: follow the newest)")
        # Keys go to the window's actions (they work wherever the focus is), not the slider.
        self.slider.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(self._moved)
        layout.addWidget(self.slider, 1)
        self.label = QtWidgets.QLabel(self)
        # Wide enough for its longest text, so the slider does not jump as the label changes.
        self.label.setMinimumWidth(self.label.fontMetrics().horizontalAdvance(
            "step 000000000 of 000000000"))
        layout.addWidget(self.label)
        self.newest = QtWidgets.QPushButton("Newest", self)
        self.newest.setToolTip("Follow the newest step again (End)")
        self.newest.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.newest.clicked.connect(self.follow)
        layout.addWidget(self.newest)
        state.data_changed.connect(self.refresh)
        state.runs_changed.connect(self.refresh)
        state.step_selected.connect(self.refresh)
        self.refresh()

    # -- what it shows ------------------------------------------------------------------
    @property
    def shown_step(self) -> int | None:
        """The step the per-step views show: the chosen keyframe's, or the newest full
        capture's while following; None before any."""
        capture = self.state.live.capture_at(self.state.selected_step)
        return None if capture is None else int(capture.step)

    def refresh(self) -> None:
        """Range, handle and label from the state (no step is chosen by this)."""
        run = self.state.live
        steps = run.keyframes.steps
        has = len(run.history) > 0 and len(steps) > 0
        self.setEnabled(has)
        self.slider.blockSignals(True)
        if has:
            first = min(int(run.history.step[0]), int(steps[0]))
            newest = max(int(run.history.step[-1]), int(steps[-1]))
            self.slider.setRange(first, newest)
            self.slider.setPageStep(max(1, (newest - first) // 10))
            shown = self.shown_step
            self.slider.setValue(newest if self.state.selected_step is None else shown)
        else:
            self.slider.setRange(0, 0)
        self.slider.blockSignals(False)
        self.newest.setEnabled(has and self.state.selected_step is not None)
        self.label.setText(self._text(has))

    def _text(self, has: bool) -> str:
        if not has:
            return "no steps yet"
        shown = self.shown_step
        if self.state.selected_step is None:
            return f"step {shown} (newest)"
        return f"step {shown} of {self.slider.maximum()}"

    # -- choosing -----------------------------------------------------------------------
    def select(self, step: int | None) -> None:
        """Show the kept step nearest to ``step`` (None: follow the newest)."""
        keyframes = self.state.live.keyframes
        if step is None or not len(keyframes):
            self.state.select_step(None)
        else:
            self.state.select_step(int(keyframes.nearest(step).step))
        self.refresh()

    def follow(self) -> None:
        self.select(None)

    def first(self) -> None:
        steps = self.state.live.keyframes.steps
        if len(steps):
            self.select(int(steps[0]))

    def step_by(self, offset: int) -> None:
        """Move ``offset`` keyframes on from the one shown; past the newest, follow it."""
        keyframes = self.state.live.keyframes
        if not len(keyframes):
            return
        current = self.state.selected_step
        index = len(keyframes) - 1 if current is None else keyframes.index(current)
        index = max(0, index + offset)
        if index >= len(keyframes) - 1 and offset > 0:
            self.follow()
        else:
            self.select(int(keyframes.steps[index]))

    def _moved(self, value: int) -> None:
        # The user dragged or clicked the slider: its far end follows the newest step.
        self.select(None if value >= self.slider.maximum() else value)

    def add_actions(self, window: QtWidgets.QWidget) -> None:
        """← / →, Home and End for the whole window (they work with a plot in focus)."""
        key = QtCore.Qt.Key
        for shortcut, slot, text in (
                (key.Key_Left, lambda: self.step_by(-1), "Timeline: the step before"),
                (key.Key_Right, lambda: self.step_by(1), "Timeline: the step after"),
                (key.Key_Home, self.first, "Timeline: the first step"),
                (key.Key_End, self.follow, "Timeline: follow the newest step")):
            action = QtGui.QAction(text, self)
            action.setShortcut(QtGui.QKeySequence(shortcut))
            action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(slot)
            window.addAction(action)


__all__ = ["Timeline"]
