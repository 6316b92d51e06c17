"""Runs side by side: a new model keeps the run on screen as a comparison, drawn dimmed
behind the live one with a key naming what differs; comparison runs can be hidden,
removed (and their memory freed) and opened from a saved run."""
from __future__ import annotations

import csv
import gc
import weakref

import numpy as np
import pytest
from PyQt6 import QtWidgets

from gradviz.config import RunConfig, describe, differences
from gradviz.engine.runs.runfile import save_run
from gradviz.ui.state import MAX_COMPARISONS, AppState, ShownRun
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
    assert loss.colour_key.labels[0] == "lstm"     # no live steps yet: the old run only
    run_until(qtbot, window, 3)
    assert loss.colour_key.labels[:2] == ["loss: gru", "lstm"]   # what differs
    (item,) = drawn(loss.comparison_curves)
    x, y = positive_finite(old.history.step, old_loss)
    np.testing.assert_array_equal(item.xData, x)
    np.testing.assert_array_equal(item.yData, y)
    assert item.opts["pen"].color().name() == comparison_colour(0)
    assert item.zValue() < loss.loss_curve.zValue()     # behind the live run
    gradnorm = window.views["gradnorm"]
    assert "lstm" in gradnorm.colour_key.labels
    (item,) = drawn(gradnorm.comparison_curves)
    np.testing.assert_array_equal(item.yData, positive_finite(old.history.step, old_norm)[1])
    gradtime = window.views["gradtime"]
    (item,) = drawn(gradtime.comparison_h)
    np.testing.assert_array_equal(item.yData, positive_finite(
        np.arange(SMALL.seq_len), old.latest.dh_norm[0, 0])[1])
    assert f"lstm @ {old.latest.step}" in gradtime.colour_key.labels


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
    assert sub.title() == "lstm"
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
        f"H {r.config.hidden}" for r in state.comparisons]
    before = state.comparisons
    state.new_live_run()    # a Reset without a change: the live run is not stacked
    assert state.comparisons == before


def test_reset_without_a_change_does_not_stack_a_copy():
    state = AppState(RunConfig())
    state.add_captures([synthetic_capture(0, T=5)])
    state.new_live_run()    # Reset: the same settings (and seed) would train the same run
    assert state.comparisons == ()
    state.add_captures([synthetic_capture(0, T=5)])
    clipped = RunConfig(clip="norm", clip_threshold=2.0)
    state.set_config(clipped, fresh=True)
    state.new_live_run()
    (unclipped,) = state.comparisons
    for _ in range(3):      # R, R, R on the clipped run
        state.add_captures([synthetic_capture(0, T=5)])
        state.new_live_run()
    assert state.comparisons == (unclipped,)
    # A run whose settings changed while it trained is not what a Reset trains again.
    state.add_captures([synthetic_capture(0, T=5)])
    state.set_config(clipped.replace(lr=0.01))
    changed = state.live
    state.new_live_run()
    assert state.comparisons == (changed, unclipped)


def test_runs_with_the_same_settings_are_told_apart_by_number():
    state = AppState(RunConfig())
    for _ in range(2):      # two runs that differ from the live one alike
        run = ShownRun(RunConfig(seed=5), fill_history(
            synthetic_capture(s, T=5) for s in range(2)))
        state.add_comparison(run)
    first, second = state.comparisons
    assert state.label(first) == f"seed 5 (run {first.number})"
    assert state.label(second) == f"seed 5 (run {second.number})"


def test_a_label_names_what_differs_from_the_live_run_and_is_never_stale():
    unclipped = RunConfig(cell="rnn-relu", clip="none", clip_threshold=2.0)
    state = AppState(unclipped)
    state.add_captures([synthetic_capture(0, T=5)])
    first = state.live
    # The "Now: clip" step: the settings change and a fresh model follows at once.
    state.set_config(unclipped.replace(clip="norm"), fresh=True)
    state.new_live_run()
    assert first.config.clip == "none"
    assert state.label(first) == "no clipping"
    assert state.label(state.live) == "clip by norm at 2"
    # A live change of the running model is part of its run, and the labels follow it.
    state.set_config(state.config.replace(clip_threshold=5.0))
    assert state.label(state.live) == "clip by norm at 5"
    assert state.label(first) == "no clipping"
    lstm = RunConfig(forget_bias=1.0)
    assert differences(lstm.replace(forget_bias=0.0), [lstm]) == ["forget-gate bias 0"]
    assert differences(lstm.replace(stateful=True), [lstm]) == ["stateful"]
    # A threshold that differs while neither run clips is no difference.
    assert differences(lstm.replace(clip_threshold=9.0), [lstm]) == []


