"""The status bar's permanent fields: what training is doing, the step, its speed, the loss."""
from __future__ import annotations

from PyQt6 import QtWidgets


class StatusFields:
    """Four labels at the status bar's right: state, step, steps/s, loss."""

    def __init__(self, bar: QtWidgets.QStatusBar):
        self.state = QtWidgets.QLabel("starting…")
        self.step = QtWidgets.QLabel()
        self.speed = QtWidgets.QLabel()
        self.loss = QtWidgets.QLabel()
        for label in (self.state, self.step, self.speed, self.loss):
            label.setMinimumWidth(label.fontMetrics().horizontalAdvance("0000000 steps/s"))
            bar.addPermanentWidget(label)
        self.clear()

    def clear(self) -> None:
        """Nothing trained yet."""
        self.show_progress(0, 0.0, None)

    def show_state(self, state: str, viewing_saved_run: bool = False) -> None:
        self.state.setText("viewing saved run" if viewing_saved_run and state == "paused"
                           else state)

    def show_progress(self, step: int, steps_per_s: float | None, loss: float | None) -> None:
        """``step``: steps trained so far; None for a value not known (an opened run's speed)."""
        self.step.setText(f"step {step}")
        if steps_per_s is not None:
            self.speed.setText(f"{steps_per_s:.1f} steps/s")
        self.loss.setText("loss –" if loss is None else f"loss {loss:.4g}")


__all__ = ["StatusFields"]
