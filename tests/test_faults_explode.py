"""Training that explodes on purpose: the weights stay finite, the run pauses itself with a
message that says what happened and what to try, Reset recovers, and the views draw
1e30, 1e-30, 0, inf and nan without raising and on finite scales (issue 4, Explosions)."""
from __future__ import annotations

import json
import math
import queue
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from PyQt6 import QtCore, QtWidgets

from gradviz import cli
from gradviz.config import RunConfig
from gradviz.engine.training import messages as msg
from gradviz.engine.training.divergence import LIMIT, WINDOW, DivergenceWatch, advice
from gradviz.engine.training.process import serve
from gradviz.engine.runs.history import History
from gradviz.engine.training.train import Trainer
from gradviz.ui.prefs import Prefs
from gradviz.ui.views.data import LOG_FLOOR
from gradviz.ui.views.gradflow import NONFINITE_INDEX
from gradviz.ui.window import MainWindow

from helpers import kind, quit_and_drain

# The example: a ReLU RNN started at identity x 3, SGD at lr 10, no clipping.
# At T 50 the forward pass overflows from the first step on; at T 10 the first step is
# finite and its update leaves the weights huge but finite, so every later step fails.
EXPLODING = RunConfig(task="adding", seq_len=50, cell="rnn-relu", hidden=32, batch_size=32,
                      optimizer="sgd", lr=10.0, init="identity", rho=3.0, clip="none")
SHORT = EXPLODING.replace(seq_len=10, hidden=8, batch_size=16)
START_TIMEOUT_MS = 30000


# -- the rule -------------------------------------------------------------------------------
def feed(watch: DivergenceWatch, pattern: str, start: int = 0) -> list:
    """Record one step per character ('x' the loss not finite, '.' a good step); return the
    (step, Divergence) pairs where the rule tripped."""
    found = []
    for offset, mark in enumerate(pattern):
        result = watch.record(start + offset, "loss" if mark == "x" else None)
        if result is not None:
            found.append((start + offset, result))
    return found


def test_the_rule_trips_on_ten_failed_steps_in_twenty_and_not_on_odd_ones():
    assert (WINDOW, LIMIT) == (20, 10)
    # Every step failing: caught on the 10th, then again only after ten more.
    trips = feed(DivergenceWatch(), "x" * 25)
    assert [step for step, _ in trips] == [9, 19]
    first = trips[0][1]
    assert (first.first_step, first.failed, first.seen, first.in_a_row) == (0, 10, 10, True)
    assert first.faults == (("loss", 10),)
    assert "the loss was not finite on 10 steps in a row (steps 0–9)" in first.message()

    # Whether the next failure would trip it is known beforehand (to capture that step).
    watch = DivergenceWatch()
    feed(watch, "x" * 8)
    assert not watch.trips_if_next_fails()
    feed(watch, "x", start=8)
    assert watch.trips_if_next_fails()
    watch = DivergenceWatch()
    feed(watch, "x" * 9 + "." * 11)   # full window: the oldest failure leaves with the next step
    assert not watch.trips_if_next_fails()

    # One odd step, or one in three, for a long time: never.
    assert feed(DivergenceWatch(), ("x" + "." * 9) * 20) == []
    assert feed(DivergenceWatch(), "x.." * 100) == []
    # Nine failures in a row, then recovery: not yet.
    assert feed(DivergenceWatch(), "x" * 9 + "." * 30) == []

    # Every other step failing is divergence too, though not in a row.
    trips = feed(DivergenceWatch(), "x." * 15)
    assert [step for step, _ in trips] == [18]
    half = trips[0][1]
    assert (half.failed, half.seen, half.in_a_row) == (10, 19, False)
    assert "on 10 of the last 19 steps" in half.message()


def test_the_message_names_every_kind_of_failure():
    watch = DivergenceWatch()
    for step in range(LIMIT - 1):
        watch.record(step, "gradient" if step % 2 else "loss")
    found = watch.record(LIMIT - 1, "update")
    assert found.faults == (("loss", 5), ("gradient", 4), ("update", 1))
    text = found.message()
    assert "the loss or the gradient was not finite" in text
    assert "an update made weights non-finite" in text
    with pytest.raises(ValueError, match="unknown fault"):
        watch.record(LIMIT, "boom")


