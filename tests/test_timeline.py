"""The timeline: the slider and the ← / → / Home / End keys choose the training step the
per-step views show, from the live run's keyframes; curves and heatmaps mark it."""
from __future__ import annotations

import numpy as np
import pytest
from PyQt6 import QtCore

from gradviz.engine.runs.keyframes import Keyframes
from gradviz.ui.state import AppState, Comparison, ShownRun

from conftest import fill_history, synthetic_capture
from test_window import SMALL, open_window, prefs  # noqa: F401 - fixture

T, H = SMALL.seq_len, SMALL.hidden
STEPS = 40


@pytest.fixture
def window(qtbot, prefs):  # noqa: F811 - the fixture imported above
    window = open_window(qtbot, prefs)
    # Every step a full capture, as when training is slow enough for the window to keep up.
    window.state.add_captures([synthetic_capture(s, T=T, H=H) for s in range(STEPS)])
    window.draw_now()
    yield window
    window.close()


def key(qtbot, window, k) -> None:
    qtbot.keyClick(window, k)
    window.draw_now()


def test_the_timeline_moved_to_an_early_step_shows_that_steps_gates(window, qtbot):
    keyframes = window.state.live.keyframes
    assert window.timeline.shown_step == STEPS - 1
    gates = window.views["gates"]
    window.timeline.slider.setValue(7)          # as a drag lets go at step 7
    window.draw_now()
    frame = keyframes.nearest(7)
    assert window.state.selected_step == frame.step == 7
    np.testing.assert_array_equal(gates.image.image, frame.gates[0, 0, 0])
    assert "step 7" in gates.heading.plain_text()
    assert window.timeline.label.text() == f"step 7 of {STEPS - 1}"
    states = window.views["states"]
    np.testing.assert_array_equal(states.curves_h[0].yData, frame.probe_h[0, 0, :, 0])
    gradtime = window.views["gradtime"]
    np.testing.assert_array_equal(gradtime.curves_h[-1].yData, frame.dh_norm[0, 0])
    assert gradtime.colour_key.labels[0] == "7 (shown)"
    for view, marker in (("loss", "marker"), ("gradflow", "marker")):
        assert getattr(window.views[view], marker).step == 7.0, view
    assert [m.step for m in window.views["gradnorm"].markers] == [7.0, 7.0]


def test_left_and_right_move_it_home_and_end_go_to_the_ends(window, qtbot):
    steps = window.state.live.keyframes.steps
    key(qtbot, window, QtCore.Qt.Key.Key_Left)
    assert window.state.selected_step == steps[-2]
    key(qtbot, window, QtCore.Qt.Key.Key_Left)
    assert window.state.selected_step == steps[-3]
    key(qtbot, window, QtCore.Qt.Key.Key_Right)
    assert window.state.selected_step == steps[-2]
    np.testing.assert_array_equal(window.views["gates"].image.image,
                                  window.state.live.keyframes.nearest(steps[-2]).gates[0, 0, 0])
    key(qtbot, window, QtCore.Qt.Key.Key_Home)
    assert window.state.selected_step == steps[0] and window.timeline.slider.value() == steps[0]
    key(qtbot, window, QtCore.Qt.Key.Key_End)
    assert window.state.selected_step is None
    assert window.views["loss"].marker.step is None


def test_it_follows_the_newest_step_unless_moved(window, qtbot):
    window.state.add_captures([synthetic_capture(STEPS, T=T, H=H)])
    window.draw_now()
    assert window.timeline.slider.value() == STEPS and window.timeline.shown_step == STEPS
    window.timeline.select(10)
    window.state.add_captures([synthetic_capture(STEPS + 1, T=T, H=H)])
    window.draw_now()
    assert window.state.selected_step == 10 and window.timeline.slider.value() == 10
    assert window.timeline.slider.maximum() == STEPS + 1
    np.testing.assert_array_equal(window.views["gates"].image.image,
                                  window.state.live.keyframes.nearest(10).gates[0, 0, 0])


def test_it_snaps_to_the_nearest_keyframe(qtbot):
    state = AppState(SMALL)
    # Light captures but every tenth: only those are keyframes.
    state.add_captures([synthetic_capture(s, T=T, H=H, light=s % 10 != 0) for s in range(35)])
    from gradviz.ui.timeline import Timeline
    timeline = Timeline(state)
    qtbot.addWidget(timeline)
    timeline.slider.setValue(13)
    assert state.selected_step == 10 and timeline.slider.value() == 10
    timeline.slider.setValue(17)
    assert state.selected_step == 20


def test_text_follows_the_step_shown(window, qtbot):
    state = window.state
    for step, text in ((5, "early"), (30, "late")):
        state.live.history.clear()
        state.live.history.append(synthetic_capture(step, T=T, H=H))
        state.set_text(text)
    assert window.views["text"].text() == "late"
    window.timeline.select(10)
    assert window.views["text"].text() == "early"
    window.timeline.follow()
    assert window.views["text"].text() == "late"


def test_the_comparison_shows_its_nearest_step_and_gates_stack_on_one_scale(qtbot, views):
    live = fill_history(synthetic_capture(s, T=10, H=6) for s in range(30))
    frames = Keyframes()
    other = fill_history(synthetic_capture(s, T=10, H=6, seed=100 + s) for s in range(20))
    for s in range(20):
        frames.add(synthetic_capture(s, T=10, H=6, seed=100 + s))
    run = ShownRun(SMALL, other, keyframes=frames)
    state = AppState(SMALL)
    state.add_comparison(run)
    state.select_step(12)
    (comparison,) = state.shown_comparisons()
    assert comparison.capture.step == 12
    gates = views["gates"]
    gates.set_comparisons((comparison,), "live", 12)
    gates.set_data(live, synthetic_capture(12, T=10, H=6))
    assert not gates._stacked
    gates.compare_box.setChecked(True)
    np.testing.assert_array_equal(gates.other_image.image, comparison.capture.gates[0, 0, 0])
    assert gates.other_image.levels is not None
    np.testing.assert_array_equal(gates.other_image.levels, gates.image.levels)


def test_gradflow_stacks_a_comparison_on_the_same_axes_and_colour_scale(views, make_history):
    view = views["gradflow"]
    live = make_history(20, T=10, decay=0.8)
    other = make_history(12, T=10, decay=0.3)     # spans more decades than the live run
    view.set_comparisons((Comparison("gru, H 8", other, other.latest, 0),), "lstm, H 8")
    view.set_data(live, live.latest)
    assert view.other_image_array() is None      # off until asked for
    view.compare_box.setChecked(True)
    lo, hi = view.levels
    log_other = np.log10(other.dh_norm[:, 0, 0].astype(np.float64))
    assert lo <= np.percentile(log_other, 1) and hi >= np.percentile(log_other, 99)
    expected = np.clip((log_other - lo) * 254 / (hi - lo), 0, 254)
    # Equal up to where float32 and float64 round a value at a colour boundary apart.
    assert np.abs(view.other_image_array().astype(float) - np.floor(expected)).max() <= 1
    left = view.other_image.edges[0], view.other_image.edges[-1]
    assert left == (-0.5, 11.5)                  # its own steps, on the shared step axis
    assert view.other_plot.getViewBox().linkedView(0) is view.plot.getViewBox()