def test_runs_of_another_task_or_length_are_set_aside_and_come_back():
    state = AppState(RunConfig(task="adding", seq_len=20))
    said = []
    state.runs_set_aside.connect(said.append)
    state.add_captures([synthetic_capture(0, T=20)])
    adding = state.live
    state.set_config(RunConfig(task="adding", seq_len=20, hidden=16))
    state.new_live_run()
    assert state.comparisons == (adding,) and not said    # same task and T: shared axes
    state.add_captures([synthetic_capture(0, T=20, H=16)])
    wider = state.live
    state.set_config(RunConfig(task="copy", seq_len=20))
    state.new_live_run()
    assert state.comparisons == () and state.set_aside == (wider, adding)
    assert said and "2 comparison runs set aside" in said[-1] and "Runs" in said[-1]
    state.bring_back(adding)
    assert state.comparisons == (adding,) and state.set_aside == (wider,)
    state.add_captures([synthetic_capture(0, T=20)])
    state.set_aside_all("a new experiment")
    assert state.comparisons == () and adding in state.set_aside
    assert "1 comparison run set aside (a new experiment)" in said[-1]


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
    assert "grurun: gru" in window.views["loss"].colour_key.labels


def test_a_views_csv_holds_every_run_on_it_one_column_group_each(qtbot, tmp_path):
    from gradviz.ui.views import make_views

    state = AppState(RunConfig(clip="none", clip_threshold=2.0))
    state.add_captures([synthetic_capture(s, T=6) for s in range(5)])
    state.set_config(state.config.replace(clip="norm"), fresh=True)
    state.new_live_run()
    state.add_captures([synthetic_capture(s, T=6, clip="norm", clip_threshold=2.0)
                        for s in range(3)])
    views = make_views()
    for key in ("loss", "gradnorm", "gradtime"):
        view = views[key]
        view.set_comparisons(state.shown_comparisons(), state.label(state.live))
        view.set_data(state.live.history, state.live.latest)
        view.export(tmp_path / f"{key}.csv")
        with open(tmp_path / f"{key}.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        header, body = rows[0], rows[1:]
        groups = {name.split(": ")[0] for name in header if ": " in name}
        assert groups == {"clip by norm at 2", "no clipping"}, (key, header)
        if key != "gradtime":
            assert "no clipping: step" in header and "clip by norm at 2: loss" in header \
                or key == "gradnorm"
            assert len(body) == 5       # the longer run; the shorter padded with nan
            column = header.index("clip by norm at 2: step")
            assert [row[column] for row in body] == ["0", "1", "2", "nan", "nan"]
    # The heatmap views draw the newest comparison below theirs while "compare" is on.
    for key in ("gradflow", "gates"):
        view = views[key]
        view.set_comparisons(state.shown_comparisons(), state.label(state.live))
        view.set_data(state.live.history, state.live.latest)
        header, _ = view.csv_table()
        assert not [name for name in header if name.startswith("no clipping: ")]
        view.compare_box.setChecked(True)
        view.set_data(state.live.history, state.live.latest)
        header, rows = view.csv_table()
        assert {name.split(": ")[0] for name in header} == {"clip by norm at 2", "no clipping"}
        assert len(rows) == (5 if key == "gradflow" else 6)


@pytest.mark.slow
def test_an_experiments_second_step_is_labelled_by_what_differs_and_a_new_one_sets_runs_aside(
        window, qtbot):
    from gradviz.experiments import load_experiment

    exploding = load_experiment("exploding-relu")
    window.load_experiment(exploding)
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=30000)
    run_until(qtbot, window, 5)
    first = window.state.live
    window.banner.then_button.click()           # "Now: clip the gradient norm at 1"
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=30000)
    assert window.state.comparisons == (first,) and first.config.clip == "none"
    run_until(qtbot, window, 3)
    loss = window.views["loss"]
    threshold = exploding.then_config.clip_threshold
    assert loss.colour_key.labels[:2] == [f"loss: clip by norm at {threshold:g}", "no clipping"]
    window.banner.then_button.click()           # again: the same settings, no copy stacked
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=30000)
    assert window.state.comparisons == (first,)
    run_until(qtbot, window, 3)
    clipped = window.state.live
    window.load_experiment(load_experiment("vanishing-tanh"))
    assert window.state.comparisons == ()
    assert set(window.state.set_aside) == {first, clipped}
    assert "set aside" in window.statusBar().currentMessage()
    runs_menu = menu(window, "R&uns")
    runs_menu.aboutToShow.emit()
    back = [a for a in runs_menu.actions() if a.text().startswith("Bring back")]
    assert len(back) == 2
    back[0].trigger()
    assert len(window.state.comparisons) == 1