def test_the_advice_names_the_remedies_for_the_settings():
    text = advice(EXPLODING)
    assert "clipping by norm" in text
    assert "learning rate (now 10)" in text
    assert "ρ at most 1 (now 3)" in text
    clipped = advice(EXPLODING.replace(clip="norm", clip_threshold=5.0, rho=None))
    assert "lower clipping threshold (now 5)" in clipped
    assert "clipping by norm" not in clipped


# -- the engine -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exploding_run():
    """Twelve steps of EXPLODING, each captured in full, with the weights after each step."""
    trainer = Trainer(EXPLODING)
    start = [p.detach().clone() for p in trainer.params]
    captures, weights, divergence = [], [], []
    for _ in range(12):
        captures.append(trainer.step(full=True))
        weights.append([p.detach().clone() for p in trainer.params])
        divergence.append(trainer.divergence)
    return start, captures, weights, divergence


def test_a_real_divergent_run_keeps_every_weight_finite_and_trips_the_rule(exploding_run):
    start, captures, weights, divergence = exploding_run
    assert all(c.nonfinite for c in captures), "the example no longer diverges"
    assert all(not math.isfinite(c.loss) or not math.isfinite(c.grad_norm) for c in captures)
    for after in weights:
        assert all(torch.isfinite(w).all() for w in after)
        # A step that was not finite is not applied: the weights are those it started from.
        assert all(torch.equal(w, w0) for w, w0 in zip(after, start))
    tripped = [k for k, d in enumerate(divergence) if d is not None]
    assert tripped == [LIMIT - 1]
    assert divergence[LIMIT - 1].in_a_row and divergence[LIMIT - 1].first_step == 0


def test_huge_but_finite_weights_fail_forever_and_are_caught_clipping_avoids_it():
    trainer = Trainer(SHORT)
    first = trainer.step(full=False)
    assert not first.nonfinite   # one good step, whose update leaves the weights huge
    peak = max(p.detach().abs().max().item() for p in trainer.params)
    assert 1e4 < peak < math.inf
    trips = []
    for _ in range(2 * WINDOW):
        capture = trainer.step(full=False)
        assert capture.nonfinite
        assert all(torch.isfinite(p).all() for p in trainer.params)
        if trainer.divergence is not None:
            trips.append(trainer.divergence.step)
    assert trips == [10, 20, 30, 40]
    assert trainer.watch.tripped == 4 and trainer.watch.first.step == 10

    # What the message advises works: the same run clipped by norm trains.
    clipped = Trainer(SHORT.replace(clip="norm"))
    for _ in range(2 * WINDOW):
        assert not clipped.step(full=False).nonfinite
    assert clipped.watch.first is None


# -- the training process ---------------------------------------------------------------------
def test_the_worker_pauses_itself_sends_the_message_and_a_reset_recovers():
    commands, results = queue.Queue(), queue.Queue()
    thread = threading.Thread(target=serve, args=(commands, results, 3, SHORT.to_dict()))
    thread.start()
    messages: list = []
    try:
        commands.put(msg.Start())
        deadline = time.monotonic() + 30
        while not any(kind(m) == "diverged" for m in messages) and time.monotonic() < deadline:
            messages.append(results.get(timeout=30))
        time.sleep(0.3)   # a loop that kept running would send more data meanwhile
        while not results.empty():
            messages.append(results.get())
        kinds = [kind(m) for m in messages]
        at = kinds.index("diverged")
        assert kinds[at + 1:] == ["state"] and messages[-1].state == "paused"
        diverged = messages[at]
        assert diverged.step == 10
        assert "Training diverged" in diverged.message
        assert "10 steps in a row (steps 1–10)" in diverged.message
        assert "clipping by norm" in diverged.advice
        assert "learning rate" in diverged.advice
        # Every capture up to the one that tripped the rule was sent before the message.
        sent = [c for m in messages[:at] if kind(m) == "data" for c in m.captures]
        assert [c.step for c in sent] == list(range(11))
        assert not sent[-1].is_light   # the step shown with the message is captured in full

        messages.clear()
        commands.put(msg.Reset(4, SHORT.replace(clip="norm").to_dict()))
        for _ in range(15):
            commands.put(msg.Step())
        messages += quit_and_drain(commands, results, thread, 30)
        captures = [c for m in messages if kind(m) == "data" for c in m.captures]
        assert len(captures) == 15
        assert all(np.isfinite(c.loss) and not c.nonfinite for c in captures)
        assert not [m for m in messages if kind(m) in ("diverged", "error")]
    finally:
        commands.put(msg.Quit())
        thread.join(30)


