"""The bounded History (merging of old rows) and the run folder (save, load, damage)."""
import json
import os
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gradviz.config import RunConfig
from gradviz.engine.runs.capture import Capture
from gradviz.engine.runs.history import History
from gradviz.engine.runs.runfile import RunFileError, load_run, load_run_config, save_run

LSTM_GATES = ("i", "f", "g", "o")


def capture(step, *, L=1, D=1, T=6, H=3, lstm=True, full=False, rng=None, loss=None,
            grad_norm=None, clipped=False, nonfinite=False, lr=1e-3, baseline=0.25):
    """A Capture of random numbers with the engine's shapes (G = 4 gates, P = 4L·D + 2:
    four tensors per layer and direction, then the readout's two)."""
    rng = np.random.default_rng(step) if rng is None else rng
    G, P = len(LSTM_GATES), 4 * L * D + 2
    names = tuple(f"p{k}" for k in range(P))
    owners = tuple((k, d) for k in range(L) for d in range(D) for _ in range(4)) + (None, None)
    dh = rng.random((L, D, T)).astype(np.float32)
    return Capture(
        step=step, loss=float(rng.random()) if loss is None else loss, baseline=baseline,
        lr=lr, clip="norm", clip_threshold=1.0 + step,
        dh_norm=dh, dc_norm=(2 * dh) if lstm else None,
        gate_names=LSTM_GATES, gate_ranges=((0, 1), (0, 1), (-1, 1), (0, 1)),
        gates=rng.random((L, D, G, T, H)).astype(np.float32) if full else None,
        sat_low=rng.random((L, D, G, T)).astype(np.float32) if full else None,
        sat_high=rng.random((L, D, G, T)).astype(np.float32) if full else None,
        probe_h=rng.random((L, D, T, H)).astype(np.float32) if full else None,
        probe_c=rng.random((L, D, T, H)).astype(np.float32) if full and lstm else None,
        param_names=names, param_owners=owners, param_grad_norm=rng.random(P).astype(np.float32),
        grad_norm=float(rng.random()) if grad_norm is None else grad_norm,
        grad_norm_clipped=0.5, clipped=clipped, nonfinite=nonfinite,
        rho=rng.random((L, D, G)), sigma_max=rng.random((L, D, G)),
        rho_names=tuple(f"W_h{g}" for g in LSTM_GATES),
        events=(f"step {step}: something",) if nonfinite else ())


# -- History --------------------------------------------------------------------------
def test_rows_are_captures_until_full():
    history = History(capacity=16)
    caps = [capture(s, full=s == 3) for s in range(10)]
    for c in caps:
        history.append(c)
    assert len(history) == 10
    np.testing.assert_array_equal(history.step, np.arange(10))
    np.testing.assert_array_equal(history.count, np.ones(10))
    np.testing.assert_array_equal(history.loss, [c.loss for c in caps])
    np.testing.assert_array_equal(history.dh_norm, np.stack([c.dh_norm for c in caps]))
    np.testing.assert_array_equal(history.dc_norm, np.stack([c.dc_norm for c in caps]))
    assert history.dh_norm.shape == (10, 1, 1, 6) and history.dh_norm.dtype == np.float32
    assert history.param_grad_norm.shape == (10, 6)
    assert history.latest is caps[3]
    assert history.param_names == caps[0].param_names and history.gate_names == LSTM_GATES
    assert history.baseline == 0.25


def test_merged_rows_hold_exact_count_weighted_means():
    rng = np.random.default_rng(7)
    history = History(capacity=8)
    caps = [capture(s, L=2, D=2, rng=rng, clipped=bool(rng.random() < 0.1), lr=rng.random())
            for s in range(203)]
    for c in caps:
        history.append(c)
    assert len(history) <= 8
    assert history.count.sum() == len(caps)
    assert history.count[0] > 1, "old rows were merged"
    # Each row covers the captures after the previous row's step up to its own step.
    first = np.r_[0, history.step[:-1] + 1]
    np.testing.assert_array_equal(history.count, history.step - first + 1)
    for k, (a, b) in enumerate(zip(first, history.step)):
        group = caps[a:b + 1]
        for name in ("loss", "grad_norm", "grad_norm_clipped", "lr", "clip_threshold"):
            expected = np.mean([getattr(c, name) for c in group])
            np.testing.assert_allclose(getattr(history, name)[k], expected, rtol=1e-12)
        for name in ("dh_norm", "dc_norm", "param_grad_norm"):
            expected = np.mean([getattr(c, name).astype(np.float64) for c in group], axis=0)
            np.testing.assert_allclose(getattr(history, name)[k], expected, rtol=1e-6)
        assert history.clipped[k] == any(c.clipped for c in group)
        assert not history.nonfinite[k]


