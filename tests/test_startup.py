"""Start-up: the training process started before the window (gradviz.engine.training.launch)
warms up, takes the model the window gives it first, reports errors as usual and never
outlives the app; benchmarks/startup.py launches the real app."""
from __future__ import annotations

import importlib.util
import os
import queue
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gradviz.config import RunConfig
from gradviz.engine.training import messages as msg
from gradviz.engine.training.launch import prestart
from gradviz.engine.training.process import serve
from gradviz.ui.worker import TrainingWorker

from helpers import kind

ROOT = Path(__file__).resolve().parents[1]
SMALL = RunConfig(task="adding", seq_len=12, cell="lstm", hidden=8, batch_size=8)
OTHER = RunConfig(task="copy", seq_len=9, cell="gru", hidden=4, batch_size=4)


def served(config: dict | None, commands: list) -> list:
    """The reports of the command loop run here on ``commands`` (then Quit)."""
    cmd, res = queue.Queue(), queue.Queue()
    for command in commands + [msg.Quit()]:
        cmd.put(command)
    serve(cmd, res, 5, config)
    out = []
    while not res.empty():
        out.append(res.get())
    return out


def gone(pid: int) -> bool:
    """The process ``pid`` has ended (a zombie left to a parent that is gone counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except OSError:
        return True


def test_a_loop_without_a_model_says_nothing_until_its_first_reset_and_trains_as_usual():
    warmed = served(None, [msg.Reset(3, SMALL.to_dict()), msg.Step(), msg.Step()])
    direct = served(SMALL.to_dict(), [msg.Step(), msg.Step()])
    # Nothing from the warm-up's own model reaches the window.
    assert warmed[0] == msg.Ready(run_id=3, language=False)
    assert {m.run_id for m in warmed} == {3}
    assert [kind(m) for m in warmed] == [kind(m) for m in direct]
    # The warm-up changes none of the first model's numbers.
    for a, b in zip([m for m in warmed if kind(m) == "data"],
                    [m for m in direct if kind(m) == "data"]):
        assert a.step == b.step and a.loss == b.loss
        assert (a.captures[0].dh_norm == b.captures[0].dh_norm).all()


def test_the_window_s_modules_import_no_pytorch():
    """The window's process imports no PyTorch (it took ~1 s of its start-up, on the core
    the training process needs); the real app's first capture is checked below."""
    code = ("import sys; import gradviz.ui.app, gradviz.ui.window, gradviz.ui.worker; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_prestarted_process_takes_the_settings_changed_before_space(qtbot):
    """The app's process starts with no model; the window's first settings, then new ones
    (an experiment picked before Space), are what it trains."""
    started = prestart()
    worker = TrainingWorker(SMALL, process=started)
    received: list = []
    worker.captures_ready.connect(received.extend)
    try:
        assert worker.pid == started.process.pid          # taken over, not replaced
        worker.reset(OTHER)                               # before it has even warmed up
        worker.start()
        qtbot.waitUntil(lambda: len(received) >= 3, timeout=60000)
        assert worker.pid == started.process.pid and worker.state == "running"
        assert [c.step for c in received[:3]] == [0, 1, 2]
        newest = received[-1]
        assert newest.gates.shape[-1] == OTHER.hidden and newest.dh_norm.shape[-1] == 9
    finally:
        worker.close()
    assert not worker.is_alive() and gone(started.process.pid)


@pytest.mark.slow
def test_a_bad_first_model_reaches_the_window_as_one_plain_line(qtbot, tmp_path):
    worker = TrainingWorker(RunConfig(task="text", text_file=str(tmp_path / "missing.txt"),
                                      seq_len=10, hidden=8, batch_size=4), process=prestart())
    errors: list = []
    worker.error.connect(lambda message, details: errors.append((message, details)))
    try:
        qtbot.waitUntil(lambda: worker.state == "error", timeout=60000)
        (message, details), = errors
        assert "missing.txt" in message and "\n" not in message and details == ""
        worker.reset(SMALL)                               # and a reset recovers
        qtbot.waitUntil(lambda: worker.state == "paused", timeout=30000)
    finally:
        worker.close()


@pytest.mark.slow
def test_a_prestarted_process_no_window_took_is_stopped_or_replaced(qtbot):
    unused = prestart()
    unused.close()
    assert not unused.process.is_alive() and gone(unused.process.pid)

    dead = prestart()
    dead.process.kill()
    dead.process.join(5)
    worker = TrainingWorker(SMALL, process=dead)          # a new process instead
    try:
        assert worker.pid != dead.process.pid
        qtbot.waitUntil(lambda: worker.state == "paused", timeout=60000)
    finally:
        worker.close()
    assert gone(worker.pid)


@pytest.mark.slow
def test_a_prestarted_process_ends_when_the_app_is_killed():
    code = ("from gradviz.engine.training.launch import prestart\n"
            "p = prestart(); print(p.process.pid, flush=True)\nimport time; time.sleep(120)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    app = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                           env=env)
    try:
        pid = int(app.stdout.readline())
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait(10)
    deadline = time.monotonic() + 90      # it warms up first: slow on a loaded machine
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone(pid), "the training process outlived the app"


@pytest.mark.slow
def test_the_real_app_draws_its_first_capture_and_quits_leaving_no_process():
    """One launch of benchmarks/startup.py's: Space when shown, Ctrl+Q after the first
    capture is drawn; the window's process had not imported PyTorch by then, and its
    training process is gone once the app has exited."""
    spec = importlib.util.spec_from_file_location("startup", ROOT / "benchmarks" / "startup.py")
    startup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(startup)
    with tempfile.TemporaryDirectory() as folder:
        times = startup.launch("offscreen", Path(folder) / "settings.ini")
    assert times["status"] == 0 and times["space_started"]
    assert 0 < times["window"] < times["capture"]
    assert times["torch_in_window"] is False
    assert not times["leftover"] and gone(times["pid"])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_while_the_app_starts_closes_it_and_its_process(tmp_path):
    """The process starts before the window exists; a Ctrl+C then (the signal handler is
    installed before it starts) still closes the window once shown, and both end."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT),
               GRADVIZ_SETTINGS=str(tmp_path / "settings.ini"))
    app = subprocess.Popen([sys.executable, "-c", "import sys; from gradviz.ui.app import "
                            "run_app; sys.exit(run_app())"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, training = time.monotonic() + 60, None
        while training is None:
            assert app.poll() is None and time.monotonic() < deadline
            training = next((pid for pid in _children(app.pid)), None)
            time.sleep(0.01)
        app.send_signal(signal.SIGINT)
        _out, errors = app.communicate(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    errors = errors.decode(errors="replace")
    assert app.returncode == 0, errors
    assert "KeyboardInterrupt" not in errors and "Traceback" not in errors
    deadline = time.monotonic() + 10
    while not gone(training) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(training)


def _children(pid: int) -> list[int]:
    """The training processes (multiprocessing's spawn_main) of ``pid`` still running."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in command \
                and b"resource_tracker" not in command:
            found.append(int(entry))
    return found