# -- the window -------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_window_shows_the_divergence_stays_responsive_and_reset_recovers(qtbot, tmp_path):
    window = MainWindow(SHORT, Prefs(tmp_path / "settings.ini"))
    try:
        window.show()
        qtbot.waitExposed(window)
        qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
        ticks: list[float] = []
        clock = QtCore.QTimer(window)
        clock.timeout.connect(lambda: ticks.append(time.perf_counter()))
        clock.start(10)
        window.act_run.trigger()
        qtbot.waitUntil(lambda: window.error_box is not None, timeout=20000)
        box = window.error_box
        assert box.isVisible() and box.windowModality() == QtCore.Qt.WindowModality.NonModal
        # In the window, above the plots, covering none of them: no dialog over them.
        assert box.window() is window and not box.isWindow()
        tabs = window.dashboard.tabs
        assert box.mapTo(window, QtCore.QPoint(0, box.height())).y() <= tabs.mapTo(
            window, QtCore.QPoint(0, 0)).y()
        assert not [w for w in QtWidgets.QApplication.topLevelWidgets()
                    if w.isVisible() and isinstance(w, (QtWidgets.QDialog,
                                                        QtWidgets.QMessageBox))]
        text = box.text()
        assert "Training diverged" in text and "not finite" in text
        assert "clipping by norm" in text and "learning rate" in text and "Reset" in text
        qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=5000)
        assert window.act_run.text() == "Start"
        shown = len(window.history)
        waited = len(ticks)
        qtbot.wait(300)
        assert len(window.history) == shown   # paused: nothing more arrives
        assert window.history.nonfinite.sum() == shown - 1   # all but the first step

        # Start goes on with the same weights: ten more failed steps, and it pauses again.
        window.act_run.trigger()
        # The same notice says it in its place: the plots are not laid out again.
        qtbot.waitUntil(lambda: "10 steps in a row (steps 11–20)" in window.error_box.text(),
                        timeout=20000)
        assert window.error_box is box and box.isVisible()
        qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=5000)
        shown = len(window.history)
        assert shown == 21
        # The notice above the plots lays them out once (a fraction of a second on a
        # loaded machine); the clock is given time to tick after it.
        qtbot.wait(300)
        clock.stop()
        # The event loop kept turning all along: the 10 ms clock never stalled.
        assert len(ticks) - waited >= 10 and max(np.diff(ticks)) < 1.0
        window.draw_now()
        loss = window.views["loss"]
        assert len(loss.nonfinite_marks.xData) == 2 * (shown - 1)   # one event line per step
        assert "not finite (step skipped)" in loss.colour_key.labels

        # Follow the advice: clipping on (a live change), then Reset from the message.
        clip = window.controls.w["clip"]
        clip.setCurrentIndex(clip.findData("norm"))
        assert window.config.clip == "norm"
        reset = next(b for b in box.buttons() if b.text() == "Reset")
        reset.click()
        assert window.error_box is None and len(window.history) == 0
        qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
        window.act_run.trigger()
        qtbot.waitUntil(lambda: len(window.history) >= 2 * WINDOW, timeout=20000)
        window.act_run.trigger()
        assert np.isfinite(window.history.loss).all() and not window.history.nonfinite.any()
        assert window.error_box is None
    finally:
        window.close()


