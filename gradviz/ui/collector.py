"""Python's cyclic garbage collector, run only at safe points of the window's event loop.

Why: PyQt (sip) wraps a C++ object that Qt hands to Python (a QEvent for an overridden
``event``, a QWidgetItem for a layout) in two steps, and keeps the object to wrap in one
slot per thread between them. Allocating the wrapper can start a collection; collecting
a cycle that holds a Qt object runs its C++ destructor, which can call another Python
override and wrap another object through the same slot; the first wrapping then finds the
slot empty and fails with "QEvent(type: QEvent.Type): not enough arguments" (or the same
for QWidgetItem), raised from Qt's event loop. That happened about once in five runs of
the test suite. With automatic collection off and :func:`collect_due` called from a
timer, a collection never starts inside a wrapping.

The training process has no Qt and keeps Python's automatic collection.
"""
from __future__ import annotations

import gc

from PyQt6 import QtCore

# How often the window's loop collects (ms): garbage in cycles waits at most this long.
INTERVAL_MS = 500


def collect_due(thresholds: tuple[int, int, int]) -> int:
    """Collect the generations Python's own rule would have collected by now, given its
    ``thresholds`` (:func:`gc.get_threshold`); returns the objects found unreachable."""
    found = 0
    count0, count1, count2 = gc.get_count()
    if count0 > thresholds[0]:
        generation = 2 if count2 > thresholds[2] else 1 if count1 > thresholds[1] else 0
        found = gc.collect(generation)
    return found


class SafePointCollector(QtCore.QObject):
    """Turns automatic collection off and collects on a timer instead (see the module's
    docstring); :meth:`stop` turns it back on as it was."""

    def __init__(self, parent: QtCore.QObject | None = None, interval_ms: int = INTERVAL_MS):
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.collect)
        self.timer.start(interval_ms)

    def collect(self) -> int:
        return collect_due(self.thresholds)

    def stop(self) -> None:
        self.timer.stop()
        if self._was_enabled:
            gc.enable()


__all__ = ["SafePointCollector", "collect_due", "INTERVAL_MS"]
