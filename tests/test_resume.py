"""Saved runs, whole: a run saved, reopened and resumed trains on exactly as if it had never
stopped, and a saved run opens with every array, text and colour scale it was saved with."""
import json

import numpy as np
import pytest
import torch

from gradviz.config import RunConfig
from gradviz.engine.runs.history import FLAG_ROWS, FLOAT_ROWS, HISTORY_CAPACITY, History
from gradviz.engine.runs.keyframes import Keyframes
from gradviz.engine.runs.runfile import RunFileError, load_run, save_run
from gradviz.engine.runs.runfile import TRAINED_SCHEMA_VERSION, load_run_state, open_run
from gradviz.engine.runs.runstate import capture_state
from gradviz.engine.training.session import Session

ROWS = ("step", "count", *FLOAT_ROWS, *FLAG_ROWS, "dh_norm", "param_grad_norm")


def assert_same_capture(a, b):
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, np.ndarray) or isinstance(other, np.ndarray):
            assert isinstance(value, np.ndarray) and isinstance(other, np.ndarray), name
            assert value.dtype == other.dtype, name
            np.testing.assert_array_equal(value, other, err_msg=name)
        else:
            assert value == other or (value != value and other != other), name


def assert_same_run(a: Session, b: Session):
    """Weights, optimiser state, history, keyframes and counts equal, bit for bit."""
    for (name, p), q in zip(a.trainer.net.named_parameters(), b.trainer.params):
        assert torch.equal(p, q), name
    sa, sb = a.trainer.optimizer.indexed_state(), b.trainer.optimizer.indexed_state()
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys()
        for key in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][key]), torch.as_tensor(sb[i][key])), (i, key)
    for name in ROWS:
        np.testing.assert_array_equal(getattr(a.history, name), getattr(b.history, name), name)
    assert (a.history.dc_norm is None) == (b.history.dc_norm is None)
    if a.history.dc_norm is not None:
        np.testing.assert_array_equal(a.history.dc_norm, b.history.dc_norm)
    assert_same_capture(a.history.latest, b.history.latest)
    np.testing.assert_array_equal(a.keyframes.steps, b.keyframes.steps)
    for ka, kb in zip(a.keyframes.captures, b.keyframes.captures):
        assert_same_capture(ka, kb)
    assert a.trainer._data_gen.get_state().equal(b.trainer._data_gen.get_state())
    sa, sb = a.summary(), b.summary()
    for key in ("steps_done", "final_loss", "nonfinite_steps", "clipped_steps",
                "captured_steps", "diverged_at_step", "baseline"):
        assert sa[key] == sb[key] or (sa[key] != sa[key] and sb[key] != sb[key]), key


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    return str(path)


CASES = {
    "lstm adam": dict(task="adding", cell="lstm", optimizer="adam"),
    "gru sgd momentum, every 3rd step captured": dict(task="copy", cell="gru", optimizer="sgd",
                                                      lr=0.05, momentum=0.9, capture_every=3),
    "stateful series rmsprop, clipped": dict(task="series", cell="rnn-tanh", optimizer="rmsprop",
                                             stateful=True, clip="norm", clip_threshold=0.05),
    "stateful text adagrad, 2 layers bidirectional": dict(
        task="text", cell="lstm", optimizer="adagrad", stateful=True, layers=2,
        bidirectional=True),
    "stateful reber lstm": dict(task="reber", cell="lstm", optimizer="adam", stateful=True),
}


