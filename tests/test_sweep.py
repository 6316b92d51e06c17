"""Sweeps (gradviz.sweep): the success criteria on hand-made outputs, the grid, the Wilson
interval, resuming after a kill, a failed run recorded while the others go on, and the
same rows from a local process pool and from a Dask cluster."""
import math
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from gradviz.config import RunConfig
from gradviz.engine.tasks import make_task
from gradviz.engine.tasks.success import CRITERIA, criterion
from gradviz.sweep import executors
from gradviz.sweep.driver import run_specs, run_sweep
from gradviz.sweep.folder import memory_refusal, open_folder
from gradviz.sweep.grid import Grid, GridError
from gradviz.sweep.results import curves, read_rows, wilson

ROOT = Path(__file__).resolve().parents[1]
TINY = RunConfig(task="adding", hidden=4, batch_size=4, lr=0.01, steps=6)


def _batch(task_name, T=12, B=16, **extra):
    task = make_task(RunConfig(task=task_name, seq_len=T, **extra))
    return task, task.batch(B, torch.Generator().manual_seed(3))


def _judge(task, y, batch):
    loss = float(task.loss(y, batch.target))
    return criterion(task.name).judge(task, y, batch, loss)


def _one_hot(target, classes, scale=5.0):
    return torch.nn.functional.one_hot(target, classes).float() * scale


# -- success criteria on hand-made outputs ---------------------------------------------------
def test_adding_is_solved_by_outputs_close_to_the_sum_and_not_by_the_mean():
    task, batch = _batch("adding")
    assert _judge(task, batch.target + 0.01, batch)
    assert not _judge(task, torch.ones_like(batch.target), batch)   # the no-memory guess
    # 5% of the baseline (1/6) is an MSE of 1/120: an error of 0.1 everywhere is above it.
    assert not _judge(task, batch.target + 0.1, batch)


def test_adding_1997_needs_every_sequence_within_0_04():
    task, batch = _batch("adding-1997")
    assert _judge(task, batch.target + 0.039, batch)
    off = batch.target.clone()
    off[0, 5, 0] += 0.041                                 # one sequence just outside
    assert not _judge(task, off, batch)


@pytest.mark.parametrize("name", ["copy", "recall"])
def test_copy_and_recall_need_every_answer_symbol_right(name):
    task, batch = _batch(name)
    y = _one_hot(batch.target, task.output_size)
    assert _judge(task, y, batch)
    wrong = batch.target.clone()
    wrong[-1, 0] = (wrong[-1, 0] + 1) % task.output_size   # one symbol of one sequence
    assert not _judge(task, _one_hot(wrong, task.output_size), batch)


def test_series_needs_half_the_no_memory_loss():
    task, batch = _batch("series")
    assert _judge(task, batch.target.clone(), batch)
    assert not _judge(task, task.trivial_prediction(batch), batch)


def test_reber_needs_the_long_range_symbols():
    task, batch = _batch("reber", T=60, B=32)
    y = _one_hot(batch.target, task.output_size)
    assert _judge(task, y, batch)
    # Wrong at every long-range position: the rest right is not enough.
    chosen = task.long_range_positions(batch)
    assert chosen.any()
    wrong = torch.where(chosen, (batch.target + 1) % task.output_size, batch.target)
    assert not _judge(task, _one_hot(wrong, task.output_size), batch)


def test_every_task_but_the_text_has_a_criterion_and_the_text_is_refused():
    from gradviz.registry import TASKS
    assert set(CRITERIA) == set(TASKS) - {"text"}
    with pytest.raises(GridError, match="--task: the text task has no success criterion"):
        Grid(RunConfig(task="text"), ("lstm",), (10,), 1)


# -- the grid and the curve ------------------------------------------------------------------
def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    low, high = wilson(0, 8)
    assert low == 0.0 and round(high, 4) == 0.3244
    assert wilson(0, 0) == (0.0, 1.0)