# -- the views --------------------------------------------------------------------------------
def plot_items(view) -> list:
    return [getattr(view, name) for name in ("plot", "plot_h", "plot_c", "params_plot", "heat",
                                             "sat") if hasattr(view, name)]


def assert_drawn_sanely(views) -> None:
    """Every curve's points and every plot's range finite; the colour scales finite."""
    QtWidgets.QApplication.processEvents()
    for key, view in views.items():
        for plot in plot_items(view):
            for item in plot.listDataItems():
                if item.xData is not None:
                    assert np.isfinite(item.xData).all() and np.isfinite(item.yData).all(), key
            (x0, x1), (y0, y1) = plot.getViewBox().viewRange()
            assert all(map(math.isfinite, (x0, x1, y0, y1))) and x1 > x0 and y1 > y0, key
        if hasattr(view, "bar"):
            lo, hi = view.bar.levels()
            assert math.isfinite(lo) and math.isfinite(hi) and hi > lo, key


@pytest.fixture
def views(views):
    """The views of conftest's fixture, shown (these tests read what was painted)."""
    for view in views.values():
        view.show()
    return views


def test_views_draw_a_run_that_diverged_from_its_first_step(views, exploding_run):
    _, captures, _, _ = exploding_run
    history = History()
    for capture in captures:
        history.append(capture)
    for view in views.values():
        view.set_data(history, history.latest)
    assert_drawn_sanely(views)
    K = len(captures)
    # Non-finite steps are events on the plots, not empty plots.
    assert len(views["loss"].nonfinite_marks.xData) == 2 * K
    assert len(views["gradnorm"].nonfinite_marks.xData) == 2 * K
    # Exactly the timesteps whose norm is not finite are drawn as such; the others, up to
    # 1e38, are finite (a norm summed in float32 used to overflow them to inf).
    dh = np.stack([c.dh_norm[0, 0] for c in captures])
    assert np.isfinite(dh).any() and not np.isfinite(dh).all()
    assert np.array_equal(views["gradflow"].image_array() == NONFINITE_INDEX, ~np.isfinite(dh))
    # Where a profile over t has nothing finite to draw (every norm NaN), the plot says so
    # instead of staying blank.
    history = History()
    for capture in captures:
        history.append(replace(capture, dh_norm=np.full_like(capture.dh_norm, np.nan)))
    for view in views.values():
        view.set_data(history, history.latest)
    gradtime = views["gradtime"]
    note = gradtime.notes["h"]
    assert note.isVisible() and "not finite" in note.textItem.toPlainText()
    (x0, x1), (y0, y1) = gradtime.plot_h.getViewBox().viewRange()
    assert x0 < note.pos().x() < x1 and y0 < note.pos().y() < y1
    # With no finite gradient yet, the scale is a usual span, not a decade at the floor.
    lo, hi = views["gradflow"].levels
    assert lo > math.log10(LOG_FLOOR) and hi - lo >= 1.0


def test_a_gradient_flushed_to_zero_is_said_in_words_not_drawn_at_the_floor(views, make_capture):
    T = 8
    dh = np.geomspace(1e-3, 1.0, T).astype(np.float32)
    dh[:3] = 0.0                                     # underflowed at t = 0, 1, 2
    history = History()
    history.append(make_capture(0, cell="lstm", T=T, H=4, dh=dh[None, None]))
    gradtime = views["gradtime"]
    gradtime.set_data(history, history.latest)
    bold = gradtime.curves_h[-1]
    assert list(bold.xData) == list(range(3, T))     # no point at 1e-30 stretches the axis
    note = gradtime.underflow["h"]
    assert note.isVisible() and "t = 0…2" in note.textItem.toPlainText()
    assert not gradtime.notes["h"].isVisible()
    (_, _), (y0, _) = gradtime.plot_h.getViewBox().viewRange()
    assert y0 > -10                                  # log10 of the axis's bottom: near 1e-3
    history = History()
    history.append(make_capture(1, cell="lstm", T=T, H=4, dh=np.ones((1, 1, T), np.float32)))
    gradtime.set_data(history, history.latest)
    assert not note.isVisible()