@pytest.mark.parametrize("case", CASES)
def test_a_run_saved_and_resumed_equals_one_that_never_stopped(tmp_path, text_file, case):
    # 200 steps = 100 + 100 for the first case; 40 = 20 + 20 for the others (a 2-core machine).
    n = 200 if case == next(iter(CASES)) else 40
    fields = dict(seq_len=10, hidden=6, batch_size=5, steps=n, seed=3, **CASES[case])
    if fields["task"] == "text":
        fields["text_file"] = text_file
    config = RunConfig(**fields)
    whole = Session(config)
    assert whole.run(n) == n
    first = Session(config)
    first.run(n // 2)
    first.save(tmp_path / "run")
    resumed = Session.resume(tmp_path / "run")
    assert resumed.steps_done == n // 2
    assert resumed.run(n // 2) == n // 2
    assert_same_run(whole, resumed)
    assert resumed.summary()["steps_done"] == n
    resumed.save(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["summary"]["steps_done"] == n


def test_live_changes_and_a_divergence_survive_the_resume(tmp_path):
    # ReLU units with recurrent weights of spectral radius 3 overflow over 100 steps.
    config = RunConfig(task="adding", cell="rnn-relu", seq_len=100, hidden=4, batch_size=4,
                       optimizer="sgd", lr=0.1, init="identity", rho=3.0, steps=60)

    def train(session, steps):
        for _ in range(steps):
            if session.steps_done == 30:
                session.set_live(lr=50.0, clip="value", clip_threshold=1e6)
            session.step()

    whole = Session(config)
    train(whole, 60)
    assert whole.first_divergence is not None        # the fixture diverges, as intended
    first = Session(config)
    train(first, 45)
    first.save(tmp_path / "run")
    resumed = Session.resume(tmp_path / "run")
    assert resumed.config.lr == 50.0 and resumed.config.clip == "value"
    train(resumed, 15)
    assert_same_run(whole, resumed)
    assert resumed.first_divergence == whole.first_divergence
    assert resumed.times_diverged == whole.times_diverged


def test_a_saved_run_opens_with_identical_arrays_text_and_scales(tmp_path):
    config = RunConfig(task="adding", cell="lstm", seq_len=7, hidden=5, batch_size=4)
    session = Session(config)
    session.run(40)
    texts = [(10, "first sample"), (39, "ünïcode ✓ sample\nwith a newline")]
    scales = {"gradflow": (-6.5, 0.5), "gates": (0.0, 1.0)}
    save_run(tmp_path, config, session.history, session.summary(),
             keyframes=session.keyframes, texts=texts, scales=scales, state=session.state())
    run = open_run(tmp_path)
    assert run.config == config and run.schema_version == TRAINED_SCHEMA_VERSION == 2
    assert run.texts == texts and run.scales == scales and run.can_continue
    for name in ROWS:
        np.testing.assert_array_equal(getattr(run.history, name), getattr(session.history, name))
    np.testing.assert_array_equal(run.keyframes.steps, session.keyframes.steps)
    assert run.keyframes.spacing == session.keyframes.spacing
    for a, b in zip(run.keyframes.captures, session.keyframes.captures):
        assert_same_capture(a, b)
    assert run.summary["steps_done"] == 40
    state = load_run_state(run, Session(config))
    original = session.state().arrays
    assert state.arrays.keys() == original.keys()
    for name, value in original.items():
        assert state.arrays[name].dtype == value.dtype, name
        np.testing.assert_array_equal(state.arrays[name], value, err_msg=name)


def test_a_run_saved_without_state_opens_but_cannot_continue(tmp_path):
    config = RunConfig(task="adding", cell="gru", seq_len=6, hidden=3, batch_size=2)
    session = Session(config)
    session.run(5)
    session.save(tmp_path)
    assert (tmp_path / "state.npz").exists()
    save_run(tmp_path, config, session.history)        # the old state goes with this save
    assert not (tmp_path / "state.npz").exists()
    run = open_run(tmp_path)
    assert not run.can_continue and run.keyframes.steps.tolist() == [4]   # the latest
    with pytest.raises(RunFileError, match="can be opened but not continued"):
        Session.resume(tmp_path)


def test_a_schema_1_run_still_opens(tmp_path):
    config = RunConfig(task="adding", cell="lstm", seq_len=6, hidden=3, batch_size=2)
    session = Session(config)
    session.run(6)
    save_run(tmp_path, config, session.history, session.summary())
    doc = json.loads((tmp_path / "run.json").read_text())
    doc["schema_version"] = 1
    del doc["state"]
    (tmp_path / "run.json").write_text(json.dumps(doc))
    run = open_run(tmp_path)
    assert run.schema_version == 1 and not run.can_continue and run.texts == []
    assert_same_capture(run.keyframes.latest, session.history.latest)
    assert len(load_run(tmp_path)[1]) == 6
    doc["schema_version"] = 4
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(RunFileError, match="schema_version 4 is not supported.*versions 1, 2, 3"):
        open_run(tmp_path)


def test_a_state_of_another_model_is_refused_from_its_headers(tmp_path):
    config = RunConfig(task="adding", cell="lstm", seq_len=6, hidden=3, batch_size=2)
    session = Session(config)
    session.run(3)
    session.save(tmp_path)
    run = open_run(tmp_path)
    with pytest.raises(RunFileError, match="state.npz: 'weight_0' holds float32 \\(12, 2\\); "
                                           "this run's configuration has float32 \\(16, 2\\)"):
        load_run_state(run, Session(config.replace(hidden=4)))
    with pytest.raises(RunFileError, match="optim_0_momentum_buffer|another model or optimiser"):
        load_run_state(run, Session(config.replace(optimizer="sgd", momentum=0.9)))
    with pytest.raises(ValueError, match="float64"):
        Session(config.replace(dtype="float64"), state=session.state())


def test_a_state_from_the_subspace_tracker_still_resumes(tmp_path):
    """States written before σ_max came by Lanczos hold subspace bases (N, H, p) and two
    members more; such a run resumes, its spectrum then decomposed afresh."""
    config = RunConfig(task="adding", cell="lstm", seq_len=6, hidden=40, batch_size=2)
    session = Session(config)
    session.run(3)
    session.save(tmp_path)
    with np.load(tmp_path / "state.npz") as f:
        arrays = dict(f)
    n, h = arrays["spectrum_v"].shape
    arrays["spectrum_v"] = np.zeros((n, h, 10))
    arrays["spectrum_q"] = np.zeros((n, h, 10))
    arrays["spectrum_misses"] = np.int64(2)
    np.savez_compressed(tmp_path / "state.npz", **arrays)
    resumed = Session.resume(tmp_path)
    assert resumed.steps_done == 3
    w = resumed.trainer.net.layer_params(0, 0)["weight_hh"].detach().double().view(4, h, h)
    resumed.run(1)
    cap = resumed.history.latest
    assert cap.step == cap.rho_step == 3           # decomposed afresh, of the saved weights
    np.testing.assert_allclose(cap.rho[0, 0], torch.linalg.eigvals(w).abs().amax(-1), rtol=1e-10)
    np.testing.assert_allclose(cap.sigma_max[0, 0], torch.linalg.svdvals(w)[:, 0], rtol=1e-10)


def test_a_damaged_state_is_a_run_file_error(tmp_path):
    config = RunConfig(task="adding", cell="rnn-tanh", seq_len=5, hidden=3, batch_size=2)
    session = Session(config)
    session.run(3)
    session.save(tmp_path)
    data = (tmp_path / "state.npz").read_bytes()
    rng = np.random.default_rng(5)
    outcomes = set()
    for trial in range(120):
        damaged = bytearray(data[:int(len(data) * trial / 60)] if trial < 60 else data)
        for _ in range(0 if trial < 60 else 3):
            damaged[rng.integers(len(damaged))] = rng.integers(256)
        (tmp_path / "state.npz").write_bytes(bytes(damaged))
        try:
            Session.resume(tmp_path)
            outcomes.add("resumed")
        except RunFileError as error:
            assert "state.npz" in str(error) or "state" in str(error)
            outcomes.add("error")
    assert "error" in outcomes


def test_too_many_keyframes_are_refused_from_the_headers(tmp_path):
    config = RunConfig(task="adding", cell="rnn-tanh", seq_len=5, hidden=3, batch_size=2)
    session = Session(config)
    session.run(12)
    session.save(tmp_path)
    assert len(open_run(tmp_path).keyframes) == 12
    with pytest.raises(RunFileError, match="holds 12 keyframes .* keep at most 8"):
        open_run(tmp_path, keyframe_capacity=8)


@pytest.mark.slow
def test_a_long_headless_run_keeps_bounded_keyframes_and_a_small_file(tmp_path):
    """2,000 steps here (the 100,000-step bound is tests/test_keyframes.py's, and the slow
    test below): ≤ 256 keyframes spread over the run, and a run file of bounded size."""
    config = RunConfig(task="adding", cell="rnn-tanh", seq_len=4, hidden=2, batch_size=1)
    session = Session(config)
    session.run(2000)
    assert len(session.keyframes) <= 256 and session.keyframes.steps[-1] == 1999
    session.save(tmp_path)
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert size < 1.5 * 2**20
    assert len(open_run(tmp_path).keyframes) == len(session.keyframes)


@pytest.mark.slow
def test_a_100k_step_headless_run_keeps_at_most_256_keyframes(tmp_path, monkeypatch):
    """A session's bookkeeping over 100,000 steps (history, keyframes, the saved file), at a
    fraction of a real run's cost: two real steps give a real capture, and the trainer then
    hands back copies of it for the other steps, each under its own step index. (A real
    100,000-step run is benchmarks/soak.py's.)"""
    import dataclasses

    config = RunConfig(task="adding", cell="rnn-tanh", seq_len=3, hidden=1, batch_size=1)
    session = Session(config)
    session.run(2)
    trainer = session.trainer
    template = session.history.latest

    def step(full=True):
        capture = dataclasses.replace(template, step=trainer.step_index,
                                      loss=1.0 / (1 + trainer.step_index))
        trainer.step_index += 1
        return capture

    monkeypatch.setattr(trainer, "step", step)
    session.run(100_000 - 2)
    keys = session.keyframes
    assert len(keys) <= 256 and keys.steps[-1] == 99_999
    assert np.diff(keys.steps).max() <= 2 * 100_000 / 254
    assert session.history.step[-1] == 99_999 and len(session.history) <= HISTORY_CAPACITY
    session.save(tmp_path)
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) < 2 * 2**20
    reopened = open_run(tmp_path)
    assert reopened.keyframes.steps.tolist() == keys.steps.tolist()
    assert reopened.history.step.tolist() == session.history.step.tolist()


def test_the_state_is_plain_numpy_and_names_every_weight(tmp_path):
    config = RunConfig(task="adding", cell="lstm", seq_len=6, hidden=3, batch_size=2)
    session = Session(config)
    session.run(2)
    state = capture_state(session)
    assert all(isinstance(v, np.ndarray) or isinstance(v, np.generic)
               for v in state.arrays.values())
    assert state.param_names == session.trainer.param_names and state.step == 2
    for i, (_, p) in enumerate(session.trainer.net.named_parameters()):
        np.testing.assert_array_equal(state.arrays[f"weight_{i}"], p.detach().numpy())
    assert isinstance(Keyframes().steps, np.ndarray)


# -- through the training process ----------------------------------------------------------
def train_in_child(config: dict, steps: int, resume, out) -> None:
    """Run in a spawned child, tuned as the app's training process is: a model from
    ``config`` (continuing the run in folder ``resume`` when given) trains ``steps`` single
    steps, then answers a Checkpoint; its reports go on ``out``."""
    import queue

    from gradviz.engine.training import messages as m
    from gradviz.engine.training.process import serve
    from gradviz.engine.training.train import prepare_training_process

    prepare_training_process()
    torch.set_num_threads(1)
    commands, results = queue.Queue(), queue.Queue()
    commands.put(m.Reset(2, config, resume=resume))
    for _ in range(steps):
        commands.put(m.Step())
    commands.put(m.Checkpoint())
    commands.put(m.Quit())
    serve(commands, results, 1, config)
    reports = []
    while not results.empty():
        reports.append(results.get())
    out.put(reports)


def in_child(config: RunConfig, steps: int, resume=None) -> list:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=train_in_child, args=(config.to_dict(), steps, resume, out))
    child.start()
    try:
        return out.get(timeout=120)
    finally:
        child.join(10)


@pytest.mark.slow
def test_the_training_process_continues_a_saved_run(tmp_path):
    config = RunConfig(task="adding", cell="lstm", seq_len=9, hidden=5, batch_size=4,
                       optimizer="adam")
    whole = [r for r in in_child(config, 40) if r.run_id == 2]
    # The first 25 steps, taken out of the process's answer and saved as the app saves a run.
    first = [r for r in in_child(config, 25) if r.run_id == 2]
    checkpoint = first[-1]
    assert type(checkpoint).__name__ == "Checkpointed" and checkpoint.state.step == 25
    assert checkpoint.summary["steps_done"] == 25
    history, keyframes = History(), Keyframes()
    for report in first:
        for capture in getattr(report, "captures", ()):
            history.append(capture)
            keyframes.add(capture)
    save_run(tmp_path, config, history, checkpoint.summary, keyframes=keyframes,
             state=checkpoint.state)
    resumed = [r for r in in_child(config, 15, resume=str(tmp_path)) if r.run_id == 2]
    assert not [r for r in resumed if type(r).__name__ == "Error"]
    captures = [c for r in resumed for c in getattr(r, "captures", ())]
    expected = [c for r in whole for c in getattr(r, "captures", ())][25:]
    assert [c.step for c in captures] == list(range(25, 40))
    for got, want in zip(captures, expected, strict=True):
        assert_same_capture(got, want)
    end, whole_end = resumed[-1].state.arrays, whole[-1].state.arrays
    assert end.keys() == whole_end.keys()
    for name in end:
        if name != "seconds":
            np.testing.assert_array_equal(end[name], whole_end[name], err_msg=name)
    assert resumed[-1].summary["steps_done"] == 40


def test_a_run_that_cannot_be_continued_is_an_error_of_the_process(tmp_path):
    import queue

    from gradviz.engine.training import messages as m
    from gradviz.engine.training.process import serve

    config = RunConfig(task="adding", cell="gru", seq_len=6, hidden=3, batch_size=2)
    session = Session(config)
    session.run(3)
    save_run(tmp_path, config, session.history)                 # no state
    commands, results = queue.Queue(), queue.Queue()
    commands.put(m.Reset(4, config.to_dict(), resume=str(tmp_path)))
    commands.put(m.Checkpoint())
    commands.put(m.Quit())
    serve(commands, results, 1, config.to_dict())
    reports = [results.get() for _ in range(results.qsize())]
    errors = [r for r in reports if type(r).__name__ == "Error" and r.run_id == 4]
    assert len(errors) == 1 and "can be opened but not continued" in errors[0].message
    assert errors[0].traceback == ""
    assert reports[-1] == m.Checkpointed(run_id=4, state=None, summary={})


# -- gradviz run --resume -------------------------------------------------------------------
RUN = ["run", "--quiet", "--task", "adding", "--cell", "gru", "--hidden", "6", "--seq-len", "8",
       "--batch-size", "4", "--seed", "5"]


def test_gradviz_run_resume_continues_the_run_and_saves_it_whole(tmp_path, capsys):
    from gradviz import cli

    assert cli.main([*RUN, "--steps", "30", "--out", str(tmp_path / "whole")]) == 0
    assert cli.main([*RUN, "--steps", "18", "--out", str(tmp_path / "run")]) == 0
    before = (tmp_path / "run" / "capture.npz").read_bytes()
    assert cli.main(["run", "--resume", str(tmp_path / "run"), "--steps", "12",
                     "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "run" / "capture.npz").read_bytes() == before     # --out: left as it was
    assert cli.main(["run", "--resume", str(tmp_path / "run"), "--steps", "12"]) == 0
    err = capsys.readouterr().err
    assert "done: 12 steps in " in err and "Traceback" not in err
    for folder in ("run", "elsewhere"):
        run, whole = open_run(tmp_path / folder), open_run(tmp_path / "whole")
        assert run.summary["steps_done"] == 30 and run.summary["captured_steps"] == 30
        for name in ROWS:
            np.testing.assert_array_equal(getattr(run.history, name),
                                          getattr(whole.history, name), err_msg=name)
        np.testing.assert_array_equal(run.keyframes.steps, whole.keyframes.steps)
        for a, b in zip(run.keyframes.captures, whole.keyframes.captures):
            assert_same_capture(a, b)
        config = run.config.replace(steps=whole.config.steps)
        got = load_run_state(run, Session(config)).arrays
        want = load_run_state(whole, Session(config)).arrays
        for name in want:
            if name != "seconds":
                np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_gradviz_run_resume_takes_live_settings_and_refuses_others(tmp_path, capsys):
    from gradviz import cli

    assert cli.main([*RUN, "--steps", "4", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert cli.main(["run", "--resume", str(tmp_path / "run"), "--hidden", "9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gradviz run: --hidden: cannot change when resuming a run")
    assert "--lr" in err and len(err.splitlines()) == 1
    assert cli.main(["run", "--resume", str(tmp_path / "run"), "--config", str(tmp_path)]) == 2
    assert "--resume: give --resume without --config" in capsys.readouterr().err
    assert cli.main(["run", "--quiet", "--resume", str(tmp_path / "run"), "--steps", "3",
                     "--lr", "0.5", "--clip", "norm"]) == 0
    run = open_run(tmp_path / "run")
    assert run.history.lr.tolist() == [1e-3] * 4 + [0.5] * 3 and run.summary["steps_done"] == 7
    assert cli.main(["run", "--resume", str(tmp_path / "nothing"), "--steps", "3"]) == 2
    assert "--resume: " in capsys.readouterr().err
    save_run(tmp_path / "run", run.config, run.history)                # without its state
    assert cli.main(["run", "--resume", str(tmp_path / "run"), "--steps", "3"]) == 2
    assert "can be opened but not continued" in capsys.readouterr().err
