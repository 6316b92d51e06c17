"""The prediction-tree view (issue 26): what it draws and exports against a model whose
next-character distribution is set by hand, the round trip of its messages through the
training process's command loop, and the timeline following it in the window."""
from __future__ import annotations

import csv
import queue
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PyQt6 import QtGui

from gradviz.config import RunConfig
from gradviz.engine.analysis.treereport import (TreeSettings, TreeSnapshot, default_prefix,
                                                tree_snapshot)
from gradviz.engine.training import messages as m
from gradviz.engine.training.process import serve
from gradviz.engine.training.train import Trainer
from gradviz.ui.views.predtree import CSV_HEADER, PredictionTreeView, edge_style, place

SYMBOLS = "abcd"
# P(next | current), one row per current character in the order of SYMBOLS.
TABLE = np.array([[0.10, 0.60, 0.25, 0.05],
                  [0.50, 0.10, 0.10, 0.30],
                  [0.70, 0.20, 0.05, 0.05],
                  [0.25, 0.25, 0.25, 0.25]])
REBER = RunConfig(task="reber", cell="gru", hidden=8, seq_len=12, batch_size=4)


def hand_set_trainer() -> Trainer:
    """A text-task trainer whose model predicts TABLE from the last character read: no
    recurrence, a saturated input layer (h_t is the one-hot of x_t) and a readout whose
    columns are log TABLE, so softmax(readout(h_t)) is TABLE's row."""
    config = RunConfig(task="text", cell="rnn-tanh", hidden=4, seq_len=5, batch_size=2,
                       dtype="float64")
    trainer = Trainer(config, text="abcdabcdbbaaccdd" * 2)
    assert trainer.task.symbols == list(SYMBOLS)
    net = trainer.net
    with torch.no_grad():
        for _, p in net.recurrent_parameters():
            p.zero_()
        net.weight_ih_l0.copy_(40.0 * torch.eye(4, dtype=torch.float64))
        net.readout.weight.copy_(torch.tensor(np.log(TABLE).T))
        net.readout.bias.zero_()
    return trainer


def worked_out(last: str, k: int, depth: int, temperature: float, path: str = "",
               joint: float = 1.0) -> list[tuple[int, str, str, float, float]]:
    """The tree's rows from TABLE alone (floor 1e-3), depth first."""
    row = TABLE[SYMBOLS.index(last)] ** (1 / temperature)
    row = row / row.sum()
    rows = []
    for i in sorted(range(4), key=lambda i: (-row[i], i))[:k]:
        if joint * row[i] < 1e-3:
            continue
        rows.append((len(path) + 1, path, SYMBOLS[i], row[i], joint * row[i]))
        if depth > 1:
            rows += worked_out(SYMBOLS[i], k, depth - 1, temperature, path + SYMBOLS[i],
                               joint * row[i])
    return rows


@pytest.fixture
def view(qtbot):
    view = PredictionTreeView()
    qtbot.addWidget(view)
    view.resize(1000, 600)
    view.show()
    return view


