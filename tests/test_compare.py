"""Runs side by side: a new model keeps the run on screen as a comparison, drawn dimmed
behind the live one with a key naming what differs; comparison runs can be hidden,
removed (and their memory freed) and opened from a saved run."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from PyQt6 import QtWidgets

from gradviz.config import RunConfig, describe
from gradviz.engine.runs.runfile import save_run
from gradviz.ui.state import MAX_COMPARISONS, AppState
from gradviz.ui.views.compare import comparison_colour
from gradviz.ui.views.data import positive_finite

from conftest import fill_history, synthetic_capture
from test_window import SMALL, menu, open_window, prefs, run_until  # noqa: F401 - fixture


@pytest.fixture
def window(qtbot, prefs):  # noqa: F811 - the fixture imported above
    window = open_window(qtbot, prefs)
    yield window
    window.close()


def set_cell(window, cell: str) -> None:
    combo = window.controls.w["cell"]
    combo.setCurrentIndex(combo.findData(cell))
    assert window.config.cell == cell


def drawn(curves) -> list:
    """The comparison curves of ``curves`` (a ComparisonCurves) that show something."""
    return [i for i in curves.items if i.xData is not None and len(i.xData)]


def action(qmenu: QtWidgets.QMenu, text: str):
    return next(a for a in qmenu.actions() if a.text() == text)


def test_describe_names_the_cell_and_size_then_what_differs():
    gru, lstm = RunConfig(cell="gru", hidden=64), RunConfig(cell="lstm", hidden=64)
    assert describe(gru, [lstm]) == "gru, H 64"
    assert describe(lstm, [gru]) == "lstm, H 64"
    longer = RunConfig(cell="gru", hidden=64, seq_len=100, clip="norm", bidirectional=True)
    assert describe(longer, [gru]) == "gru, H 64, T 100, bidirectional, clip by norm"
    assert describe(gru, [longer]) == "gru, H 64, T 50, not bidirectional, no clipping"
    assert describe(gru, [gru.replace(steps=9)]) == "gru, H 64"   # how long is not what


def test_changing_the_cell_keeps_the_previous_run_as_a_comparison_with_its_key(window, qtbot):
    run_until(qtbot, window, 5)
    old = window.state.live
    old_loss, old_norm = np.array(old.history.loss), np.array(old.history.grad_norm)
    set_cell(window, "gru")
    assert window.state.comparisons == (old,) and len(window.history) == 0
    window.draw_now()
    loss = window.views["loss"]
    assert loss.colour_key.labels[0] == "lstm, H 8"     # no live steps yet: the old run only
    run_until(qtbot, window, 3)
    assert loss.colour_key.labels[:2] == ["loss: gru, H 8", "lstm, H 8"]
    (item,) = drawn(loss.comparison_curves)
    x, y = positive_finite(old.history.step, old_loss)
    np.testing.assert_array_equal(item.xData, x)
    np.testing.assert_array_equal(item.yData, y)
    assert item.opts["pen"].color().name() == comparison_colour(0)
    assert item.zValue() < loss.loss_curve.zValue()     # behind the live run
    gradnorm = window.views["gradnorm"]
    assert "lstm, H 8" in gradnorm.colour_key.labels
    (item,) = drawn(gradnorm.comparison_curves)
    np.testing.assert_array_equal(item.yData, positive_finite(old.history.step, old_norm)[1])
    gradtime = window.views["gradtime"]
    (item,) = drawn(gradtime.comparison_h)
    np.testing.assert_array_equal(item.yData, positive_finite(
        np.arange(SMALL.seq_len), old.latest.dh_norm[0, 0])[1])
    assert f"lstm, H 8 @ {old.latest.step}" in gradtime.colour_key.labels


def test_removing_a_comparison_run_frees_its_memory(window, qtbot):
    run_until(qtbot, window, 4)
    old = window.state.live
    runs = weakref.ref(old), weakref.ref(old.history), weakref.ref(old.latest)
    set_cell(window, "gru")
    window.draw_now()
    assert drawn(window.views["loss"].comparison_curves)
    del old
    runs_menu = menu(window, "R&uns")
    runs_menu.aboutToShow.emit()
    (sub,) = [a.menu() for a in runs_menu.actions() if a.menu() is not None]
    assert sub.title() == "lstm, H 8"
    action(sub, "Remove").trigger()
    assert window.state.comparisons == ()
    window.draw_now()
    runs_menu.aboutToShow.emit()    # the menu drops its references to the run too
    gc.collect()
    assert [ref() for ref in runs] == [None, None, None]
    assert not drawn(window.views["loss"].comparison_curves)


def test_a_hidden_comparison_is_not_drawn_and_comes_back(window, qtbot):
    run_until(qtbot, window, 3)
    set_cell(window, "gru")
    (run,) = window.state.comparisons
    runs_menu = menu(window, "R&uns")
    runs_menu.aboutToShow.emit()
    (sub,) = [a.menu() for a in runs_menu.actions() if a.menu() is not None]
    action(sub, "Shown").setChecked(False)
    assert run.hidden
    window.draw_now()
    assert not drawn(window.views["loss"].comparison_curves)
    window.state.set_hidden(run, False)
    window.draw_now()
    assert drawn(window.views["loss"].comparison_curves)


def test_at_most_four_comparisons_are_kept_the_oldest_dropped():
    state = AppState(RunConfig(hidden=8))
    made = []
    for hidden in range(8, 8 + MAX_COMPARISONS + 2):
        state.set_config(RunConfig(hidden=hidden))
        state.new_live_run()
        state.add_captures([synthetic_capture(0, T=5, H=hidden)])
        made.append(state.live)
    # The first run was empty: it was not kept.
    assert state.comparisons == tuple(made[-2::-1][:MAX_COMPARISONS])
    assert [c.label for c in state.shown_comparisons()] == [
        f"lstm, H {r.config.hidden}" for r in state.comparisons]
    state.new_live_run()    # the live run had nothing recorded: it is not kept
    assert state.comparisons[0] is made[-1]


def test_runs_with_the_same_settings_are_told_apart_by_number():
    state = AppState(RunConfig())
    state.add_captures([synthetic_capture(0, T=5)])
    state.new_live_run()    # Reset: the same settings again
    assert state.label(state.comparisons[0]) == "lstm, H 32 (run 1)"
    assert state.label(state.live) == "lstm, H 32 (run 2)"


def test_a_saved_run_opens_as_a_comparison_read_only(window, qtbot, tmp_path, monkeypatch):
    config = SMALL.replace(cell="gru")
    history = fill_history(synthetic_capture(s, cell="gru", T=SMALL.seq_len, H=8)
                           for s in range(7))
    save_run(tmp_path / "grurun", config, history)
    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName",
                        lambda *args, **kwargs: (str(tmp_path / "grurun" / "run.json"), ""))
    window.act_open_comparison.trigger()
    (run,) = window.state.comparisons
    assert run.config == config and window.config == SMALL   # the live model is untouched
    np.testing.assert_array_equal(run.history.loss, history.loss)
    window.draw_now()
    assert "grurun: gru, H 8" in window.views["loss"].colour_key.labels
