"""The main window driven as a user would: keys, menus, controls. Training runs in-process
(:class:`~gradviz.ui.inprocess.InProcessWorker`, the same messages as the training process)
except where a test is about the process itself (``real=True``, marked slow). Settings go
to a temporary file, never the user's."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.config import LIMITS, RunConfig, settings
from gradviz import registry
from gradviz.ui.controls import ControlPanel
from gradviz.ui.inprocess import InProcessWorker
from gradviz.ui.model import AppModel
from gradviz.ui.prefs import ENV_VAR, Prefs
from gradviz.ui.window import MainWindow

from helpers import settle

SMALL = RunConfig(task="adding", seq_len=12, cell="lstm", hidden=8, batch_size=8)
START_TIMEOUT_MS = 30000


@pytest.fixture
def prefs(tmp_path):
    return Prefs(tmp_path / "settings.ini")


def open_window(qtbot, prefs, config=SMALL, real: bool = False) -> MainWindow:
    """The window shown, its model paused and ready. Training runs in-process (a thread,
    :class:`~gradviz.ui.inprocess.InProcessWorker`) unless ``real``: a training process,
    as the app has (seconds more to start)."""
    if real:
        window = MainWindow(config, prefs)
    else:
        window = MainWindow(model=AppModel(config, prefs, backend=InProcessWorker))
    # The plain grid of six views (no focus layout): these tests read every view.
    window.dashboard.set_focus(())
    window.show()
    window.activateWindow()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    return window


@pytest.fixture
def window(qtbot, prefs):
    window = open_window(qtbot, prefs)
    yield window
    window.close()


def run_until(qtbot, window, captures: int, timeout_ms: int = 20000) -> None:
    """Train until the history holds ``captures`` rows, then pause and let it settle."""
    if not window.state.running:
        window.act_run.trigger()
    qtbot.waitUntil(lambda: len(window.history) >= captures, timeout=timeout_ms)
    with qtbot.waitSignal(window.worker.state_changed, timeout=5000,
                          check_params_cb=lambda state: state == "paused"):
        window.act_run.trigger()
    settle(qtbot, window)


def menu(window, title: str) -> QtWidgets.QMenu:
    return next(a.menu() for a in window.menuBar().actions() if a.text() == title)


def test_training_fills_the_views_one_image_row_per_capture(window, qtbot):
    run_until(qtbot, window, 6)
    K = len(window.history)
    np.testing.assert_array_equal(window.history.step, np.arange(K))
    image = window.views["gradflow"].image_array()
    assert image.shape == (K, SMALL.seq_len)
    assert window.views["gates"].gate_names == ["i", "f", "g", "o"]
    assert window.step_label.text() == f"step {K}"
    assert not window.views["text"].isVisible()  # not a language task


def test_norm_clipping_switched_mid_run_bounds_every_later_step(window, qtbot):
    captures: list = []
    window.worker.captures_ready.connect(captures.extend)
    window.act_run.trigger()
    qtbot.waitUntil(lambda: len(captures) >= 3, timeout=20000)
    threshold = 0.01
    window.controls.w["clip_threshold"].setValue(threshold)
    clip = window.controls.w["clip"]
    clip.setCurrentIndex(clip.findData("norm"))
    assert window.config.clip == "norm" and window.config.clip_threshold == threshold
    qtbot.waitUntil(lambda: sum(c.clip == "norm" for c in captures) >= 10, timeout=20000)
    window.act_run.trigger()

    # A live change: the same training went on, no restart.
    steps = [c.step for c in captures]
    assert steps == list(range(len(steps)))
    first = next(i for i, c in enumerate(captures) if c.clip == "norm")
    assert first > 0
    later = captures[first:]
    assert all(c.clip == "norm" for c in later)
    assert all(c.grad_norm > threshold for c in later)  # clipping had work to do
    for c in later:
        assert c.grad_norm_clipped <= threshold * (1 + 1e-6), c.step
        assert c.clipped


def test_switching_the_cell_to_gru_restarts_running_and_gates_offer_r_z_n(window, qtbot):
    window.act_run.trigger()
    qtbot.waitUntil(lambda: len(window.history) >= 3, timeout=20000)
    cell = window.controls.w["cell"]
    cell.setCurrentIndex(cell.findData("gru"))
    assert window.config.cell == "gru"
    gates = window.views["gates"]
    qtbot.waitUntil(lambda: gates.gate_names == ["r", "z", "n"], timeout=START_TIMEOUT_MS)
    assert window.worker.state == "running"  # it was running, so it still is
    assert window.history.step[0] == 0      # a fresh model
    assert window.history.latest.gate_names == ("r", "z", "n")
    assert window.config.seed == SMALL.seed


def test_space_s_and_r_act_when_a_plot_has_the_focus(window, qtbot):
    # Typing in a spin box keeps the focus there; a click on a plot must take it back.
    seq_len = window.controls.w["seq_len"]
    seq_len.setFocus()
    plot = window.views["gradflow"]
    qtbot.mouseClick(plot, QtCore.Qt.MouseButton.LeftButton)
    assert not seq_len.hasFocus()

    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.worker.state == "running" and len(window.history) >= 3,
                    timeout=20000)
    assert window.act_run.text() == "Pause"
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=5000)
    settle(qtbot, window)
    before = len(window.history)
    assert window.act_run.text() == "Start"

    qtbot.keyClick(window, QtCore.Qt.Key.Key_S)
    qtbot.waitUntil(lambda: len(window.history) == before + 1, timeout=5000)
    settle(qtbot, window)
    assert len(window.history) == before + 1
    assert window.worker.state == "paused"

    qtbot.keyClick(window, QtCore.Qt.Key.Key_R)
    assert len(window.history) == 0
    assert window.step_label.text() == "step 0"
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_S)
    qtbot.waitUntil(lambda: len(window.history) == 1, timeout=5000)
    settle(qtbot, window)
    assert list(window.history.step) == [0]


def test_export_dashboard_from_the_file_menu_writes_a_picture(window, qtbot, tmp_path,
                                                               monkeypatch):
    run_until(qtbot, window, 4)
    target = tmp_path / "dashboard.png"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *args, **kwargs: (str(target), "PNG (*.png)"))
    action = next(a for a in menu(window, "&File").actions() if a.text() == "Export dashboard…")
    action.trigger()
    image = QtGui.QImage(str(target))
    assert not image.isNull()
    assert image.width() >= window.width() and image.height() >= window.height()
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB32)
    pixels = np.frombuffer(image.constBits().asstring(image.sizeInBytes()), np.uint8)
    pixels = pixels.reshape(image.height(), image.bytesPerLine() // 4, 4)[:, :image.width(), :3]
    colours = np.unique(pixels[::4, ::4].reshape(-1, 3), axis=0)
    assert len(colours) > 50  # plots, text and heatmaps, not a blank frame
    assert not [p for p in os.listdir(tmp_path) if p != "dashboard.png" and p.endswith(".png")]


def test_each_view_exports_from_the_file_menu(window, qtbot, tmp_path, monkeypatch):
    run_until(qtbot, window, 3)
    target = tmp_path / "gradflow"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *args, **kwargs: (str(target), ""))
    export = next(a.menu() for a in menu(window, "&File").actions() if a.text() == "Export")
    titles = [a.text() for a in export.actions()]
    assert titles == [view.title for view in window.views.values()] + [
        "Image size (PNG)", "", "TensorBoard…"]
    gradflow = export.actions()[titles.index(window.views["gradflow"].title)].menu()
    csv = next(a for a in gradflow.actions() if a.text() == "CSV…")
    csv.trigger()
    header, rows = window.views["gradflow"].csv_table()
    written = (tmp_path / "gradflow.csv").read_text(encoding="utf-8").splitlines()
    assert written[0].split(",")[:2] == header[:2]
    assert len([line for line in written[1:] if line.strip()]) == len(rows) == len(window.history)


def test_save_and_open_a_run_round_trip(window, qtbot, tmp_path, monkeypatch):
    run_until(qtbot, window, 6)
    saved = {name: np.array(getattr(window.history, name))
             for name in ("step", "loss", "grad_norm", "dh_norm", "param_grad_norm")}
    folder = tmp_path / "myrun"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *args, **kwargs: (str(folder), ""))
    window.act_save.trigger()
    assert (folder / "run.json").is_file()

    # Something else in between: another model.
    hidden = window.controls.w["hidden"]
    hidden.setValue(5)
    assert window.config.hidden == 5 and len(window.history) == 0

    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName",
                        lambda *args, **kwargs: (str(folder / "run.json"), ""))
    window.act_open.trigger()
    assert window.config == SMALL
    assert window.controls.config() == SMALL
    for name, array in saved.items():
        np.testing.assert_array_equal(getattr(window.history, name), array, err_msg=name)
    assert "myrun" in window.windowTitle()
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    window.draw_now()
    assert window.views["gradflow"].image_array().shape == (len(saved["step"]), SMALL.seq_len)
    assert window.state_label.text() == "viewing saved run"

    # Starting again trains a fresh model with the run's settings (asked: it could be
    # continued, tests/test_runfiles.py).
    monkeypatch.setattr("gradviz.ui.runfiles.ask_continue", lambda parent, name: "new")
    window.act_run.trigger()
    assert len(window.history) == 0
    qtbot.waitUntil(lambda: len(window.history) >= 2, timeout=20000)
    window.act_run.trigger()
    assert window.history.step[0] == 0
    assert window.history.latest.gates.shape[-1] == SMALL.hidden


def test_opening_a_broken_run_says_what_is_wrong(window, qtbot, tmp_path, monkeypatch):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "run.json").write_text("{not json", encoding="utf-8")
    messages: list = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning",
                        lambda parent, title, text, *a: messages.append(text))
    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName",
                        lambda *args, **kwargs: (str(folder / "run.json"), ""))
    window.act_open.trigger()
    assert len(messages) == 1 and "run.json" in messages[0]
    assert window.config == SMALL


def test_a_training_error_is_shown_and_reset_recovers(window, qtbot, tmp_path):
    corpus = tmp_path / "corpus.txt"
    config = SMALL.replace(task="text", text_file=str(corpus), cell="gru")
    window.controls.set_config(config)
    window.apply_config(config)  # as if the chosen file vanished before training began
    qtbot.waitUntil(lambda: window.error_box is not None and window.error_box.isVisible(),
                    timeout=START_TIMEOUT_MS)
    assert "corpus.txt" in window.error_box.text()
    assert "corpus.txt" in window.statusBar().currentMessage()
    assert window.state_label.text() == "error"
    assert window.worker.is_alive()
    window.act_run.trigger()  # nothing to run: says so, and stays put
    assert window.act_run.text() == "Start"
    assert "Reset" in window.statusBar().currentMessage()

    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    close = window.error_box.close_button      # the notice above the plots: ×
    qtbot.mouseClick(close, QtCore.Qt.MouseButton.LeftButton)
    assert window.error_box is None
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_R)
    assert window.state_label.text() == "starting"
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    window.act_step.trigger()
    qtbot.waitUntil(lambda: len(window.history) == 1, timeout=10000)
    qtbot.waitUntil(lambda: window.views["text"].isVisible(), timeout=5000)


@pytest.mark.slow
def test_closing_during_training_is_fast_and_settings_come_back(qtbot, prefs):
    # A real training process: closing must end it, within a second.
    config = SMALL.replace(hidden=12, lr=0.003)
    window = open_window(qtbot, prefs, config, real=True)
    window.resize(720, 560)  # the offscreen screen is 800 x 600
    window.act_run.trigger()
    qtbot.waitUntil(lambda: len(window.history) >= 3, timeout=20000)
    pid = window.worker.pid
    started = time.monotonic()
    window.close()
    assert time.monotonic() - started < 1.0
    assert not window.worker.is_alive()
    assert not os.path.exists(f"/proc/{pid}")

    again = MainWindow(prefs=prefs)
    try:
        assert again.config == config
        assert again.controls.w["hidden"].value() == 12
        assert (again.width(), again.height()) == (720, 560)
    finally:
        again.close()


def test_prefs_round_trip_and_ignore_what_they_cannot_read(tmp_path, monkeypatch):
    path = tmp_path / "p.ini"
    prefs = Prefs(path)
    assert prefs.load_config() is None
    config = RunConfig(cell="gru", seq_len=77, rho=1.25, clip="value")
    prefs.save_config(config)
    prefs.save_geometry(QtCore.QByteArray(b"\x01\x02geometry"))
    prefs.sync()
    again = Prefs(path)
    assert again.load_config() == config
    assert bytes(again.load_geometry()) == b"\x01\x02geometry"

    again.settings.setValue("run/config", "{broken")
    assert again.load_config() is None
    again.settings.setValue("run/config", json.dumps({"cell": "transformer"}))
    assert again.load_config() is None

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.ini"))
    Prefs().save_config(config)
    Prefs().sync()
    assert Prefs(tmp_path / "env.ini").load_config() == config


def test_controls_accept_only_valid_values(qtbot):
    panel = ControlPanel(SMALL)
    qtbot.addWidget(panel)
    changes: list = []
    panel.config_changed.connect(changes.append)
    for name in ("seq_len", "hidden", "layers", "batch_size", "tbptt", "seed", "capture_every"):
        box = panel.w[name]
        assert (box.minimum(), box.maximum()) == tuple(int(v) for v in LIMITS[name]), name
    for name in ("lr", "clip_threshold", "momentum", "rho", "forget_bias"):
        box = panel.w[name]
        assert (box.minimum(), box.maximum()) == pytest.approx(LIMITS[name]), name

    lr = panel.w["lr"]
    lr.lineEdit().selectAll()
    qtbot.keyClicks(lr.lineEdit(), "3e-3")
    qtbot.keyClick(lr.lineEdit(), QtCore.Qt.Key.Key_Return)
    assert changes[-1].lr == pytest.approx(3e-3)
    lr.stepBy(1)
    assert changes[-1].lr == pytest.approx(5e-3)
    lr.stepBy(-2)
    assert changes[-1].lr == pytest.approx(1e-3)
    lr.lineEdit().selectAll()
    qtbot.keyClicks(lr.lineEdit(), "1e9")  # above the limit: not taken
    qtbot.keyClick(lr.lineEdit(), QtCore.Qt.Key.Key_Return)
    assert panel.config().lr <= LIMITS["lr"][1]

    assert not panel.w["momentum"].isEnabled()
    optimizer = panel.w["optimizer"]
    optimizer.setCurrentIndex(optimizer.findData("sgd"))
    assert panel.w["momentum"].isEnabled() and changes[-1].optimizer == "sgd"

    assert changes[-1].rho is None and not panel.w["rho"].isEnabled()
    panel.on_checks["rho"].setChecked(True)
    panel.w["rho"].setValue(1.5)
    assert changes[-1].rho == 1.5
    panel.on_checks["rho"].setChecked(False)
    assert changes[-1].rho is None

    count = len(changes)
    panel.set_config(SMALL)  # showing a config is not a change by the user
    assert len(changes) == count and panel.config() == SMALL


def row_of(panel: ControlPanel, name: str) -> tuple[str, str, str]:
    """(group title, row label or check box text, tooltip) of a setting's widget."""
    widget = panel.w[name]
    field = widget.parentWidget() if name in panel.on_checks else widget  # rho: check + box
    group = field.parentWidget()
    assert isinstance(group, QtWidgets.QGroupBox), name
    label = group.layout().labelForField(field)
    text = label.text() if label is not None else widget.text()
    return group.title(), text, field.toolTip()


