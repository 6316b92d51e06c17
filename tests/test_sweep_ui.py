"""The Sweep view and the new-sweep dialog (gradviz.ui.sweepview, gradviz.ui.sweepwindow),
on hand-made sweep folders: nothing trains here."""
import csv
import math

import pytest

from gradviz.config import RunConfig
from gradviz.sweep.folder import open_folder
from gradviz.sweep.grid import Grid

BASE = RunConfig(task="adding", hidden=4, steps=100)


def _row(spec, success, step=None, status="ok"):
    return {"key": spec.key, **spec.labels, "status": status, "success": int(success),
            "success_step": step, "steps_done": step or 100, "final_loss": 0.1}


@pytest.fixture
def sweep(tmp_path):
    grid = Grid(BASE, ("rnn-tanh", "lstm"), (10, 20), 3)
    folder = open_folder(tmp_path / "sweep", grid)
    specs = {s.key: s for s in grid.runs()}
    for seed in range(3):
        folder.add(_row(specs[f"lstm|T=10|seed={seed}"], True, 40 + 10 * seed))
        folder.add(_row(specs[f"rnn-tanh|T=20|seed={seed}"], False))
    return folder, specs


def test_the_view_draws_rates_intervals_and_median_steps(qtbot, sweep):
    from gradviz.ui.sweepview import SweepView
    folder, specs = sweep
    view = SweepView()
    qtbot.addWidget(view)
    view.open_folder(folder.folder)
    found = view.figure.curves
    lstm = {p.seq_len: p for p in found["lstm"]}[10]
    assert (lstm.n, lstm.successes, lstm.rate, lstm.median_step) == (3, 3, 1.0, 50.0)
    assert lstm.high == 1.0 and 0.43 < lstm.low < 0.44           # Wilson 3/3
    tanh = {p.seq_len: p for p in found["rnn-tanh"]}[20]
    assert tanh.rate == 0.0 and math.isnan(tanh.median_step)
    # It fills in as runs finish, and a failed run is counted apart.
    assert not view.refresh()
    folder.add(_row(specs["lstm|T=20|seed=0"], True, 90))
    folder.add({**_row(specs["lstm|T=20|seed=1"], False), "status": "failed",
                "reason": "boom"})
    assert view.refresh()
    point = {p.seq_len: p for p in view.figure.curves["lstm"]}[20]
    assert (point.n, point.successes, point.failed) == (1, 1, 1)


def test_the_view_exports_png_svg_and_csv(qtbot, sweep, tmp_path):
    from gradviz.ui.sweepview import TABLE_HEADER, write_sweep_figures
    folder, _ = sweep
    paths = write_sweep_figures(folder.folder, tmp_path / "figures")
    assert [p.name for p in paths] == ["sweep.png", "sweep.svg", "sweep.csv"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(paths[2], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == TABLE_HEADER
    assert ["lstm", "10", "3", "3", "0", "1"] == rows[1 + [r[0] for r in rows[1:]].index("lstm")][:6]


def test_the_dialog_command_asks_for_the_grid_it_shows(qtbot, tmp_path):
    from gradviz.sweepcli import build_parser, make_grid
    from gradviz.ui.sweepwindow import NewSweepDialog
    dialog = NewSweepDialog(None, RunConfig(lr=0.01, hidden=8, steps=300, forget_bias=1.0),
                            {"cells": ["gru", "lstm"], "lengths": [5, 10], "seeds": 2,
                             "vary": [["clip", ["none", "norm"]]]})
    qtbot.addWidget(dialog)
    dialog.folder.setText(str(tmp_path / "s"))
    assert "16 runs" in dialog.estimate.text() and dialog.ok.isEnabled()
    args = dialog.command()
    assert args[0] == "sweep"
    grid = make_grid(build_parser().parse_args(args[1:]))
    assert grid.same_runs(dialog.grid())
    dialog.lengths.setText("5,x")
    assert not dialog.ok.isEnabled() and "Cannot start" in dialog.estimate.text()


def test_the_experiments_menu_offers_the_sweeps(qtbot):
    from PyQt6 import QtWidgets
    from gradviz.sweep.experiments import SWEEP_EXPERIMENTS
    from gradviz.ui.sweepwindow import add_sweep_actions
    window = QtWidgets.QMainWindow()
    qtbot.addWidget(window)
    menu = window.menuBar().addMenu("Experiments")
    add_sweep_actions(window, menu)
    texts = [a.text() for a in menu.actions()]
    for experiment in SWEEP_EXPERIMENTS.values():
        assert experiment.title + "…" in texts


@pytest.mark.slow
def test_the_window_runs_a_sweep_and_the_view_fills_in(qtbot, tmp_path, monkeypatch):
    import os
    from pathlib import Path
    from gradviz.ui.sweepwindow import SweepWindow
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PYTHONPATH", str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    window = SweepWindow()
    qtbot.addWidget(window)
    folder = str(tmp_path / "s")
    window.start(["sweep", "--out", folder, "--workers", "1", "--cells", "gru", "--lengths",
                  "4", "--seeds", "2", "--steps", "20", "--hidden", "4"], folder)
    qtbot.waitUntil(lambda: window.process.state().name == "NotRunning", timeout=240_000)
    assert window.process.exitCode() == 0, window.status.text()
    qtbot.waitUntil(lambda: window.view.grid is not None, timeout=10_000)
    window.view.refresh()
    (point,) = window.view.figure.curves["gru"]
    assert point.n == 2 and point.seq_len == 4
    assert "done" in window.status.text()
