"""Python's cyclic collector at the window's safe points (gradviz.ui.collector): off while
the window runs, a cycle collected by the timer, on again when stopped, and the app runs
with it."""
import gc

from gradviz.ui.collector import SafePointCollector, collect_due


class _Cycle:
    def __init__(self):
        self.me = self


def test_the_timer_collects_what_automatic_collection_would(qtbot):
    import weakref
    collector = SafePointCollector(interval_ms=20)
    try:
        assert not gc.isenabled()
        gc.collect()            # clears what is already due, so the count starts afresh
        cycle = _Cycle()
        alive = weakref.ref(cycle)
        del cycle
        for _ in range(collector.thresholds[0] + 10):
            _Cycle()            # allocations, as a running window makes
        assert alive() is not None          # nothing collects on its own now
        qtbot.waitUntil(lambda: alive() is None, timeout=2000)
    finally:
        collector.stop()


def test_collect_due_follows_the_thresholds():
    gc.collect()
    assert collect_due((10 ** 9, 10, 10)) == 0          # nothing due: nothing collected
    cycle = _Cycle()
    del cycle
    assert collect_due((0, 10 ** 9, 10 ** 9)) >= 1      # generation 0 due: the cycle goes


def test_the_app_collects_at_safe_points(monkeypatch):
    """run_app installs the collector on its QApplication (checked without a window)."""
    from gradviz.ui import app as app_module
    made = []

    class Spy(SafePointCollector):
        def __init__(self, parent=None, interval_ms=500):
            super().__init__(parent, interval_ms)
            made.append(self)
            raise SystemExit(0)         # stop run_app here, before any window

    monkeypatch.setattr(app_module, "SafePointCollector", Spy)
    was = gc.isenabled()
    try:
        try:
            app_module.run_app([])
        except SystemExit:
            pass
        assert len(made) == 1
    finally:
        for collector in made:
            collector.stop()
        if was:
            gc.enable()
