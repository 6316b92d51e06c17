"""The app's model (gradviz.ui.model.AppModel) without a window, the window as a view of it,
and the in-process training backend (gradviz.ui.inprocess.InProcessWorker)."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from PyQt6 import QtWidgets

from gradviz.engine.runs.runstate import RunState
from gradviz.ui.inprocess import InProcessWorker
from gradviz.ui.model import AppModel
from gradviz.ui.prefs import Prefs
from gradviz.ui.window import MainWindow

from test_window import SMALL

TIMEOUT_MS = 60000   # the first model of a test process imports torch.optim (seconds)


@pytest.fixture
def model(qtbot, tmp_path):
    model = AppModel(SMALL, Prefs(tmp_path / "settings.ini"), backend=InProcessWorker)
    qtbot.waitUntil(lambda: model.worker.state == "paused", timeout=TIMEOUT_MS)
    yield model
    model.close()


def test_the_model_trains_steps_pauses_and_resets_with_no_window(model, qtbot):
    with qtbot.waitSignal(model.worker.captures_ready, timeout=TIMEOUT_MS) as got:
        model.step()
    assert [c.step for c in got.args[0]] == [0]
    assert len(model.state.live.history) == 1 and not model.state.running

    model.toggle_running()
    assert model.state.running
    qtbot.waitUntil(lambda: len(model.state.live.history) >= 5, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(model.worker.state_changed, timeout=TIMEOUT_MS,
                          check_params_cb=lambda s: s == "paused"):
        model.toggle_running()
    assert not model.state.running
    steps = model.state.live.history.step
    np.testing.assert_array_equal(steps, np.arange(len(steps)))

    first = model.worker.run_id
    with qtbot.waitSignal(model.state.runs_changed):
        model.reset()
    assert model.worker.run_id == first + 1 and len(model.state.live.history) == 0
    assert not model.state.comparisons   # a Reset without a change keeps no copy


def test_a_live_change_goes_to_the_running_model_and_a_new_model_restarts(model, qtbot):
    model.start()
    qtbot.waitUntil(lambda: len(model.state.live.history) >= 2, timeout=TIMEOUT_MS)
    run_id = model.worker.run_id
    assert model.apply_config(model.config.replace(clip="norm", clip_threshold=1e-3))
    assert model.worker.run_id == run_id                 # the same model goes on
    qtbot.waitUntil(lambda: model.state.live.history.latest is not None
                    and model.state.live.history.latest.clip == "norm", timeout=TIMEOUT_MS)
    assert model.apply_config(model.config.replace(hidden=6))
    assert model.worker.run_id == run_id + 1 and model.state.running   # restarted, running
    qtbot.waitUntil(lambda: len(model.state.live.history) >= 1, timeout=TIMEOUT_MS)
    assert model.state.live.history.latest.gates.shape[-1] == 6
    model.pause()


def test_a_model_too_large_is_refused_with_a_warning_and_nothing_changes(model, qtbot):
    before, run_id = model.config, model.worker.run_id
    huge = before.replace(seq_len=5000, hidden=1024, batch_size=4096, layers=4,
                          bidirectional=True)
    with qtbot.waitSignal(model.warning) as warned:
        assert not model.apply_config(huge)
    assert warned.args[0] == "Model too large"
    assert model.config == before and model.worker.run_id == run_id


def test_the_window_is_a_view_of_the_model_and_the_panel_shows_its_one_config(model, qtbot,
                                                                             monkeypatch):
    warnings: list = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning",
                        lambda parent, title, text: warnings.append(title))
    window = MainWindow(model=model)
    qtbot.addWidget(window)
    assert window.model is model and window.state is model.state
    assert window.worker is model.worker and window.config is model.config
    # A change made in the model (a script, an experiment) shows in the controls ...
    changed = model.config.replace(lr=0.02, clip="value", clip_threshold=0.5)
    model.apply_config(changed)
    assert window.controls.config() == changed == window.config
    # ... and one made in the controls reaches the model.
    window.controls.w["hidden"].setValue(5)
    assert model.config.hidden == 5 and window.controls.config() == model.config
    # A refused one puts the controls back to the model's.
    huge = model.config.replace(seq_len=5000, hidden=1024, batch_size=4096, layers=4)
    window.controls.set_config(huge)
    window.apply_config(huge)
    assert window.controls.config() == model.config != huge
    assert len(warnings) == 1 and "Model too large" in warnings[0]


def test_the_in_process_backend_answers_a_checkpoint_and_its_thread_ends_on_close(qtbot,
                                                                                  tmp_path):
    model = AppModel(SMALL, Prefs(tmp_path / "s.ini"), backend=InProcessWorker)
    qtbot.waitUntil(lambda: model.worker.state == "paused", timeout=TIMEOUT_MS)
    with qtbot.waitSignal(model.worker.captures_ready, timeout=TIMEOUT_MS):
        model.step()
    state, summary = model.checkpoint()
    assert isinstance(state, RunState) and summary["steps_done"] == 1
    assert model.worker.pid is None and model.worker.is_alive()
    assert any(t.name == "gradviz-training" for t in threading.enumerate())
    model.close()
    assert not model.worker.is_alive() and model.worker.state == "stopped"
    assert model.worker.exitcode == 0


def test_an_error_in_the_in_process_backend_is_reported_like_the_processes(model, qtbot,
                                                                          tmp_path):
    missing = tmp_path / "gone.txt"
    with qtbot.waitSignal(model.worker.error, timeout=TIMEOUT_MS) as failed:
        model.apply_config(model.config.replace(task="text", text_file=str(missing)))
    assert "gone.txt" in failed.args[0]
    qtbot.waitUntil(lambda: model.worker.state == "error", timeout=TIMEOUT_MS)
    messages: list = []
    model.message.connect(lambda text, ms: messages.append(text))
    model.start()
    assert not model.state.running and "Reset" in messages[-1]