def test_the_panel_shows_every_shown_setting_as_declared(qtbot):
    panel = ControlPanel(SMALL)
    qtbot.addWidget(panel)
    shown = {name for name, s in settings() if s.shown}
    assert set(panel.w) == shown
    assert {name for name, s in settings() if not s.shown} == {"device", "dtype", "steps",
                                                               "text_file", "series_file",
                                                               "series_column"}
    for name, s in settings():
        if not s.shown:
            continue
        assert panel.findChild(QtWidgets.QWidget, name) is panel.w[name]
        group, label, tip = row_of(panel, name)
        assert (group, label) == (s.group, s.label), name
        assert tip.startswith(s.help) and ("next step" in tip) == s.live, (name, tip)
    assert panel.findChild(QtWidgets.QCheckBox, "rho_on") is panel.on_checks["rho"]
    assert set(panel.on_checks) == {name for name, s in settings() if s.shown and s.optional}


def test_the_panel_offers_exactly_the_registered_values(qtbot, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abc " * 50)
    panel = ControlPanel(SMALL.replace(text_file=str(text)))
    qtbot.addWidget(panel)
    for name, table in registry.CHOICES.items():
        if name not in panel.w:
            continue
        box = panel.w[name]
        assert [box.itemData(i) for i in range(box.count())] == list(table), name
        assert [box.itemText(i) for i in range(box.count())] == [c.label for c in table.values()]
    assert {"task", "cell", "optimizer", "clip", "init"} <= set(panel.w)

    cell = panel.w["cell"]
    for name, spec in registry.CELLS.items():
        cell.setCurrentIndex(cell.findData(name))
        assert panel.config().cell == name
        assert panel.w["forget_bias"].isEnabled() == spec.has_forget_gate, name
        # A cell's own settings (the LRU's ring, IndRNN's |u|) show, label and all, only
        # for that cell.
        for field_name in ("lru_r_min", "lru_r_max", "lru_max_phase", "indrnn_u_max"):
            owner = "lru" if field_name.startswith("lru") else "indrnn"
            row = panel._row_widgets[field_name]
            label = panel._form_of[row].labelForField(row)
            assert row.isVisibleTo(panel) == (name == owner), (name, field_name)
            assert label.isVisibleTo(panel) == (name == owner), (name, field_name)
    task = panel.w["task"]
    for name, spec in registry.TASKS.items():
        task.setCurrentIndex(task.findData(name))
        assert panel.config().task == name
        assert panel.text_button.isVisibleTo(panel) == spec.needs_file, name
        assert panel.text_label.isVisibleTo(panel) == spec.needs_file, name


def test_views_take_turns_when_drawing_is_slow(window, qtbot, monkeypatch):
    run_until(qtbot, window, 3)
    window.scheduler.stop()
    drawn: list = []
    for key, view in window.views.items():
        original = view.set_data
        monkeypatch.setattr(view, "set_data",
                            lambda h, c, k=key, f=original: (drawn.append(k), f(h, c)))
    visible = [k for k, v in window.views.items() if v.isVisible()]
    assert "text" not in visible and len(visible) == 6

    window.scheduler.mark_stale()  # "something new arrived": every view is stale
    window.scheduler.views_per_tick = 1
    for tick in range(len(visible)):
        window.scheduler.last_tick = None  # a tick that was on time: no adaptation
        window.redraw()
        assert len(drawn) == tick + 1
    assert sorted(drawn) == sorted(visible)  # each once, in turn
    start = visible.index(drawn[0])
    assert drawn == (visible + visible)[start:start + len(visible)]  # round the grid
    window.redraw()
    assert len(drawn) == len(visible)  # nothing new, nothing drawn

    window.scheduler.mark_stale()
    window.scheduler.views_per_tick = len(window.views)
    window.scheduler.last_tick = None
    window.redraw()
    assert sorted(drawn[len(visible):]) == sorted(visible)  # cheap: all in one tick


def test_a_view_count_that_made_a_tick_late_is_not_retried_at_once(window, qtbot, monkeypatch):
    import gradviz.ui.redraw as window_module

    run_until(qtbot, window, 3)
    window.scheduler.stop()
    clock = [1000.0]
    monkeypatch.setattr(window_module.time, "perf_counter", lambda: clock[0])
    visible = sum(v.isVisible() for v in window.views.values())

    def tick(after_ms):
        window.scheduler.mark_stale()  # something new: every view is stale
        clock[0] += after_ms / 1000.0
        window.redraw()

    window.scheduler.views_per_tick = visible
    window.scheduler.last_tick = None
    tick(0)                                                     # all views drew
    tick(window_module.REDRAW_MS + window_module.LATE_HIGH_MS + 5)  # ... and that was late
    assert window.scheduler.views_per_tick == visible - 1
    for _ in range(20):                                         # on time from now on
        tick(window_module.REDRAW_MS)
    assert window.scheduler.views_per_tick == visible - 1                # not all at once again, yet
    for _ in range(int(window_module.RETRY_S * 1000 / window_module.REDRAW_MS) + 1):
        tick(window_module.REDRAW_MS)
    assert window.scheduler.views_per_tick == visible                    # tried again, later


def test_a_notice_from_the_training_process_shows_in_the_status_bar(window, qtbot):
    window.worker.notice.emit("no C compiler found; using PyTorch operations, which is slower")
    assert window.statusBar().currentMessage() == (
        "Note: no C compiler found; using PyTorch operations, which is slower")


def test_a_view_that_raises_is_reported_once_and_the_others_draw(window, qtbot, monkeypatch,
                                                                 capsys):
    run_until(qtbot, window, 3)
    window.scheduler.stop()
    calls: list = []

    def broken(history, latest):
        calls.append(len(history))
        raise ValueError("cannot draw this")

    monkeypatch.setattr(window.views["gates"], "set_data", broken)
    drawn: list = []
    for key, view in window.views.items():
        if key != "gates":
            original = view.set_data
            monkeypatch.setattr(view, "set_data",
                                lambda h, c, k=key, f=original: (drawn.append(k), f(h, c)))
    failures: list = []
    window.scheduler.view_failed.connect(lambda key, text: failures.append((key, text)))
    for _ in range(5):
        window.scheduler.mark_stale()
        window.draw_now()
    visible = [k for k, v in window.views.items() if v.isVisible() and k != "gates"]
    assert sorted(drawn) == sorted(visible * 5)           # the others drew every time
    assert len(calls) == 5                                # tried again with new data only
    window.scheduler.tick()
    assert len(calls) == 5
    assert len(failures) == 1 and failures[0][0] == "gates"
    assert "cannot draw this" in failures[0][1]
    assert capsys.readouterr().err.count("ValueError: cannot draw this") == 1
    assert "Gate activations could not draw" in window.statusBar().currentMessage()


def test_a_model_too_large_for_this_machine_is_refused_and_the_settings_put_back(
        window, monkeypatch):
    warnings: list = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning",
                        lambda parent, title, text: warnings.append((title, text)))
    pid, before = window.worker.pid, window.config
    huge = before.replace(seq_len=5000, hidden=1024, batch_size=4096, layers=4,
                          bidirectional=True)
    window.controls.set_config(huge)
    window.apply_config(huge)
    assert window.config == before and window.controls.config() == before
    assert window.worker.pid == pid and window.worker.run_id == 1   # no new model
    assert len(warnings) == 1 and "Model too large" in warnings[0][0]
    assert "of memory; this machine has" in warnings[0][1]


def test_an_experiment_from_the_menu_always_starts_a_fresh_model(window, qtbot):
    from gradviz.experiments import list_experiments, load_experiment

    menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "E&xperiments")
    entries = {a.text(): a for a in menu.actions() if not a.isSeparator() and a.text()}
    titles = [e.title for e in list_experiments()]
    assert [t for t in entries if t in titles] == titles
    exploding, clipped = load_experiment("exploding-relu"), load_experiment("clipped-relu")
    assert exploding.watch in entries[exploding.title].toolTip()
    entries[exploding.title].trigger()
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    run_until(qtbot, window, 3)
    first = window.worker.run_id
    entries[clipped.title].trigger()          # differs in live fields only: still fresh
    assert window.worker.run_id == first + 1 and len(window.history) == 0
    assert window.config == clipped.config and window.controls.config() == clipped.config
    run_until(qtbot, window, 3)
    assert window.history.step[0] == 0        # from the experiment's seed, step 0
