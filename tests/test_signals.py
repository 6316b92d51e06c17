"""Signals reach the app whatever it is showing: ``gradviz open`` of a damaged run exits on
SIGTERM and SIGINT while its warning is up, and a SIGTERM during a save closes the app
within 2 s, the save finished (docs/limits.md)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PyQt6 import QtWidgets

from gradviz import cli
from gradviz.config import RunConfig
from gradviz.engine.runs.runfile import load_run
from gradviz.ui.app import close_on_signals
from gradviz.ui.prefs import ENV_VAR, Prefs
from gradviz.ui.window import MainWindow

ROOT = Path(__file__).resolve().parents[1]
SMALL = RunConfig(task="adding", seq_len=12, cell="lstm", hidden=8, batch_size=8)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals, /proc")
@pytest.mark.parametrize("signum,wait_s", [(signal.SIGTERM, 1.0), (signal.SIGINT, 1.0),
                                           (signal.SIGTERM, 0.0)])
def test_gradviz_open_of_a_damaged_run_exits_on_a_signal(tmp_path, signum, wait_s):
    """Before: the warning ran before the event loop, and the app never exited. With no
    wait, the signal comes while the window is still being built (the training process
    starts first): it then found no window to close, and the app ran on."""
    folder = tmp_path / "run"
    assert cli.main(["run", "--quiet", "--task", "adding", "--cell", "gru", "--hidden", "3",
                     "--seq-len", "5", "--batch-size", "2", "--steps", "3",
                     "--out", str(folder)]) == 0
    data = (folder / "capture.npz").read_bytes()
    (folder / "capture.npz").write_bytes(data[:300])          # run.json fine, capture cut
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT),
               **{ENV_VAR: str(tmp_path / "settings.ini")})
    app = subprocess.Popen([sys.executable, "-m", "gradviz", "open", str(folder)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # The training process starts before the window is built; a second later the
        # window and its warning are up (on a quiet machine).
        deadline = time.monotonic() + 90
        while not any("spawn_main" in c for c in _children(app.pid)):
            assert app.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(wait_s)
        app.send_signal(signum)
        _out, errors = app.communicate(timeout=20)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    assert app.returncode == 0, errors
    assert b"Traceback" not in errors


def _children(pid: int) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid:
            found.append(command)
    return found


def test_sigterm_during_a_save_closes_the_app_within_2_s(qtbot, qapp, tmp_path, monkeypatch):
    """The save is finished (state.npz, capture.npz, run.json, under the journal) and the
    window closed within 2 s of the signal; the issue measured 1.5–1.9 s and the README
    said 1 s."""
    prefs = Prefs(str(tmp_path / "settings.ini"))
    window = MainWindow(SMALL, prefs)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=60000)
    for _ in range(3):
        window.act_step.trigger()
    qtbot.waitUntil(lambda: len(window.history) == 3, timeout=10000)
    folder = tmp_path / "run"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *args, **kwargs: (str(folder), ""))
    fsync, sent = os.fsync, []

    def signalled(fd):
        if not sent:                      # the first file is written, the others are not
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGTERM)
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", signalled)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        close_on_signals(qapp)
        window.act_save.trigger()
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
        took = time.monotonic() - sent[0]
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    config, history, _summary = load_run(folder)
    assert config == SMALL and len(history) == 3
    print(f"closed {took:.2f} s after the signal")
    assert took < 2.0, took