def test_the_grid_expands_every_axis_and_names_a_bad_value():
    grid = Grid(TINY, ("rnn-tanh", "gru"), (5, 10), 3, (("clip", ("none", "norm")),))
    runs = grid.runs()
    assert len(runs) == 2 * 2 * 3 * 2 == len({r.key for r in runs})
    assert runs[0].key == "rnn-tanh|T=5|clip=none|seed=0"
    assert {r.config["clip"] for r in runs} == {"none", "norm"}
    with pytest.raises(GridError, match="--cells"):
        Grid(TINY, ("nope",), (5,), 1)
    with pytest.raises(GridError, match="--lengths"):
        Grid(TINY, ("gru",), (0,), 1)


def test_a_folder_of_another_grid_is_refused(tmp_path):
    open_folder(tmp_path, Grid(TINY, ("gru",), (5,), 1))
    open_folder(tmp_path, Grid(TINY, ("gru",), (5,), 1))       # the same: resumes
    with pytest.raises(GridError, match="holds another sweep"):
        open_folder(tmp_path, Grid(TINY, ("gru",), (5, 10), 1))


def test_a_sweep_the_machine_cannot_hold_is_refused_in_one_line(monkeypatch):
    from gradviz.engine.training import memory
    grid = Grid(TINY, ("lstm",), (5, 50), 2)
    monkeypatch.setattr(memory, "available_bytes", lambda: 10**12)
    assert memory_refusal(grid, 4) is None
    one = memory.estimate_bytes(TINY.replace(cell="lstm", seq_len=50))
    monkeypatch.setattr(memory, "available_bytes", lambda: int(2.5 * one))
    line = memory_refusal(grid, 4)
    assert line is not None and "\n" not in line and "use --workers 2" in line


