"""A run folder is checked whole before a step is trained on it (gradviz/engine/runs/runcheck.py):
a damaged or hostile state.npz, capture.npz or run.json is one line naming the file and
the field, exit status 2, and nothing written; never a traceback, never a failure after
training, when the trained steps would be lost."""
import contextlib
import io
import json
import shutil

import numpy as np
import pytest

from gradviz import cli
from gradviz.config import RunConfig
from gradviz.engine.runs.runfile import RunFileError, open_run
from gradviz.engine.training.session import Session

TINY = ["--hidden", "3", "--seq-len", "6", "--batch-size", "2", "--steps", "4"]
CONFIGS = {
    "lstm adam": ["--task", "adding", "--cell", "lstm", "--optimizer", "adam"],
    "stateful series rnn rmsprop": ["--task", "series", "--cell", "rnn-tanh", "--optimizer",
                                    "rmsprop", "--stateful"],
    "stateful reber gru sgd momentum": ["--task", "reber", "--cell", "gru", "--optimizer", "sgd",
                                        "--momentum", "0.9", "--stateful"],
}


def saved(folder, config="lstm adam"):
    assert cli.main(["run", "--quiet", *CONFIGS[config], *TINY, "--out", str(folder)]) == 0
    return folder


def resume(folder, out):
    """(exit status, stderr) of ``gradviz run --resume folder --steps 2 --out out``; any
    exception escaping is a failure of the test."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli.main(["run", "--quiet", "--resume", str(folder), "--steps", "2",
                           "--out", str(out)])
    return status, err.getvalue()


def assert_refused(folder, out, *words):
    status, err = resume(folder, out)
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    assert not out.exists()          # checked before anything was trained or written
    return err


def rewrite_state(folder, **changes):
    arrays = dict(np.load(folder / "state.npz"))
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez_compressed(folder / "state.npz", **arrays)


def rewrite_capture(folder, **changes):
    arrays = dict(np.load(folder / "capture.npz"))
    arrays.update(changes)
    np.savez_compressed(folder / "capture.npz", **arrays)


# -- the cases of the issue, each on its own ------------------------------------------
@pytest.mark.parametrize("name, value", [("live_lr", np.float64(1e300)),
                                         ("live_clip", np.str_("sideways")),
                                         ("live_capture_every", np.int64(-1))])
def test_a_live_setting_out_of_range_is_one_line(tmp_path, name, value):
    run = saved(tmp_path / "run")
    rewrite_state(run, **{name: value})
    assert_refused(run, tmp_path / "out", "state.npz", name.removeprefix("live_"))


def test_an_adam_step_of_minus_one_is_one_line(tmp_path):
    run = saved(tmp_path / "run")
    rewrite_state(run, optim_0_step=np.float32(-1))        # ZeroDivisionError before
    assert_refused(run, tmp_path / "out", "state.npz", "'optim_0_step'")


def test_a_step_of_2_63_minus_1_is_one_line(tmp_path):
    run = saved(tmp_path / "run")
    rewrite_state(run, step=np.int64(2**63 - 1))           # OverflowError before
    assert_refused(run, tmp_path / "out", "state.npz", "'step'")


@pytest.mark.parametrize("value", [np.nan, 1e300])
def test_a_nan_or_oversized_stream_position_is_one_line(tmp_path, value):
    run = saved(tmp_path / "run", "stateful reber gru sgd momentum")
    state = np.load(run / "state.npz")
    rewrite_state(run, position_0=np.full(state["position_0"].shape, value))
    assert_refused(run, tmp_path / "out", "state.npz", "'position_")
    rewrite_state(run, position_0=np.zeros(9, np.int64))    # a batch of 9, not 2
    assert_refused(run, tmp_path / "out", "state.npz", "'position_0'")


def test_a_capture_of_another_sequence_length_is_one_line(tmp_path):
    run = saved(tmp_path / "run")
    doc = json.loads((run / "run.json").read_text())
    doc["config"]["seq_len"] = 7                           # capture.npz has T = 6
    (run / "run.json").write_text(json.dumps(doc))
    err = assert_refused(run, tmp_path / "out")
    assert "capture.npz" in err or "state.npz" in err


def test_nan_keyframe_gate_ranges_are_refused_on_opening(tmp_path):
    run = saved(tmp_path / "run")
    ranges = np.load(run / "capture.npz")["key_gate_ranges"].copy()
    ranges[1, 0] = np.nan
    rewrite_capture(run, key_gate_ranges=ranges)
    # Before, this trained and then failed in the save: the steps lost, an empty --out left.
    assert_refused(run, tmp_path / "out", "capture.npz", "'key_gate_ranges'")
    with pytest.raises(RunFileError, match="key_gate_ranges"):
        open_run(run)


def test_rows_out_of_order_or_after_the_state_are_refused(tmp_path):
    run = saved(tmp_path / "run")
    rewrite_capture(run, step=np.array([0, 2, 1, 3]))
    assert_refused(run, tmp_path / "out", "capture.npz", "'step'")
    rewrite_capture(run, step=np.array([0, 1, 2, 9]))          # the state has trained 4
    assert_refused(run, tmp_path / "out", "capture.npz", "'step'")


def test_files_of_two_saves_are_refused(tmp_path):
    """run.json of one save, state.npz of a later one: the gap the issue found."""
    run = saved(tmp_path / "run")
    older = tmp_path / "older"
    shutil.copytree(run, older)
    assert cli.main(["run", "--quiet", "--resume", str(run), "--steps", "2"]) == 0
    shutil.copy(older / "capture.npz", run / "capture.npz")
    shutil.copy(older / "run.json", run / "run.json")
    assert_refused(run, tmp_path / "out", "state.npz")


def test_the_training_process_reports_a_damaged_state_once(tmp_path):
    import queue

    from gradviz.engine.training import messages as m
    from gradviz.engine.training.process import serve

    run = saved(tmp_path / "run")
    rewrite_state(run, step=np.int64(2**63 - 1))
    config = open_run(run).config
    commands, results = queue.Queue(), queue.Queue()
    commands.put(m.Reset(4, config.to_dict(), resume=str(run)))
    commands.put(m.Start())
    commands.put(m.Quit())
    serve(commands, results, 1, config.to_dict())
    reports = [results.get() for _ in range(results.qsize())]
    errors = [r for r in reports if type(r).__name__ == "Error"]
    assert len(errors) == 1 and "'step'" in errors[0].message and errors[0].traceback == ""
    assert not [r for r in reports if type(r).__name__ == "Data"]


def test_a_state_put_into_a_session_directly_is_checked_too(tmp_path):
    run = saved(tmp_path / "run")
    rewrite_state(run, optim_0_step=np.float32(-1))
    with pytest.raises(RunFileError, match="optim_0_step"):
        Session.resume(run)
    state = Session(RunConfig(task="adding", cell="lstm", hidden=3, seq_len=6,
                              batch_size=2, optimizer="adam")).state()
    arrays = {**state.arrays, "counts": np.array([5, 0, 0], np.int64)}   # 5 captures of 0 steps
    with pytest.raises(RunFileError, match="counts"):
        Session(RunConfig(task="adding", cell="lstm", hidden=3, seq_len=6, batch_size=2,
                          optimizer="adam"), state=type(state)(arrays))


# -- every field of a state, mutated ----------------------------------------------------
def mutations(arrays):
    """(label, arrays) for each member: NaN, infinity, huge, -1, 2**63-1, 2**40, a
    fraction, another string, one element more, missing."""
    for name, a in arrays.items():
        changed = {}
        if a.dtype.kind == "f":
            changed.update(nan=np.full_like(a, np.nan), inf=np.full_like(a, np.inf),
                           huge=np.full_like(a, 1e300 if a.dtype.itemsize == 8 else 3e38),
                           neg=np.full_like(a, -1))
        if a.dtype.kind in "iu":
            changed.update(neg=np.full(a.shape, -1, np.int64),
                           max=np.full(a.shape, 2**63 - 1, np.int64),
                           big=np.full(a.shape, 2**40, np.int64),
                           fraction=a.astype(np.float64) + 0.5)
        if a.dtype.kind == "U":
            changed["other"] = np.full_like(a, "zz")
        flat = a.reshape(-1)
        changed["longer"] = np.concatenate([flat, flat[:1]]) if a.size else np.zeros(1)
        changed["missing"] = None
        for label, value in changed.items():
            yield f"{name}:{label}", {**arrays, name: value}


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_every_field_of_a_state_mutated_is_refused_or_trains(tmp_path, config):
    """About 220 hostile states per configuration (672 in all; 109 of the issue's
    campaign): each is refused in one line naming state.npz, with nothing written, or
    trains and saves a run that opens. Before, 21 of the campaign's printed tracebacks."""
    source = saved(tmp_path / "source", config)
    arrays = dict(np.load(source / "state.npz"))
    outcomes = {0: 0, 2: 0}
    for label, changed in mutations(arrays):
        work, out = tmp_path / "work", tmp_path / "out"
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(source, work)
        rewrite_state(work, **{k: changed.get(k) for k in {*arrays, *changed}})
        status, err = resume(work, out)
        assert status in (0, 2) and "Traceback" not in err, (label, err)
        outcomes[status] += 1
        if status == 2:
            assert len(err.strip().splitlines()) == 1 and "state.npz" in err, (label, err)
            assert not out.exists(), label
        else:
            assert open_run(out).summary["steps_done"] == 6, label
    assert outcomes[2] > outcomes[0] > 0


# -- the app's Continue -------------------------------------------------------------------
def test_the_app_says_why_it_cannot_continue_and_changes_nothing(qtbot, tmp_path, monkeypatch):
    """Before: step 2**63-1 gave 159 tracebacks in 5 s while the status said "running"."""
    from test_window import open_window
    from gradviz.ui.prefs import Prefs

    run = saved(tmp_path / "run")
    rewrite_state(run, step=np.int64(2**63 - 1))
    window = open_window(qtbot, Prefs(str(tmp_path / "settings.ini")))
    try:
        window.open_run(run)
        rows = np.array(window.history.step)
        errors = []
        window.worker.error.connect(lambda message, _details: errors.append(message))
        monkeypatch.setattr("gradviz.ui.runfiles.ask_continue", lambda parent, name: "continue")
        window.act_run.trigger()
        qtbot.waitUntil(lambda: bool(errors), timeout=30000)
        qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=30000)
        assert len(errors) == 1 and "state.npz" in errors[0] and "'step'" in errors[0]
        assert window.state.viewing_saved_run and window.state.live.can_continue
        np.testing.assert_array_equal(window.history.step, rows)        # nothing changed
        assert not window.state.running
    finally:
        window.close()
