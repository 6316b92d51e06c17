"""Runs recorded from Python are recorded truthfully: the run file says the run came from
Python (the model, its sizes, the optimiser, the user's clipping as measured) and names no
gradviz task; the app shows it as that and does not train an invented model on Space; the
command line refuses to train or continue it in one line; older files still open."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import gradviz
from gradviz.config import LIMITS, RunConfig
from gradviz.engine.runs.recorded import describe
from gradviz.engine.runs.runfile import (RunFileError, check_run, load_run_config, open_run,
                                         save_run)

D64 = torch.float64


def watched_run(folder, *, layers=2, clip=0.5, steps=6):
    """A user's classifier (embedding, LSTM, head) trained by its own loop with clipping,
    watched every 2 steps and saved to ``folder``; returns the watch."""
    torch.manual_seed(3)
    model = nn.ModuleDict({"emb": nn.Linear(3, 4, dtype=D64),
                           "lstm": nn.LSTM(4, 6, num_layers=layers, dtype=D64),
                           "head": nn.Linear(6, 1, dtype=D64)})
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(4)
    with gradviz.watch(model["lstm"], model=model, every=2, optimizer=opt, path=folder) as w:
        for _ in range(steps):
            x = torch.randn(7, 3, 3, generator=g, dtype=D64)
            opt.zero_grad()
            w.backward(model["emb"](x), lambda out: model["head"](out[-1]).pow(2).sum())
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
    return w


def test_the_run_file_says_the_run_came_from_python_and_names_no_task(tmp_path):
    w = watched_run(tmp_path / "run")
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert doc["schema_version"] == 3 and doc["config"] is None
    assert "task" not in json.dumps(doc["recorded"]) and "task" not in doc["summary"]
    rec = doc["recorded"]
    assert rec["source"] == "python" and rec["api"] == "gradviz.watch"
    assert rec["model"] == "ModuleDict" and "(lstm): LSTM(4, 6, num_layers=2)" in rec["description"]
    assert rec["sizes"]["module"] == "LSTM(4, 6, num_layers=2)"
    assert (rec["sizes"]["input_size"], rec["sizes"]["hidden_size"], rec["sizes"]["num_layers"],
            rec["sizes"]["seq_len_max"], rec["sizes"]["batch_size"]) == (4, 6, 2, 7, 3)
    assert rec["optimizer"] == "SGD" and rec["lr"] == 0.05 and rec["dtype"] == "float64"
    assert rec["parameters"] == sum(p.numel() for p in w.model.parameters())
    # The user's clipping, as measured after it acted: every captured step was clipped.
    h = w.history
    assert h.clipped.all() and np.all(h.grad_norm > 0.5)
    np.testing.assert_allclose(h.grad_norm_clipped, 0.5, rtol=1e-5)  # clip_grad_norm_ adds 1e-6
    assert rec["clipping"] == {"clipped_steps": 3, "captured_steps": 3,
                               "read": "optimizer step pre-hook",
                               "largest_after_clipping": pytest.approx(0.5, rel=1e-5)}
    assert describe(rec).startswith("Recorded from Python (gradviz.watch): LSTM(4, 6, "
                                    "num_layers=2)")
    assert "SGD lr 0.05, clipped by the user at 3 of 3 captured steps" in describe(rec)


def test_a_recorded_run_round_trips(tmp_path):
    watched_run(tmp_path / "a")
    run = gradviz.load_run(tmp_path / "a")
    assert run.config is None and run.from_python and not run.can_continue
    gradviz.save_run(run, tmp_path / "b")
    again = gradviz.load_run(tmp_path / "b")
    assert again.recorded == run.recorded and again.summary == run.summary
    np.testing.assert_array_equal(again.history.dh_norm, run.history.dh_norm)
    np.testing.assert_array_equal(again.history.grad_norm_clipped, run.history.grad_norm_clipped)
    assert again.history.param_names == run.history.param_names
    a = json.loads((tmp_path / "a" / "run.json").read_text())
    b = json.loads((tmp_path / "b" / "run.json").read_text())
    assert a["recorded"] == b["recorded"] and a["config"] is b["config"] is None


def test_the_unclipped_run_says_not_clipped_and_without_an_optimiser_says_nothing_read(tmp_path):
    w = watched_run(tmp_path / "run", clip=None)
    assert w.recorded()["clipping"]["clipped_steps"] == 0
    assert "not clipped" in describe(w.recorded())
    lstm = nn.GRU(2, 3)
    with gradviz.watch(lstm, path=tmp_path / "bare") as bare:
        bare.backward(torch.randn(4, 2, 2), lambda out: out.sum())
    rec = gradviz.load_run(tmp_path / "bare").recorded
    assert rec["clipping"]["read"] is None and "optimizer" not in rec
    assert "clipped" not in describe(rec)


def test_a_five_layer_model_beyond_the_apps_limits_is_saved_whole(tmp_path):
    assert LIMITS["layers"][1] < 5       # the app trains fewer layers than this model has
    w = watched_run(tmp_path / "deep", layers=5, steps=2)
    run = gradviz.load_run(tmp_path / "deep")
    assert run.history.dh_norm.shape[1] == 5 and run.recorded["sizes"]["num_layers"] == 5
    assert "lstm.weight_hh_l4" in run.history.param_names
    assert run.history.param_names[0] == "emb.weight" and run.history.param_names[-1] == "head.bias"
    assert len(run.history.param_names) == len(list(w.model.parameters()))


def test_old_run_files_still_open(tmp_path):
    # A file a watch wrote before schema 3: the nearest app settings as its config (task
    # "adding"), the watch named in its summary. It opens as recorded from Python.
    watched_run(tmp_path / "old")
    path = tmp_path / "old" / "run.json"
    doc = json.loads(path.read_text())
    old_summary = {"source": "gradviz.watch", "model": "ModuleDict", "parameters": 123,
                   "optimizer": "SGD", "lr": 0.05, "clipped_steps": 3, "steps_done": 6}
    doc.update(schema_version=2, config=RunConfig(cell="lstm", hidden=6).to_dict(),
               summary=old_summary)
    del doc["recorded"]
    path.write_text(json.dumps(doc))
    run = open_run(tmp_path / "old")
    assert run.config is None and run.recorded["source"] == "python"
    assert run.recorded["model"] == "ModuleDict" and run.recorded["clipping"]["clipped_steps"] == 3
    # An app-trained run of schema 2 opens as before, with its settings.
    config = RunConfig(cell="gru", seq_len=5, hidden=3, steps=2)
    session = gradviz.Session(config)
    session.run()
    save_run(tmp_path / "app", config, session.history, session.summary())
    app = json.loads((tmp_path / "app" / "run.json").read_text())
    app["schema_version"] = 2
    (tmp_path / "app" / "run.json").write_text(json.dumps(app))
    assert open_run(tmp_path / "app").config == config and open_run(tmp_path / "app").recorded is None
    assert load_run_config(tmp_path / "app") == config


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(config=RunConfig().to_dict()), "has \"config\": null"),
    (lambda d: d.pop("recorded"), "\"config\" is null but there is no \"recorded\""),
    (lambda d: d["recorded"].update(source="app"), "not an object with \"source\""),
    (lambda d: d.update(schema_version=2), "\"config\" is missing or not a JSON object"),
    (lambda d: d.update(schema_version=2, config=RunConfig().to_dict()),
     "\"recorded\" is a key of schema 3"),
])
def test_a_damaged_recorded_run_is_refused_in_one_line(tmp_path, edit, message):
    watched_run(tmp_path / "run", steps=2)
    path = tmp_path / "run" / "run.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(RunFileError, match=message):
        open_run(tmp_path / "run")


def test_nothing_trains_or_continues_a_recorded_run_as_a_gradviz_model(tmp_path, capsys):
    from gradviz.cli import main

    watched_run(tmp_path / "run", steps=2)
    folder = tmp_path / "run"
    assert check_run(folder)["recorded"]["source"] == "python"     # gradviz open checks this
    with pytest.raises(RunFileError, match="recorded from Python.*no gradviz settings"):
        load_run_config(folder)
    with pytest.raises(RunFileError, match="recorded from Python"):
        gradviz.Session.resume(folder)
    for args in (["run", "--config", str(folder), "--steps", "1"],
                 ["run", "--resume", str(folder), "--steps", "1"],
                 ["sweep", "--config", str(folder), "--out", str(tmp_path / "sweep")]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert "recorded from Python" in err and "Traceback" not in err, err
        assert len(err.splitlines()) == 1, err


def test_tensorboard_export_of_a_recorded_run(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gradviz.tensorboard import export_history

    watched_run(tmp_path / "run", steps=4)
    run = gradviz.load_run(tmp_path / "run")
    export_history(run.history, tmp_path / "tb")
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert "loss" in tags and "baseline" not in tags       # no task: no baseline invented


def _window(tmp_path, qtbot):
    from gradviz.ui.inprocess import InProcessWorker
    from gradviz.ui.model import AppModel
    from gradviz.ui.prefs import Prefs
    from gradviz.ui.window import MainWindow

    config = RunConfig(cell="gru", seq_len=6, hidden=4, batch_size=4, steps=3)
    window = MainWindow(model=AppModel(config, Prefs(tmp_path / "settings.ini"),
                                       backend=InProcessWorker))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=30000)
    return window


def test_the_window_shows_a_recorded_run_as_from_python_and_space_trains_nothing(tmp_path, qtbot):
    from PyQt6 import QtCore

    from gradviz.ui.recordedrun import NOT_TRAINABLE

    watched_run(tmp_path / "run")
    window = _window(tmp_path, qtbot)
    messages = []
    window.model.message.connect(lambda text, _ms: messages.append(text))
    failures = []
    window.scheduler.view_failed.connect(lambda key, text: failures.append((key, text)))
    before = window.config
    window.open_run(tmp_path / "run")
    window.draw_now()
    assert not failures, failures
    live = window.state.live
    assert live.recorded is not None and len(window.history) == 3
    # Named as what it is: from Python, the user's module; no gradviz task anywhere.
    title = window.windowTitle()
    assert "Recorded from Python (gradviz.watch): LSTM(4, 6, num_layers=2)" in title
    assert "adding" not in title.lower() and window.caption() in title
    assert "Recorded from Python" in window.banner.title.text() and window.banner.isVisible()
    column = window.control_column
    assert column.showing_recorded and not window.controls.isVisible()
    assert column.note.isVisible() and "no gradviz task" in column.note.text()
    # The app's settings are not the run's: they stay as they were.
    assert window.config == before
    # The views draw what was recorded: gradient flow over its 3 captured steps, gradient
    # through time by layer, every parameter's norm by its qualified name.
    flow = window.views["gradflow"]
    flow.set_data(window.history, window.history.latest)
    assert flow.image_array().shape == (3, 7) and np.isfinite(flow.image_array()).all()
    gradtime = window.views["gradtime"]
    gradtime.set_data(window.history, window.history.latest)
    assert [gradtime.selector.itemText(i) for i in range(gradtime.selector.count())] == \
        ["layer 1", "layer 2"]
    assert window.history.param_names[0] == "emb.weight"
    # The user's own loss: no task's baseline in the key, no "task units" on the axis.
    loss = window.views["loss"]
    loss.set_data(window.history, window.history.latest)
    assert not any("baseline" in e[2] for e in loss.colour_key.entries)
    assert loss.plot.getAxis("left").labelText == "loss (log scale)"
    # Space (and S) train nothing: no invented task starts; a one-line notice says why.
    window.activateWindow()
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)
    window.act_run.trigger()
    window.act_step.trigger()
    qtbot.wait(300)
    assert not window.state.running and window.worker.state == "paused"
    assert len(window.history) == 3 and window.state.live is live
    assert messages and all(m == NOT_TRAINABLE for m in messages)
    assert len(NOT_TRAINABLE.splitlines()) == 1
    # Saving it from the window keeps what it is.
    window.save_run_to(tmp_path / "again")
    again = gradviz.load_run(tmp_path / "again")
    assert again.config is None and again.recorded == gradviz.load_run(tmp_path / "run").recorded
    # The user asks for a new gradviz model: the control panel is back with its settings,
    # and the recorded run is set aside, not compared on a loss of another task.
    column.button.click()
    assert window.state.live.recorded is None and not column.showing_recorded
    assert window.controls.isVisibleTo(window) and window.config == before
    assert live in window.state.set_aside
    assert "Recorded from Python" not in window.windowTitle()
    window.act_step.trigger()
    qtbot.waitUntil(lambda: len(window.history) == 1, timeout=30000)
    window.close()


def test_a_recorded_run_opened_as_a_comparison_is_labelled_as_one(tmp_path, qtbot):
    from gradviz.ui.runsmenu import open_comparison

    watched_run(tmp_path / "run", steps=2)
    window = _window(tmp_path, qtbot)
    run = open_comparison(window.state, tmp_path / "run")
    assert run.recorded is not None and not run.can_continue
    assert run.task_label == "recorded from Python"
    assert "recorded from Python" in window.state.label(run)
    assert not window.state.compatible(run)        # another loss: not on the live run's axes
    window.close()