@pytest.mark.parametrize("k,depth,temperature", [(3, 3, 1.0), (2, 2, 0.5), (5, 1, 2.0)])
def test_the_view_draws_and_exports_the_known_distribution(view, tmp_path, k, depth,
                                                           temperature):
    tree = tree_snapshot(hand_set_trainer(), TreeSettings("dca", k, depth, temperature))
    want = worked_out("a", k, depth, temperature)
    assert tree.error == "" and tree.prefix == "dca"
    view.show_tree(tree)
    # Drawn: one node per row, its probability written, its line as wide as it says.
    assert [(path, s, d) for path, s, _, _, d, _ in view.nodes] == [
        (path, s, d) for d, path, s, _, _ in want]
    for (_, symbol, p, joint, _, label), (_, _, _, p_want, joint_want), edge in zip(
            view.nodes, want, view.edges):
        assert p == pytest.approx(p_want, rel=1e-12)
        assert joint == pytest.approx(joint_want, rel=1e-12)
        assert label.endswith(f"{p_want:.2f}" if p_want >= 0.01 else f"{p_want:.3f}")
        width, alpha = edge_style(p_want)
        assert edge[0] == pytest.approx(width, rel=1e-12) and abs(edge[1] - alpha) <= 1
    # What the scene shows: the prefix at the root, then every node's character and
    # probability, as the view's record says.
    import pyqtgraph as pg
    drawn = [" ".join(item.textItem.toPlainText().split()) for item in view._items
             if isinstance(item, pg.TextItem)]
    assert drawn == ["dca"] + [" ".join(label.split()) for *_, label in view.nodes]
    # The most likely first character has the widest line of the first level.
    first = [w for (_, _, _, _, d, _), (w, _) in zip(view.nodes, view.edges) if d == 1]
    assert first[0] == max(first) and first[0] > min(first)
    # CSV: every node with its probabilities at full precision.
    view.export(tmp_path / "tree.csv")
    with open(tmp_path / "tree.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == CSV_HEADER
    assert len(rows) - 1 == len(want)
    for row, (d, path, s, p, joint) in zip(rows[1:], want):
        assert row[0] == "dca" and row[1] == path and row[2] == s and int(row[5]) == d
        assert float(row[3]) == pytest.approx(p, rel=1e-12)
        assert float(row[4]) == pytest.approx(joint, rel=1e-12)
    # PNG and SVG: written, of the view's size, the probabilities in the drawing's text.
    view.export(tmp_path / "tree.png")
    image = QtGui.QImage(str(tmp_path / "tree.png"))
    assert not image.isNull() and image.width() >= view.graphics.width()
    view.export(tmp_path / "tree.svg")
    svg = ET.parse(tmp_path / "tree.svg").getroot()
    text = " ".join(t.strip() for t in svg.itertext())
    assert f"{want[0][3]:.2f}" in text


def test_the_tree_is_laid_out_left_to_right_parents_between_their_children():
    rows = [(1, "", "a", 0.6, 0.6), (2, "a", "b", 0.5, 0.3), (2, "a", "c", 0.4, 0.24),
            (1, "", "d", 0.3, 0.3), (2, "d", "a", 0.9, 0.27)]
    places, slots = place(rows)
    assert slots == 3
    assert [x for x, _, _ in places] == [1, 2, 2, 1, 2]
    assert [y for _, y, _ in places] == [0.5, 0.0, 1.0, 2.0, 2.0]
    assert [parent for *_, parent in places] == [-1, 0, 0, -1, 3]


def test_what_the_view_shows_without_a_tree(view, tmp_path):
    view.show_tree(None, "the prediction tree is for the character models")
    assert view.heading.plain_text().startswith("The prediction tree is for")
    assert view.nodes == []
    header, rows = view.csv_table()
    assert header == CSV_HEADER and rows.shape == (0, len(CSV_HEADER))
    for suffix in (".png", ".svg", ".csv"):
        assert view.export(tmp_path / f"empty{suffix}").exists()
    # A prefix the model cannot read: its one line, not a tree.
    tree = tree_snapshot(hand_set_trainer(), TreeSettings("abz"))
    assert tree.rows == () and "'z' is not one of the 4 characters" in tree.error
    view.show_tree(tree)
    assert "'z' is not one of the 4" in view.heading.plain_text() and view.nodes == []


def test_the_default_prefix_is_a_line_of_the_training_text():
    trainer = Trainer(RunConfig(task="text", seq_len=5, hidden=4),
                      text="# x\n  The quick brown fox jumps over\nthe lazy dog\n")
    assert default_prefix(trainer.task) == "The quick brown fox jump"
    tree = tree_snapshot(trainer, TreeSettings())
    assert tree.prefix == "The quick brown fox jump" and tree.rows
    reber = Trainer(REBER)
    assert set(default_prefix(reber.task)) <= set("BTPSXVE")
    assert "not a character model" in tree_snapshot(Trainer(RunConfig(task="adding", seq_len=5)),
                                                    TreeSettings("a")).error


def test_the_training_loop_answers_a_tree_request_and_sends_more_as_it_trains():
    commands, results = queue.Queue(), queue.Queue()
    settings = TreeSettings("", k=2, depth=2, temperature=0.8)
    for command in (m.AskTree(settings), m.Step(), m.Step(), m.Quit()):
        commands.put(command)
    serve(commands, results, 7, REBER.to_dict())
    trees = []
    while not results.empty():
        report = results.get()
        if isinstance(report, m.Tree):
            assert report.run_id == 7
            trees.append(report.tree)
    # At once (0 steps), then with the text after each single step.
    assert [t.steps_done for t in trees] == [0, 1, 2]
    for tree in trees:
        assert tree.settings == settings and tree.error == ""
        assert tree.prefix and set(tree.prefix) <= set("BTPSXVE")
        assert 1 <= len([r for r in tree.rows if r[0] == 1]) <= 2
        assert all(joint >= 1e-3 for *_, joint in tree.rows)
    # The reports cross a process boundary: plain data that pickles.
    import pickle
    assert pickle.loads(pickle.dumps(m.Tree(run_id=1, tree=trees[-1]))).tree == trees[-1]


def test_no_tree_is_sent_for_a_task_that_is_not_a_character_model():
    commands, results = queue.Queue(), queue.Queue()
    for command in (m.AskTree(TreeSettings()), m.Step(), m.Quit()):
        commands.put(command)
    serve(commands, results, 1, RunConfig(task="adding", seq_len=6, hidden=4).to_dict())
    reports = []
    while not results.empty():
        reports.append(results.get())
    assert not any(isinstance(r, m.Tree) for r in reports)
    assert not any(isinstance(r, m.Error) for r in reports)


# -- in the window --------------------------------------------------------------------
@pytest.fixture
def window(qtbot, tmp_path):
    from gradviz.ui.offline import offline_windows
    from gradviz.ui.prefs import Prefs
    from gradviz.ui.window import MainWindow

    with offline_windows():
        window = MainWindow(REBER, Prefs(tmp_path / "settings.ini"))
    qtbot.addWidget(window)
    window.resize(1280, 720)
    window.show()
    yield window
    window.close()


def snapshot_at(steps: int, settings: TreeSettings, p: float = 0.5) -> TreeSnapshot:
    return TreeSnapshot(settings, "BT", steps, ((1, "", "S", p, p), (1, "", "X", 1 - p, 1 - p)))


def language_tab_shown(window) -> bool:
    tabs = window.dashboard.tabs
    return any(tabs.isTabVisible(i) for i in range(tabs.count())
               if tabs.tabText(i) == "Language")


def test_the_window_asks_for_trees_and_the_view_follows_the_timeline(window):
    view, worker, state = window.views["predtree"], window.worker, window.state
    worker.ready.emit(True)
    assert language_tab_shown(window)
    assert worker.tree_settings == view.settings()       # asked when the model was ready
    view.k_box.setValue(4)
    assert worker.tree_settings.k == 4                   # and again when a setting changed
    settings = view.settings()
    for steps, p in ((0, 0.5), (10, 0.7), (20, 0.9)):
        worker.tree_ready.emit(snapshot_at(steps, settings, p))
    assert view.tree.steps_done == 20                     # following the newest
    state.select_step(12)                                 # 13 steps done: the tree after 10
    assert view.tree.steps_done == 10 and view.nodes[0][2] == 0.7
    state.select_step(9)                                  # 10 done: the tree made then
    assert view.tree.steps_done == 10
    state.select_step(8)
    assert view.tree.steps_done == 0
    state.select_step(None)
    assert view.tree.steps_done == 20
    # Other settings: the trees stored are not theirs; a line says so.
    view.k_box.setValue(3)
    assert view.tree is None and "No tree yet for these settings" in view.heading.plain_text()
    worker.tree_ready.emit(snapshot_at(15, view.settings()))
    state.select_step(5)
    assert view.tree is None and "the first was made after 15 steps" in view.heading.plain_text()
    view.k_box.setValue(4)
    assert view.tree.steps_done == 0


def test_the_view_says_why_it_is_empty_for_other_tasks(window):
    window.apply_config(RunConfig(task="adding", seq_len=12, hidden=8, batch_size=4))
    window.worker.ready.emit(False)
    view = window.views["predtree"]
    assert not language_tab_shown(window)
    assert view.tree is None
    assert view.heading.plain_text() == ("The prediction tree is for the character models "
                                         "(tasks text and reber); this run's task is adding.")


def test_a_tree_trained_offline_reaches_the_view(window):
    from gradviz.ui.offline import train_window

    train_window(window, 6)
    view = window.views["predtree"]
    assert view.tree is not None and view.tree.steps_done == 6
    assert view.tree.rows and view.nodes
    assert len(window.state.live.trees) == 2              # when ready (0 steps) and at the end


def test_the_training_backend_sends_trees_to_the_window(qtbot, tmp_path):
    from gradviz.ui.inprocess import InProcessWorker
    from gradviz.ui.model import AppModel
    from gradviz.ui.prefs import Prefs
    from gradviz.ui.window import MainWindow

    window = MainWindow(model=AppModel(REBER, Prefs(tmp_path / "s.ini"),
                                       backend=InProcessWorker))
    qtbot.addWidget(window)
    try:
        window.show()
        view = window.views["predtree"]
        qtbot.waitUntil(lambda: view.tree is not None, timeout=30000)
        assert view.tree.steps_done == 0 and view.nodes
        window.step_once()
        qtbot.waitUntil(lambda: view.tree.steps_done == 1, timeout=30000)
        view.depth_box.setValue(1)
        qtbot.waitUntil(lambda: view.tree is not None and view.tree.settings.depth == 1,
                        timeout=30000)
        assert {d for *_, d, _ in view.nodes} == {1}
    finally:
        window.close()


def test_asking_for_trees_leaves_the_training_as_it_was():
    """The tree reads the model between steps; the run is the same step for step."""
    plain, asked = Trainer(REBER), Trainer(REBER)
    for _ in range(4):
        plain.step()
        tree_snapshot(asked, TreeSettings("BTS", k=5, depth=3))
        asked.step()
    assert asked.last_loss == plain.last_loss
    for a, b in zip(asked.params, plain.params):
        assert torch.equal(a, b)


def test_a_tree_too_big_for_its_panel_is_drawn_less_deep_and_exported_whole(view, tmp_path,
                                                                            qtbot):
    view.resize(700, 300)                    # a third of a 1280 x 720 projector
    qtbot.wait(20)
    tree = tree_snapshot(hand_set_trainer(), TreeSettings("dca", 4, 3, 1.0))
    want = worked_out("a", 4, 3, 1.0)
    assert max(d for d, *_ in want) == 3
    view.show_tree(tree)
    shown = max(d for *_, d, _ in view.nodes)
    assert shown < 3
    assert f"{shown} deep shown" in view.heading.plain_text()
    # Every drawn label has room: at least a line of the smallest text between leaves.
    leaves = len({path + s for path, s, _, _, d, _ in view.nodes if d == shown})
    assert view.box.height() / leaves >= 10 * 4 / 3 * 0.99
    view.export(tmp_path / "tree.csv")
    with open(tmp_path / "tree.csv", newline="", encoding="utf-8") as f:
        assert len(list(csv.reader(f))) - 1 == len(want)      # the export keeps every row
    view.resize(1000, 900)
    qtbot.wait(20)
    view.show_tree(tree)
    assert max(d for *_, d, _ in view.nodes) == 3 and "deep shown" not in \
        view.heading.plain_text()
