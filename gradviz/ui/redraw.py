"""When the views draw: on the window's own ~30 Hz clock, only when something new arrived,
and taking turns when drawing is slow (DESIGN.md, rule 3).

Drawing every view at once took up to ~200 ms for the largest models (2 layers, H 128,
T 200, painted at 1600 x 1000), and the window froze for that long. So the views take
turns: as many per tick as keep the timer on time, all of them when drawing is cheap,
one when it is not.
"""
from __future__ import annotations

import time
import traceback

from PyQt6 import QtCore

from gradviz.ui.state import AppState

REDRAW_MS = 33
# The timer's lateness that makes fewer (more) views draw per tick.
LATE_HIGH_MS = 20.0
LATE_LOW_MS = 6.0
# A number of views per tick that made a tick late is not tried again for this long:
# probing it every few ticks kept ~5% of ticks late with the largest preset.
RETRY_S = 10.0


class RedrawScheduler(QtCore.QObject):
    """Draws ``views`` (key -> View) from ``state``'s live run, at the step the timeline
    shows, with the comparison runs. A view is *stale* when its run's record, the runs
    shown or the step changed since it last drew; a hidden view stays stale until shown.

    A view that raises while drawing is skipped until new data comes, and the others draw
    as usual; ``view_failed(key, message)`` reports it once per view and run (the traceback
    goes to stderr once), not ~30 times a second."""

    view_failed = QtCore.pyqtSignal(str, str)

    def __init__(self, views: dict, state: AppState, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.views = views
        self.state = state
        self.views_per_tick = len(views)   # adapted to how long drawing takes
        self.last_tick: float | None = None  # when the last tick that drew ran
        self._stale: set[str] = set()
        self._last_drawn = 0
        self._too_many = (len(views) + 1, 0.0)  # views per tick found too slow, and when
        self._cursor = 0                        # where the round of views goes on
        self._failed: set[str] = set()          # views whose failure was reported
        state.data_changed.connect(self.mark_stale)
        state.runs_changed.connect(self._clear_views)
        state.comparisons_changed.connect(self.mark_stale)
        state.step_selected.connect(self.mark_stale)
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.tick)

    def start(self) -> None:
        self.timer.start(REDRAW_MS)

    def stop(self) -> None:
        self.timer.stop()

    def mark_stale(self) -> None:
        """Every view has something new to draw."""
        self._stale.update(self.views)

    @property
    def stale(self) -> frozenset[str]:
        return frozenset(self._stale)

    def _clear_views(self) -> None:
        self._stale.clear()
        self._failed.clear()
        for view in self.views.values():
            view.clear()

    def tick(self) -> None:
        """One tick of the clock: adapt the views per tick to the last tick's lateness
        (which tells what the views it drew cost, painting included: Qt paints after the
        tick, when the loop is free again), then draw that many stale views."""
        now = time.perf_counter()
        if self.last_tick is not None:
            late_ms = (now - self.last_tick) * 1000.0 - REDRAW_MS
            if late_ms > LATE_HIGH_MS:
                self._too_many = (self._last_drawn, now)
                self.views_per_tick = max(1, min(self.views_per_tick, self._last_drawn) - 1)
            elif late_ms < LATE_LOW_MS:
                more = self.views_per_tick + 1
                too_many, when = self._too_many
                visible = sum(view.isVisible() for view in self.views.values())
                if more <= visible and (more < too_many or now - when > RETRY_S):
                    self.views_per_tick = more
        drew = self._draw(self.views_per_tick)
        self._last_drawn = drew
        self.last_tick = now if drew else None

    def draw_now(self) -> None:
        """Every visible view draws the newest data now (before an export, in tests)."""
        self._draw(len(self.views))

    def _draw(self, limit: int) -> int:
        """Up to ``limit`` stale views draw, taking turns; returns how many did."""
        if not self._stale:
            return 0
        run, step = self.state.live, self.state.selected_step
        latest = run.capture_at(step) or run.history.latest
        comparisons = self.state.shown_comparisons()
        live_label = self.state.label(run) if comparisons else ""
        keys = list(self.views)
        drawn = 0
        for offset in range(len(keys)):
            index = (self._cursor + offset) % len(keys)
            key = keys[index]
            view = self.views[key]
            if key not in self._stale or not view.isVisible():
                continue
            self._stale.discard(key)
            try:
                view.set_comparisons(comparisons, live_label, step)
                view.set_data(run.history, latest)
            except Exception as exc:  # noqa: BLE001 - one broken view must not stop the rest
                self._report(key, exc)
            drawn += 1
            if drawn == limit:
                self._cursor = index + 1
                break
        return drawn


    def _report(self, key: str, exc: Exception) -> None:
        if key in self._failed:
            return
        self._failed.add(key)
        traceback.print_exception(exc)
        title = getattr(self.views[key], "title", key)
        self.view_failed.emit(key, f"{title} could not draw this run ({type(exc).__name__}: "
                                   f"{exc}); the other views go on")


__all__ = ["RedrawScheduler", "REDRAW_MS", "LATE_HIGH_MS", "LATE_LOW_MS", "RETRY_S"]
