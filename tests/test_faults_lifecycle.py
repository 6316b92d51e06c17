"""Faults and long runs: a storm of commands, and closing the window at any moment.

Real windows with their real training processes; settings go to a temporary file.
"""
from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.config import RunConfig
from gradviz.engine.runs.history import History
from gradviz.engine.runs.runfile import load_run, save_run
from gradviz.ui.app import close_on_signals
from gradviz.ui.prefs import ENV_VAR, Prefs
from gradviz.ui.views import make_views
from gradviz.ui.window import MainWindow

SMALL = RunConfig(task="adding", seq_len=12, cell="lstm", hidden=8, batch_size=8)
START_TIMEOUT_MS = 30000
GATES = {"lstm": ["i", "f", "g", "o"], "gru": ["r", "z", "n"], "rnn-tanh": ["h"]}


@pytest.fixture
def prefs(tmp_path):
    return Prefs(tmp_path / "settings.ini")


@pytest.fixture
def baseline():
    """Python threads and child processes before the test, to compare with after it."""
    return threading.active_count(), {p.pid for p in multiprocessing.active_children()}


def open_window(qtbot, window: MainWindow, wait: bool = True) -> MainWindow:
    # The plain grid of six views (no focus layout): these tests read every view.
    window.dashboard.set_focus(())
    window.show()
    qtbot.waitExposed(window)
    if wait:
        qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    return window


def settle(qtbot, window) -> None:
    """Wait until nothing arrives for a while (the training is paused), then draw."""
    previous, deadline = -1, time.monotonic() + 20
    while previous != len(window.history):
        assert time.monotonic() < deadline, "captures kept coming"
        previous = len(window.history)
        qtbot.wait(150)
    window.draw_now()


def close_timed(window: MainWindow) -> float:
    started = time.monotonic()
    window.close()
    return time.monotonic() - started


def assert_nothing_left(qtbot, window, pid: int, baseline, asked: bool = False) -> None:
    """The training process is gone, and no thread or child process outlived the window.
    ``asked``: the process was free to read the request to quit, and must have ended by
    itself, not been terminated."""
    threads, children = baseline
    assert not window.worker.is_alive()
    if asked:
        assert window.worker.exitcode == 0
    assert window.worker.state == "stopped"
    assert not os.path.exists(f"/proc/{pid}")  # ended and reaped
    # A queue's feeder thread ends once it has written what it holds: give it a moment.
    qtbot.waitUntil(lambda: threading.active_count() == threads, timeout=3000)
    assert {p.pid for p in multiprocessing.active_children()} <= children


def temporaries(folder) -> list[str]:
    """Files an interrupted atomic write would leave: hidden, .tmp, or tmp*."""
    found = []
    for root, _dirs, files in os.walk(folder):
        found += [os.path.join(root, f) for f in files
                  if f.startswith((".", "tmp")) or f.endswith(".tmp")]
    return found