@pytest.mark.parametrize("cell", ["lstm", "rnn-relu"])
def test_views_draw_1e30_1e_minus_30_zero_inf_and_nan(views, make_capture, cell):
    values = np.array([1e30, 1e-30, 0.0, np.inf, np.nan, 1.0], np.float32)
    T = len(values)
    history = History()
    for step, value in enumerate(values):
        capture = make_capture(step, cell=cell, T=T, H=T, dh=np.roll(values, step)[None, None])
        capture.loss = float(value)
        capture.grad_norm = capture.grad_norm_clipped = float(value)
        capture.param_grad_norm = np.full_like(capture.param_grad_norm, value)
        capture.nonfinite = not np.isfinite(value)
        if capture.dc_norm is not None:
            capture.dc_norm = np.roll(values, -step)[None, None].copy()
        # The newest full capture, drawn by the gates and states views, has them all too:
        # at t = 0, one value per unit.
        capture.probe_h[:, :, 0, :] = values
        if capture.probe_c is not None:
            capture.probe_c[:, :, 0, :] = values
        capture.gates[:, :, :, 0, :] = values
        capture.sat_low[:, :, :, 0] = value
        history.append(capture)
    for view in views.values():
        view.set_data(history, history.latest)
    assert_drawn_sanely(views)
    assert not views["gradtime"].notes["h"].isVisible()   # its newest curve has finite points

    # Both extremes are on the log axes: 1e30 at the top of the loss and norm plots.
    for view, item in ((views["loss"], views["loss"].loss_curve),
                       (views["gradnorm"], views["gradnorm"].before)):
        assert item.yData.max() == pytest.approx(1e30, rel=1e-6)
        assert item.yData.min() == pytest.approx(LOG_FLOOR)   # 1e-30 and 0 at the floor
        view.plot.getViewBox().autoRange()
        assert view.plot.getViewBox().viewRange()[1][1] >= 30.0
    bad = ~np.isfinite(values)
    assert len(views["loss"].nonfinite_marks.xData) == 2 * bad.sum()
    assert len(views["gradnorm"].nonfinite_marks.xData) == 2 * bad.sum()
    image = views["gradflow"].image_array()
    assert ((image == NONFINITE_INDEX) == ~np.isfinite(history.dh_norm[:, 0, 0])).all()
    lo, hi = views["gradflow"].levels   # spans the finite nonzero values, 1 to 1e30
    assert lo <= 0 and hi >= 30
    dh = history.dh_norm[:, 0, 0]
    top = image[dh == np.float32(1e30)]
    assert ((top >= 0.95 * (NONFINITE_INDEX - 1)) & (top < NONFINITE_INDEX)).all()  # the top
    assert (image[dh <= np.float32(1e-30)] == 0).all()                     # the bottom one
    for view in views.values():   # CSV export of the same data does not raise either
        if view.key != "text":
            header, rows = view.csv_table()
            assert rows.shape[1] == len(header)


# -- the headless command ---------------------------------------------------------------------
def test_a_headless_run_reports_the_divergence_goes_on_and_records_it(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--task", "adding", "--seq-len", "10", "--cell", "rnn-relu", "--hidden", "8",
            "--batch-size", "16", "--optimizer", "sgd", "--lr", "10", "--init", "identity",
            "--rho", "3", "--clip", "none", "--steps", "30", "--out", str(out)]
    assert cli.main(args) == 0
    lines = [line.strip("\r ") for line in capsys.readouterr().err.splitlines()]
    assert "Traceback" not in "\n".join(lines)
    assert any(line.startswith("warning: Training diverged: the loss was not finite on 10 steps "
                               "in a row (steps 1–10)") for line in lines)
    assert lines[-2].startswith("warning: training diverged at step 10, and 1 more time later")
    assert "clipping by norm" in lines[-2]
    assert lines[-1].startswith("done: 30 steps")
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert summary["steps_done"] == 30 and summary["diverged_at_step"] == 10
    assert summary["nonfinite_steps"] == 29
