"""The task's metric per captured step: kept by the History (merged like the loss), saved
and read back by run files (nan from a file that predates it), and shown above the loss
plot as its mean over the last rows."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from gradviz.config import RunConfig
from gradviz.engine.runs.history import History
from gradviz.engine.runs.runfile import load_run, save_run
from gradviz.engine.training.session import Session
from gradviz.ui.views.loss import METRIC_ROWS


def with_metric(cap, value, name="fraction solved"):
    return dataclasses.replace(cap, metric=value, metric_name=name)


def test_the_history_keeps_the_metric_and_merges_it_like_the_loss(make_capture):
    values = np.linspace(0.0, 1.0, 40)
    history = History(capacity=16)
    for step, value in enumerate(values):
        history.append(with_metric(make_capture(step), float(value)))
    assert history.metric_name == "fraction solved"
    # Merged rows hold the count-weighted mean of the captures they cover.
    ends = np.cumsum(history.count)
    expected = [values[e - n:e].mean() for e, n in zip(ends, history.count)]
    np.testing.assert_allclose(history.metric, expected)
    assert history.count.sum() == 40 and history.count.max() > 1


def test_a_task_without_a_metric_keeps_nan(make_capture):
    history = History()
    history.append(make_capture(0))
    assert math.isnan(history.metric[0]) and history.metric_name == ""


def test_run_files_keep_the_metric(tmp_path):
    session = Session(RunConfig(task="copy", seq_len=9, hidden=5, batch_size=8, steps=4))
    session.run()
    assert np.all((session.history.metric >= 0) & (session.history.metric <= 1))
    session.save(tmp_path / "run")
    _, history, _ = load_run(tmp_path / "run")
    np.testing.assert_array_equal(history.metric, session.history.metric)
    assert history.metric_name == "symbols copied"
    assert history.latest.metric == session.history.latest.metric
    assert history.latest.metric_name == "symbols copied"


def test_a_run_file_from_before_the_metric_reads_nan(tmp_path, make_capture):
    history = History()
    for step in range(3):
        history.append(make_capture(step))
    save_run(tmp_path / "old", RunConfig(), history)
    npz = tmp_path / "old" / "capture.npz"
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files
                  if k not in ("metric", "metric_name", "latest_metric", "latest_metric_name")}
    np.savez_compressed(npz, **arrays)
    _, loaded, _ = load_run(tmp_path / "old")
    assert len(loaded) == 3 and np.all(np.isnan(loaded.metric)) and loaded.metric_name == ""


def test_the_loss_view_shows_the_recent_mean_of_the_metric(views, make_capture):
    history = History()
    rng = np.random.default_rng(0)
    values = rng.random(50)
    for step, value in enumerate(values):
        history.append(with_metric(make_capture(step), float(value)))
    view = views["loss"]
    view.set_data(history, history.latest)
    mean = values[-METRIC_ROWS:].mean()
    assert view.colour_key.plain_text().startswith(
        f"fraction solved {mean:.0%} (last {METRIC_ROWS} steps)")
    header, rows = view.csv_table()
    assert header[-1] == "metric"
    np.testing.assert_array_equal(rows[:, -1], values)


def test_the_loss_view_shows_no_metric_for_a_task_without_one(views, make_capture):
    history = History()
    for step in range(5):
        history.append(make_capture(step))
    view = views["loss"]
    view.set_data(history, history.latest)
    assert "%" not in view.colour_key.plain_text()
    assert np.all(np.isnan(view.csv_table()[1][:, -1]))


def test_one_step_is_one_step(views, make_capture):
    history = History()
    history.append(with_metric(make_capture(0), 0.25))
    views["loss"].set_data(history, history.latest)
    assert views["loss"].colour_key.plain_text().startswith("fraction solved 25% (last 1 step)")


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_the_label_reads_the_extremes(views, make_capture, value):
    history = History()
    for step in range(3):
        history.append(with_metric(make_capture(step), value, "long-range symbol right"))
    views["loss"].set_data(history, history.latest)
    assert views["loss"].colour_key.plain_text().startswith(
        f"long-range symbol right {value:.0%} (last 3 steps)")