@pytest.mark.slow
def test_a_storm_of_commands_leaves_one_consistent_run_and_nothing_behind(qtbot, prefs,
                                                                         baseline):
    window = open_window(qtbot, MainWindow(SMALL, prefs))
    # Whatever arrives during the storm is from the newest model: the cell the window
    # shows, its steps counted from 0 with none lost or repeated.
    wrong: list = []
    checked = [0]

    def check(captures: list) -> None:
        checked[0] += len(captures)
        steps = window.history.step
        if not np.array_equal(steps, np.arange(len(steps))):
            wrong.append(f"history steps {steps.tolist()}")
        gates = GATES[window.config.cell]
        wrong.extend(f"{c.gate_names} under {window.config.cell}" for c in captures
                     if list(c.gate_names) != gates)
    window.worker.captures_ready.connect(check)  # after the window's own slot

    rng = random.Random(4)
    cell_box = window.controls.w["cell"]
    cell = SMALL.cell
    resets = 0
    kinds = ("space", "step", "reset", "cell")
    for _ in range(200):
        kind = rng.choice(kinds)
        if kind == "space":
            window.act_run.trigger()
        elif kind == "step":
            window.act_step.trigger()
        elif kind == "reset":
            window.act_reset.trigger()
            resets += 1
        else:
            cell = rng.choice([c for c in GATES if c != cell])
            cell_box.setCurrentIndex(cell_box.findData(cell))
            resets += 1
        pause_ms = rng.choice((0, 0, 1, 3, 10))
        if pause_ms:
            qtbot.wait(pause_ms)
        else:
            QtWidgets.QApplication.processEvents()
    assert checked[0] > 0, "no capture arrived during the storm: nothing was checked"

    # The child takes commands in order, so once the model of one more reset reports
    # in, every command of the storm has been taken.
    window.act_reset.trigger()
    resets += 1
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    qtbot.wait(200)  # anything else in the pipe would come now
    assert wrong == []
    assert window.worker.is_alive() and window.error_box is None
    assert window.worker.state == "paused"
    assert window.worker.run_id == 1 + resets
    assert window.config == window.controls.config() == SMALL.replace(cell=cell)
    assert window.windowTitle().startswith(f"gradviz — {cell},")
    assert window.act_run.text() == "Start" and window.state_label.text() == "paused"
    assert len(window.history) == 0 and window.step_label.text() == "step 0"

    # One more step: a capture of the final cell, drawn.
    captures: list = []
    window.worker.captures_ready.connect(captures.extend)
    window.act_step.trigger()
    qtbot.waitUntil(lambda: len(window.history) == 1, timeout=10000)
    settle(qtbot, window)
    assert [c.step for c in captures] == [0]
    assert list(captures[0].gate_names) == GATES[cell]
    assert (captures[0].dc_norm is not None) == (cell == "lstm")
    assert window.history.latest is captures[0]
    assert window.views["gates"].gate_names == GATES[cell]
    assert window.views["gradflow"].image_array().shape == (1, SMALL.seq_len)
    assert window.step_label.text() == "step 1"

    # And close it while it trains, right after a step command.
    window.act_run.trigger()
    qtbot.waitUntil(lambda: len(window.history) >= 4, timeout=10000)
    window.act_step.trigger()
    pid = window.worker.pid
    assert close_timed(window) < 1.0
    assert_nothing_left(qtbot, window, pid, baseline, asked=True)


@pytest.mark.slow
def test_closing_while_a_long_step_is_under_way_is_quick(qtbot, prefs, baseline):
    # One step of this model takes seconds on a 2-core machine: the process cannot read
    # the request to quit until it ends, so close() must not wait for it. Commands it
    # will never read pile up behind the step, more than a pipe holds.
    big = RunConfig(task="adding", seq_len=2000, cell="lstm", hidden=256, batch_size=32)
    window = open_window(qtbot, MainWindow(big, prefs))
    window.act_step.trigger()
    qtbot.wait(300)  # the step has begun
    for _ in range(250):
        window.act_reset.trigger()
    pid = window.worker.pid
    assert close_timed(window) < 1.0
    assert_nothing_left(qtbot, window, pid, baseline)


def test_closing_before_the_training_process_is_up_is_quick(qtbot, prefs, baseline):
    window = open_window(qtbot, MainWindow(SMALL, prefs), wait=False)
    assert window.worker.state == "starting"
    pid = window.worker.pid
    assert close_timed(window) < 1.0
    assert_nothing_left(qtbot, window, pid, baseline)