def test_the_command_refuses_a_sweep_too_big_before_writing_anything(tmp_path, capsys):
    from gradviz.cli import main
    out = tmp_path / "big"
    assert main(["sweep", "--cells", "lstm", "--lengths", "5000", "--hidden", "1024",
                 "--batch-size", "4096", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gradviz sweep: ") and "of memory" in err and "\n" not in err
    assert not out.exists()


def test_the_command_refuses_bad_input_in_one_line(tmp_path, capsys):
    from gradviz.cli import main
    assert main(["sweep", "--cells", "lstm", "--lengths", "5,x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gradviz sweep: --lengths:") and "\n" not in err
    assert main(["sweep", "--vary", "seed=1,2", "--out", str(tmp_path)]) == 2
    assert "--vary: 'seed' is an axis of its own" in capsys.readouterr().err


def test_scheduler_without_dask_prints_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)     # import distributed fails
    from gradviz.cli import main
    code = main(["sweep", "--cells", "gru", "--lengths", "5", "--seeds", "1", "--steps", "2",
                 "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path)])
    assert code == 2
    assert "pip install 'gradviz[cluster]'" in capsys.readouterr().err


# -- running -------------------------------------------------------------------------------
def _threads(n=1):
    return lambda: ThreadPoolExecutor(n)


def test_a_run_that_raises_is_recorded_failed_and_the_others_go_on(tmp_path):
    missing = str(tmp_path / "missing.csv")
    grid = Grid(TINY.replace(task="series"), ("rnn-tanh",), (4, 6), 1,
                (("series_file", (None, missing)),))
    folder = open_folder(tmp_path / "sweep", grid)
    tally = run_specs(folder, folder.pending(), 1, _threads())
    rows = {r["key"]: r for r in read_rows(tmp_path / "sweep")}
    assert len(rows) == 4 and tally.failed == 2
    for key, row in rows.items():
        if "missing" in key:
            assert row["status"] == "failed" and "does not exist" in row["reason"]
        else:
            assert row["status"] == "ok" and int(row["steps_done"]) > 0
            assert math.isfinite(float(row["decades_init"]))
    # A re-run tries the failed runs again and skips the others.
    assert [s["key"] for s in open_folder(tmp_path / "sweep", grid).pending()] == \
        [k for k in rows if "missing" in k]


def die_on_second(spec):
    """A run function whose run of seed 1 kills its worker process."""
    if spec["labels"]["seed"] == "1":
        os._exit(3)
    from gradviz.sweep.runone import run_one
    return run_one(spec)


@pytest.mark.slow
def test_a_worker_that_dies_fails_its_run_only(tmp_path):
    grid = Grid(TINY, ("gru",), (4,), 3)
    folder = open_folder(tmp_path, grid)
    run_specs(folder, folder.pending(), 2, lambda: executors.local_pool(2), fn=die_on_second)
    rows = {r["seed"]: r for r in read_rows(tmp_path)}
    assert rows["1"]["status"] == "failed" and "worker process died" in rows["1"]["reason"]
    assert rows["0"]["status"] == rows["2"]["status"] == "ok"


def _rows_without_time(folder):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_rows(folder)]


@pytest.mark.slow
def test_a_killed_sweep_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "gradviz", "sweep", "--cells", "rnn-tanh", "--lengths",
            "5", "--seeds", "10", "--steps", "300", "--hidden", "4", "--workers", "1",
            "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(read_rows(out)) < 2 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)        # the command and its pool, at once
        child.wait()
    before = read_rows(out)
    assert 2 <= len(before) < 10, "the sweep finished before it could be killed"
    figures = tmp_path / "figures"
    done = subprocess.run(argv + ["--figures", str(figures)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"({len(before)} already done)" in done.stderr
    after = {r["key"]: r for r in read_rows(out)}
    assert len(after) == 10
    for row in before:                             # not run again: the same row, time and all
        assert after[row["key"]] == row
    assert sorted(p.name for p in figures.iterdir()) == ["sweep.csv", "sweep.png", "sweep.svg"]


@pytest.mark.slow
def test_local_pool_and_dask_give_the_same_rows_bit_for_bit(tmp_path):
    distributed = pytest.importorskip("distributed")
    grid = Grid(TINY.replace(steps=40), ("rnn-tanh", "lstm"), (5, 8), 2,
                check_every=10)
    assert run_sweep(grid, tmp_path / "local", workers=2, quiet=True) == 0
    # On the loopback address, as `--scheduler tcp://127.0.0.1:PORT` would find it.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  protocol="tcp://", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        assert run_sweep(grid, tmp_path / "dask", scheduler=cluster.scheduler_address,
                         quiet=True) == 0
    a, b = _rows_without_time(tmp_path / "local"), _rows_without_time(tmp_path / "dask")
    assert len(a) == 8 and a == b
    assert all(r["status"] == "ok" for r in a)


# -- the sweep experiments' lessons, on hand-made curves -------------------------------------
def _curve(pairs, n=3):
    from gradviz.sweep.results import Point
    return [Point(T, n, k, 0, k / n, *wilson(k, n), math.nan) for T, k in pairs]


def test_the_vanishing_lesson_needs_the_tanh_curve_at_zero_and_a_gated_cell_above_it():
    from gradviz.sweep.experiments import check_lesson, zero_from
    tanh = _curve([(5, 3), (10, 3), (20, 0), (50, 0)])
    assert zero_from(tanh) == 20
    assert zero_from(_curve([(5, 3), (10, 0), (20, 1)])) is None
    held, text = check_lesson("vanishing-curve", {"rnn-tanh": tanh,
                                                  "lstm": _curve([(5, 3), (50, 2)])})
    assert held and "zero from T = 20" in text
    held, _ = check_lesson("vanishing-curve", {"rnn-tanh": tanh,
                                               "lstm": _curve([(5, 3), (50, 0)])})
    assert not held
    held, _ = check_lesson("vanishing-curve", {"rnn-tanh": _curve([(5, 3), (50, 1)]),
                                               "gru": _curve([(5, 3), (50, 3)])})
    assert not held


def test_the_clipping_lesson_needs_clipping_never_worse_and_better_in_total():
    from gradviz.sweep.experiments import check_lesson, sweep_experiment
    name = "clipping-curve"
    (cell,) = sweep_experiment(name).grid["cells"]
    off, on = f"{cell} clip=none", f"{cell} clip=norm"
    assert check_lesson(name, {off: _curve([(10, 1), (20, 0)]), on: _curve([(10, 2), (20, 0)])})[0]
    assert not check_lesson(name, {off: _curve([(10, 1), (20, 1)]),
                                   on: _curve([(10, 3), (20, 0)])})[0]
    assert not check_lesson(name, {off: _curve([(10, 1)]), on: _curve([(10, 1)])})[0]


@pytest.mark.slow
def test_the_throughput_benchmark_prints_runs_per_minute():
    done = subprocess.run([sys.executable, "benchmarks/sweep_throughput.py", "--runs", "4",
                           "--steps", "5"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("1 core: ") and "runs/min" in lines[0]
    assert lines[-1].startswith("speed-up over 1 core: 1: 1.00x")


def test_every_sweep_experiment_is_a_valid_grid_that_options_override():
    from gradviz.sweepcli import build_parser, make_grid
    from gradviz.sweep.experiments import SWEEP_EXPERIMENTS
    for name, experiment in SWEEP_EXPERIMENTS.items():
        grid = make_grid(build_parser().parse_args(["--experiment", name]))
        assert grid.base == experiment.base and list(grid.cells) == experiment.grid["cells"]
        smaller = make_grid(build_parser().parse_args(["--experiment", name, "--seeds", "1",
                                                       "--lengths", "5", "--lr", "0.5"]))
        assert smaller.seeds == 1 and smaller.lengths == (5,) and smaller.base.lr == 0.5
        assert len(smaller.runs()) == len(grid.runs()) // (grid.seeds * len(grid.lengths))


def test_the_time_estimate_scales_with_steps_workers_and_what_is_done():
    from gradviz.sweep.estimate import sweep_seconds
    grid = Grid(TINY.replace(steps=1000), ("lstm", "gru"), (10, 50), 2)
    one = sweep_seconds(grid, 1)
    assert one > 0 and sweep_seconds(grid, 2) == pytest.approx(one / 2)
    assert sweep_seconds(Grid(TINY.replace(steps=2000), ("lstm", "gru"), (10, 50), 2), 1) \
        == pytest.approx(2 * one)
    done = {spec.key for spec in grid.runs()}
    assert sweep_seconds(grid, 1, done) == 0


def test_a_saved_runs_settings_are_the_base_of_a_sweep(tmp_path, capsys):
    from gradviz.config import RunConfig
    from gradviz.engine.training.session import Session
    from gradviz.sweepcli import build_parser, make_grid
    session = Session(RunConfig(task="copy", hidden=6, batch_size=4, seq_len=8, lr=0.02,
                                steps=2))
    session.run()
    session.save(tmp_path / "run")
    grid = make_grid(build_parser().parse_args(["--config", str(tmp_path / "run"),
                                                "--lengths", "8,12", "--hidden", "5"]))
    assert (grid.base.task, grid.base.lr, grid.base.hidden) == ("copy", 0.02, 5)
    from gradviz.cli import main
    assert main(["sweep", "--config", str(tmp_path / "nothing"), "--out",
                 str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.startswith("gradviz sweep: --config: ")


def test_a_results_file_that_cannot_be_written_ends_the_sweep_in_one_line(tmp_path,
                                                                          monkeypatch, capsys):
    from gradviz.sweep import driver

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    grid = Grid(TINY, ("gru",), (4,), 2)
    monkeypatch.setattr("gradviz.sweep.folder.write_rows", full)
    monkeypatch.setattr(driver.executors, "local_pool", lambda n: ThreadPoolExecutor(n))
    assert driver.run_sweep(grid, tmp_path / "s", workers=1, quiet=True) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("gradviz sweep: could not write") and "No space left" in err
    assert "\n" not in err


def test_a_pool_that_breaks_between_two_submits_starts_a_new_one():
    """A worker can die after the last wait and before the next submit: that submit raises
    BrokenProcessPool. The run it was for must go to the next pool, not end the sweep."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    made = []

    class Pool:
        def __init__(self, broken: bool):
            self.broken = broken
            made.append(self)

        def submit(self, fn, spec):
            if self.broken:
                raise BrokenProcessPool("a worker died")
            done = Future()
            done.set_result({"key": spec["key"], "status": "ok"})
            return done

        def shutdown(self, wait=True, cancel_futures=False):
            pass

    rows = []
    specs = [{"key": f"run {i}"} for i in range(3)]
    executors.execute(specs, lambda: Pool(broken=not made), 2, rows.append, fn=None)
    assert sorted(r["key"] for r in rows) == ["run 0", "run 1", "run 2"]
    assert all(r["status"] == "ok" for r in rows) and len(made) == 2