def test_merging_ignores_non_finite_values_and_ors_flags():
    nan, inf = float("nan"), float("inf")
    pairs = [((nan, 2.0), 2.0), ((nan, nan), nan), ((inf, 3.0), 3.0), ((1.0, 3.0), 2.0)]
    for (first, second), expected in pairs:
        history = History(capacity=4)
        history.append(capture(0, loss=first, grad_norm=inf, nonfinite=first != first,
                               clipped=True))
        history.append(capture(1, loss=second, grad_norm=inf, nonfinite=second != second))
        for s in (2, 3, 4):  # the fifth capture merges the first two
            history.append(capture(s))
        assert history.count[0] == 2 and history.step[0] == 1
        np.testing.assert_equal(history.loss[0], expected)
        assert np.isnan(history.grad_norm[0])  # all non-finite: nan, not inf
        assert history.clipped[0]
        assert history.nonfinite[0] == (first != first or second != second)
        assert not history.clipped[1:].any()


@pytest.mark.slow
def test_memory_stays_bounded_over_100k_appends():
    capacity, n = 512, 100_000
    history = History(capacity=capacity)
    small = capture(0, T=4, lstm=False)
    tracemalloc.start()
    try:
        history.append(small)
        before, _ = tracemalloc.get_traced_memory()
        for s in range(1, n):
            small.step = s
            history.append(small)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024, "appending grew memory"
    assert len(history) <= capacity
    assert history.count.sum() == n
    assert history.step[-1] == n - 1 and np.all(np.diff(history.step) > 0)
    # Old rows share the run evenly instead of the oldest one absorbing it.
    assert history.count.max() <= 8 * n // capacity
    # The newest half of the capacity is kept at full resolution.
    assert np.all(history.count[-capacity // 2:] == 1)


def test_rows_are_fewer_when_captures_are_huge():
    history = History(capacity=4096, max_bytes=1_000_000)
    for s in range(100):
        history.append(capture(s, T=5000, lstm=True))  # 40 kB a row
    assert len(history) < 25 and history.count.sum() == 100


def test_a_capture_of_another_shape_starts_anew():
    history = History(capacity=8)
    for s in range(5):
        history.append(capture(s, T=6, full=True))
    history.append(capture(5, T=7))
    assert len(history) == 1 and history.step.tolist() == [5]
    assert history.latest is None and history.dh_norm.shape == (1, 1, 1, 7)
    history.append(capture(6, T=7, lstm=False))
    assert len(history) == 1 and history.dc_norm is None
    history.clear()
    assert len(history) == 0 and history.dh_norm.shape[0] == 0 and history.step.shape == (0,)


def test_latest_is_the_newest_full_capture():
    history = History()
    full = capture(0, full=True)
    history.append(full)
    history.append(capture(1).light())
    assert history.latest is full


def test_history_keeps_the_owner_of_each_parameter():
    history = History(capacity=8)
    history.append(capture(0, L=2, D=2))
    assert history.param_owners == ((0, 0),) * 4 + ((0, 1),) * 4 + ((1, 0),) * 4 \
        + ((1, 1),) * 4 + (None, None)
    history.clear()
    assert history.param_owners == ()


def test_a_capture_without_owners_gets_them_from_the_parameter_names(make_capture):
    """Captures made before they carried owners: PyTorch's names say which layer and
    direction (gradviz.engine.model.network reads them)."""
    history = History(capacity=8)
    history.append(make_capture(0, L=2, D=2))
    assert history.param_owners == ((0, 0),) * 4 + ((0, 1),) * 4 + ((1, 0),) * 4 \
        + ((1, 1),) * 4 + (None, None)


# -- the run folder -------------------------------------------------------------------
CONFIG = RunConfig(cell="lstm", layers=2, bidirectional=True, seq_len=6, hidden=3, seed=5)


def filled_history(n=40, capacity=16, **kw):
    history = History(capacity=capacity)
    for s in range(n):
        history.append(capture(s, full=s == n - 2, L=2, D=2, **kw))
    return history


def assert_same_capture(a: Capture, b: Capture):
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, np.ndarray) or isinstance(other, np.ndarray):
            np.testing.assert_array_equal(value, other, err_msg=name)
        else:
            assert value == other or (value != value and other != other), name


@pytest.mark.parametrize("lstm", [True, False])
def test_save_then_load_gives_the_same_run(tmp_path, lstm):
    history = filled_history(lstm=lstm)
    summary = {"steps_done": 40, "final_loss": float("nan"), "note": "x"}
    save_run(tmp_path / "a" / "run", CONFIG, history, summary)
    config, loaded, loaded_summary = load_run(tmp_path / "a" / "run")
    assert config == CONFIG
    assert loaded_summary == {"steps_done": 40, "final_loss": None, "note": "x"}
    assert len(loaded) == len(history)
    for name in ("step", "count", "loss", "grad_norm", "grad_norm_clipped", "lr",
                 "clip_threshold", "clipped", "nonfinite", "dh_norm", "param_grad_norm"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(history, name), name)
        assert getattr(loaded, name).dtype == getattr(history, name).dtype
    if lstm:
        np.testing.assert_array_equal(loaded.dc_norm, history.dc_norm)
    else:
        assert loaded.dc_norm is None
    assert loaded.param_names == history.param_names and loaded.gate_names == LSTM_GATES
    assert loaded.baseline == history.baseline
    assert_same_capture(loaded.latest, history.latest)
    # The loaded history goes on from where it was, without starting anew.
    loaded.append(capture(40, L=2, D=2, lstm=lstm))
    assert len(loaded) == len(history) + 1


def test_file_holds_the_documented_arrays(tmp_path):
    history = filled_history()
    save_run(tmp_path, CONFIG, history)
    K = len(history)
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["schema"] == "gradviz-run" and doc["schema_version"] == 2   # a trained run needs nothing of version 3
    assert set(doc["versions"]) == {"gradviz", "python", "torch", "numpy"}
    assert RunConfig.from_dict(doc["config"]) == CONFIG
    with np.load(tmp_path / "capture.npz", allow_pickle=False) as npz:
        assert npz["dh_norm"].shape == (K, 6)
        np.testing.assert_array_equal(npz["dh_norm"], history.dh_norm[:, -1, 0, :])
        np.testing.assert_array_equal(npz["dc_norm"], history.dc_norm[:, -1, 0, :])
        assert npz["dh_norm_all"].shape == (K, 2, 2, 6)
        assert npz["param_grad_norm"].shape == (K, 18) and npz["param_names"].dtype.kind == "U"
        assert npz["baseline"].shape == () and npz["step"].dtype == np.int64
        assert npz["latest_gates"].shape == (2, 2, 4, 6, 3)
        assert str(npz["latest_clip"]) == "norm"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["capture.npz", "run.json"]


def test_the_owners_are_stored_once_as_an_int_array(tmp_path):
    history = filled_history()
    save_run(tmp_path, CONFIG, history)
    with np.load(tmp_path / "capture.npz", allow_pickle=False) as npz:
        owner = npz["param_owner"]
        assert "latest_param_owners" not in npz.files
    assert owner.dtype == np.int64 and owner.shape == (18, 2)
    np.testing.assert_array_equal(owner[:4], [[0, 0]] * 4)
    np.testing.assert_array_equal(owner[12:16], [[1, 1]] * 4)
    np.testing.assert_array_equal(owner[16:], [[-1, -1]] * 2)
    _, loaded, _ = load_run(tmp_path)
    assert loaded.param_owners == history.param_owners
    assert loaded.latest.param_owners == history.param_owners


def test_an_older_run_without_owners_gets_them_from_the_parameter_names(tmp_path, make_history):
    save_run(tmp_path, CONFIG, make_history(6, cell="lstm", L=2, D=2, T=6, H=3))
    rewrite_npz(tmp_path, lambda a: a.pop("param_owner"))
    _, loaded, _ = load_run(tmp_path)
    expected = ((0, 0),) * 4 + ((0, 1),) * 4 + ((1, 0),) * 4 + ((1, 1),) * 4 + (None, None)
    assert loaded.param_owners == expected and loaded.latest.param_owners == expected


def test_a_trained_run_saves_and_loads_with_its_owners(tmp_path):
    from gradviz.engine.training.train import Trainer
    config = RunConfig(task="adding", cell="lstm-peephole", seq_len=6, hidden=3, layers=2,
                       bidirectional=True)
    trainer = Trainer(config)
    history = History()
    for _ in range(3):
        history.append(trainer.step())
    save_run(tmp_path, config, history)
    _, loaded, _ = load_run(tmp_path)
    assert loaded.param_owners == trainer.net.param_owners() == history.latest.param_owners
    assert_same_capture(loaded.latest, history.latest)


def test_an_empty_history_round_trips(tmp_path):
    save_run(tmp_path, CONFIG, History())
    _, loaded, summary = load_run(tmp_path / "run.json")
    assert len(loaded) == 0 and loaded.latest is None and summary == {}


def test_load_run_config_reads_only_the_json(tmp_path):
    save_run(tmp_path, CONFIG, filled_history())
    os.remove(tmp_path / "capture.npz")
    assert load_run_config(tmp_path) == CONFIG
    with pytest.raises(RunFileError, match="capture.npz: file not found"):
        load_run(tmp_path)


# -- damaged runs ---------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    save_run(tmp_path, CONFIG, filled_history())
    return tmp_path


def rewrite_npz(folder: Path, change):
    with np.load(folder / "capture.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    np.savez(folder / "capture.npz", **arrays)


def edit_json(folder: Path, change):
    doc = json.loads((folder / "run.json").read_text())
    change(doc)
    (folder / "run.json").write_text(json.dumps(doc))


def truncate(path: Path, keep: float):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


JSON_DAMAGE = {
    "not found": (lambda f: os.remove(f / "run.json"), "run.json: file not found"),
    "not json": (lambda f: (f / "run.json").write_text("{oops"), "not valid JSON"),
    "not utf-8": (lambda f: (f / "run.json").write_bytes(b"\xff\xfe{}"), "cannot read"),
    "truncated": (lambda f: truncate(f / "run.json", 0.5), "not valid JSON"),
    "a list": (lambda f: (f / "run.json").write_text("[1, 2]"), "not a gradviz run"),
    "other schema": (lambda f: edit_json(f, lambda d: d.update(schema="other")),
                     "not a gradviz run"),
    "newer version": (lambda f: edit_json(f, lambda d: d.update(schema_version=4)),
                      "schema_version 4 is not supported"),
    "bad config": (lambda f: edit_json(f, lambda d: d["config"].update(seq_len=0)),
                   "config: seq_len: 0 is out of range"),
    "unknown setting": (lambda f: edit_json(f, lambda d: d["config"].update(colour=1)),
                        "config: colour: unknown setting"),
    "summary a list": (lambda f: edit_json(f, lambda d: d.update(summary=[])),
                       "\"summary\" is missing or not a JSON object"),
    "no config": (lambda f: edit_json(f, lambda d: d.pop("config")), "\"config\" is missing"),
    "config type": (lambda f: edit_json(f, lambda d: d["config"].update(hidden="ten")),
                    "config: hidden: must be an integer"),
    "versions text": (lambda f: edit_json(f, lambda d: d.update(versions="1.0")),
                      "\"versions\" is missing or not a JSON object"),
    "version text": (lambda f: edit_json(f, lambda d: d.update(schema_version="1")),
                     "schema_version '1' is not supported"),
}

NPZ_DAMAGE = {
    "not found": (lambda f: os.remove(f / "capture.npz"), "capture.npz: file not found"),
    "truncated": (lambda f: truncate(f / "capture.npz", 0.6), "capture.npz: damaged"),
    "cut short": (lambda f: truncate(f / "capture.npz", 0.98), "capture.npz: damaged"),
    "empty": (lambda f: truncate(f / "capture.npz", 0.0), "capture.npz: damaged"),
    "garbage": (lambda f: (f / "capture.npz").write_bytes(b"not a zip" * 100),
                "capture.npz: damaged or not a numpy archive"),
    "object array": (lambda f: rewrite_npz(f, lambda a: a.update(loss=np.array([{}], object))),
                     "capture.npz: holds pickled"),
    "missing key": (lambda f: rewrite_npz(f, lambda a: a.pop("loss")), "'loss' is missing"),
    "wrong dtype": (lambda f: rewrite_npz(f, lambda a: a.update(loss=a["loss"].astype(str))),
                    "'loss' holds <U32 values; expected floats"),
    "wrong length": (lambda f: rewrite_npz(f, lambda a: a.update(loss=a["loss"][:-1])),
                     "'loss' has shape .* its K dimension should be"),
    "wrong ndim": (lambda f: rewrite_npz(f, lambda a: a.update(dh_norm_all=a["dh_norm_all"][0])),
                   "'dh_norm_all' has shape .* expected 4 dimension"),
    "latest mismatch": (lambda f: rewrite_npz(
        f, lambda a: a.update(latest_gates=a["latest_gates"][:1])),
        "'latest_gates' .* its L dimension should be 2"),
    "half of dc": (lambda f: rewrite_npz(f, lambda a: a.pop("dc_norm")),
                   "'dc_norm' and 'dc_norm_all' must be both present"),
    "zero count": (lambda f: rewrite_npz(f, lambda a: a["count"].__setitem__(0, 0)),
                   "'count' holds values below 1"),
    "a zip of text": (lambda f: zipfile.ZipFile(f / "capture.npz", "w").writestr("step", "1"),
                      "member 'step' is not a numpy array"),
    "owner shape": (lambda f: rewrite_npz(
        f, lambda a: a.update(param_owner=a["param_owner"][:, 0])),
                    "'param_owner' has shape .* expected 2 dimension"),
    "owner count": (lambda f: rewrite_npz(f, lambda a: a.update(param_owner=a["param_owner"][1:])),
                    "'param_owner' has shape .* its P dimension should be 18"),
    "owner layer": (lambda f: rewrite_npz(f, lambda a: a["param_owner"].__setitem__((0, 0), 2)),
                    "'param_owner' holds a .* within the run's 2 layer"),
    "owner half none": (lambda f: rewrite_npz(
        f, lambda a: a["param_owner"].__setitem__((0, 1), -1)),
                        "'param_owner' holds a \\(layer, direction\\) that is neither"),
}


@pytest.mark.parametrize("case", sorted(JSON_DAMAGE))
def test_damaged_run_json_is_a_clear_error(saved, case):
    damage, expected = JSON_DAMAGE[case]
    damage(saved)
    with pytest.raises(RunFileError, match=expected) as error:
        load_run(saved)
    assert str(saved / "run.json") in str(error.value)


@pytest.mark.parametrize("case", sorted(NPZ_DAMAGE))
def test_damaged_capture_npz_is_a_clear_error(saved, case):
    damage, expected = NPZ_DAMAGE[case]
    damage(saved)
    with pytest.raises(RunFileError, match=expected) as error:
        load_run(saved)
    assert str(saved / "capture.npz") in str(error.value)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(RunFileError, match="no such run folder"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(RunFileError, match="not a run folder"):
        load_run(tmp_path / "file.txt")


# -- failed saves ---------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_failed_save_leaves_the_existing_run_intact(saved, monkeypatch):
    before = snapshot(saved)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError, match="No space left"):
        save_run(saved, CONFIG.replace(seed=9), filled_history(n=5))
    assert snapshot(saved) == before


def test_a_failed_save_into_new_folders_leaves_none_behind(tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError, match="No space left"):
        save_run(tmp_path / "runs" / "new" / "deeper", CONFIG, filled_history(n=5))
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_save_failing_at_the_rename_leaves_the_run_intact(saved, monkeypatch):
    before = snapshot(saved)

    def broken(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(PermissionError):
        save_run(saved, CONFIG.replace(seed=9), filled_history(n=5))
    assert snapshot(saved) == before
    monkeypatch.undo()
    assert load_run(saved)[0] == CONFIG


def test_any_damage_to_capture_npz_is_a_run_file_error(saved):
    """Cut short anywhere or with flipped bytes: a RunFileError, or (where the damage hit
    bytes nobody reads) a run that loads; never another exception."""
    data = (saved / "capture.npz").read_bytes()
    rng = np.random.default_rng(3)
    outcomes = set()
    for trial in range(300):
        damaged = bytearray(data[:int(len(data) * trial / 100)] if trial < 100 else data)
        for _ in range(0 if trial < 100 else 4):
            damaged[rng.integers(len(damaged))] = rng.integers(256)
        (saved / "capture.npz").write_bytes(bytes(damaged))
        try:
            load_run(saved)
            outcomes.add("loaded")
        except RunFileError as error:
            assert "capture.npz: " in str(error)
            outcomes.add("error")
    assert "error" in outcomes


def test_history_knows_which_rows_clipped_by_norm(make_capture):
    from gradviz.engine.runs.history import History
    h = History(capacity=8)
    for step, mode in enumerate(["none", "value", "norm", "norm"]):
        cap = make_capture(step=step)
        cap.clip = mode
        h.append(cap)
    assert h.clip_by_norm.tolist() == [False, False, True, True]