class TimedWindow(MainWindow):
    """The main window, noting when it closed and how long its close took."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.closes: list[tuple[float, float]] = []   # (when it began, how long it took)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        started = time.monotonic()
        super().closeEvent(event)
        self.closes.append((started, time.monotonic() - started))


@pytest.mark.slow
def test_closing_during_and_just_after_exports_and_saves_leaves_whole_files(
        qtbot, prefs, tmp_path, monkeypatch, baseline):
    window = open_window(qtbot, TimedWindow(SMALL, prefs))
    window.act_run.trigger()
    qtbot.waitUntil(lambda: len(window.history) >= 4, timeout=20000)
    window.act_run.trigger()
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=10000)
    settle(qtbot, window)
    K = len(window.history)
    out = tmp_path / "out"
    out.mkdir()
    targets: list[str] = []
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *args, **kwargs: (targets.pop(0), ""))
    warnings: list = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning",
                        lambda parent, title, text, *a: warnings.append(text))
    export = next(a.menu() for a in window.menuBar().actions() if a.text() == "&File")
    export = next(a.menu() for a in export.actions() if a.text() == "Export")

    def export_view(key: str, suffix: str, path) -> None:
        targets.append(str(path))
        title = window.views[key].title
        formats = next(a.menu() for a in export.actions() if a.text() == title)
        next(a for a in formats.actions() if a.text() == f"{suffix.upper()}…").trigger()

    targets.append(str(out / "run"))
    window.act_save.trigger()                       # a run that is there before the close
    pid = window.worker.pid
    # The user closes the window while a view is being exported: the close is queued
    # behind the export, or delivered inside it if the export lets posted events through.
    QtCore.QMetaObject.invokeMethod(window, "close", QtCore.Qt.ConnectionType.QueuedConnection)
    export_view("gradflow", "png", out / "gradflow.png")
    qtbot.waitUntil(lambda: bool(window.closes), timeout=5000)
    # ... and a save and more exports come just after the close.
    targets.append(str(out / "run"))
    window.act_save.trigger()
    export_view("loss", "svg", out / "loss.svg")
    export_view("gradnorm", "csv", out / "gradnorm.csv")
    targets.append(str(out / "dashboard.png"))
    window.act_dashboard.trigger()

    assert not warnings
    (_began, took), = window.closes
    assert took < 1.0
    assert not window.isVisible()
    assert_nothing_left(qtbot, window, pid, baseline, asked=True)
    assert temporaries(out) == []
    for name in ("gradflow.png", "dashboard.png"):
        image = QtGui.QImage(str(out / name))
        assert not image.isNull() and image.width() > 100 and image.height() > 100, name
    assert (out / "loss.svg").read_text(encoding="utf-8").rstrip().endswith("</svg>")
    header, rows = window.views["gradnorm"].csv_table()
    lines = (out / "gradnorm.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + len(rows) and len(rows) > 0
    config, history, _summary = load_run(out / "run")
    assert config == SMALL
    np.testing.assert_array_equal(history.step, np.arange(K))


def test_a_long_run_piles_up_nothing_in_the_views(qtbot, make_capture):
    """Besides the History (bounded: test_record), what a long run could pile up is
    graphics items and Qt objects made per redraw. Fed far past the History's capacity,
    so that it merges rows again and again, with events, clipping and a change of cell
    in between, every view holds what it held early on. (The soak benchmark measures the
    memory of the real thing; a test of resident memory here would drown in noise.)"""
    views = make_views()
    for view in views.values():
        qtbot.addWidget(view)
    history = History(capacity=16)

    def held() -> dict:
        return {key: (len(view.figure_widget().scene().items())
                      if hasattr(view.figure_widget(), "scene") else 0,
                      len(view.findChildren(QtCore.QObject))) for key, view in views.items()}

    counts = {}
    for step in range(120):
        cell = "gru" if 40 <= step < 80 else "lstm"
        history.append(make_capture(step, cell=cell, T=12, light=step % 3 != 0,
                                    nonfinite=step % 17 == 5, clip_threshold=0.5,
                                    clip="norm" if step % 2 else "none"))
        for view in views.values():
            view.set_data(history, history.latest)
        if step in (39, 119):
            counts[step] = held()
    assert len(history) <= 16 and history.count.sum() == 40  # merged, and reset by the cell
    assert counts[119] == counts[39]


def test_a_save_interrupted_mid_write_leaves_the_old_run_and_no_temporary(
        tmp_path, monkeypatch, make_history):
    """What a Ctrl+C in the terminal (KeyboardInterrupt) does in the middle of a save."""
    folder = tmp_path / "run"
    save_run(folder, SMALL, make_history(5, T=SMALL.seq_len))
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    fsyncs: list = []

    def interrupted(fd):
        fsyncs.append(fd)
        if len(fsyncs) == 2:  # the capture file is written; the run.json is half done
            raise KeyboardInterrupt
        return os_fsync(fd)

    os_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_run(folder, SMALL.replace(hidden=9), make_history(9, T=SMALL.seq_len))
    assert len(fsyncs) == 2
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before
    config, history, _summary = load_run(folder)
    assert config == SMALL and len(history) == 5


@pytest.mark.slow
def test_a_signal_during_a_save_closes_the_window_once_the_save_is_done(
        qtbot, qapp, prefs, tmp_path, monkeypatch, baseline):
    window = open_window(qtbot, MainWindow(SMALL, prefs))
    for _ in range(3):
        window.act_step.trigger()
    qtbot.waitUntil(lambda: len(window.history) == 3, timeout=10000)
    folder = tmp_path / "run"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *args, **kwargs: (str(folder), ""))
    fsync = os.fsync

    def signalled(fd):
        fsync_calls.append(fd)
        if len(fsync_calls) == 1:  # the state file is written, run.json is not
            os.kill(os.getpid(), signal.SIGTERM)
        return fsync(fd)

    fsync_calls: list = []
    monkeypatch.setattr(os, "fsync", signalled)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        close_on_signals(qapp)
        # Otherwise the signal below would end the test run itself.
        assert callable(signal.getsignal(signal.SIGTERM))
        pid = window.worker.pid
        window.act_save.trigger()
        # The save went on to the end (state.npz, capture.npz, run.json, each flushed, and
        # the journal that renames them, gone again); the close waits for the event loop.
        assert len(fsync_calls) >= 3 and window.isVisible()
        assert sorted(os.listdir(folder)) == ["capture.npz", "run.json", "state.npz"]
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=3000)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert_nothing_left(qtbot, window, pid, baseline, asked=True)
    assert temporaries(tmp_path) == []
    config, history, _summary = load_run(folder)
    assert config == SMALL and len(history) == 3
    assert Prefs(prefs.settings.fileName()).load_config() == SMALL  # as a close button would


def _children(pid: int) -> dict[int, str]:
    """Child processes of ``pid`` that have not ended: {pid: command line}."""
    found = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry)] = command
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_closes_the_app_as_its_close_button_would(tmp_path):
    settings = tmp_path / "settings.ini"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", **{ENV_VAR: str(settings)})
    # "up" once the event loop runs, the window shown: the training process starts before
    # the window is built (gradviz.engine.training.launch), so its presence says less.
    app = subprocess.Popen(
        [sys.executable, "-c", "import sys; from PyQt6 import QtCore, QtWidgets; "
         "app = QtWidgets.QApplication(sys.argv); "
         "QtCore.QTimer.singleShot(0, lambda: print('up', flush=True)); "
         "from gradviz.ui.app import run_app; sys.exit(run_app())"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        assert app.stdout.readline() == b"up\n"
        training: list[int] = []
        while not training:
            assert app.poll() is None and time.monotonic() < deadline
            training = [p for p, command in _children(app.pid).items()
                        if "spawn_main" in command and "resource_tracker" not in command]
            time.sleep(0.05)
        app.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _out, errors = app.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    errors = errors.decode(errors="replace")
    assert app.returncode == 0, errors
    assert "KeyboardInterrupt" not in errors
    assert took < 2.0  # the close itself, < 1 s, and the interpreter's exit
    assert not os.path.exists(f"/proc/{training[0]}")
    assert Prefs(settings).load_config() == RunConfig()  # the window's closeEvent ran
