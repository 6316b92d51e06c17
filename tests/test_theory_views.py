"""The "Why" views draw what the engine computed: spectrum, decay, saturation, the live
cell diagram (rendered to an image for each of the six cells), the cliff lab, and the
bounds over the gradient-through-time plot; each checked against numbers computed here."""
import re

import numpy as np
import pytest
from PyQt6 import QtCore, QtGui

from gradviz.config import RunConfig
from gradviz.engine.analysis import cliff
from gradviz.engine.runs.history import History
from gradviz.engine.training.train import Trainer
from gradviz.ui.views import make_views
from gradviz.ui.views.celldiagram import CellDiagramView
from gradviz.ui.views.cliffview import CliffView
from gradviz.ui.views.decay import per_step_text

CELLS = ["rnn-tanh", "rnn-relu", "lstm", "lstm-peephole", "lstm-coupled", "gru"]
WHY = ["spectrum", "decay", "saturation", "cell", "cliff"]
BOXES = {"rnn-tanh": {"h"}, "rnn-relu": {"h"}, "gru": {"r", "z", "n"},
         **{c: {"i", "f", "g", "o", "tanh_c"} for c in CELLS if c.startswith("lstm")}}


def trained(cell, steps=6, **kw):
    t = Trainer(RunConfig(cell=cell, hidden=kw.pop("hidden", 6), seq_len=kw.pop("seq_len", 12),
                          batch_size=8, **kw))
    history = History()
    for _ in range(steps):
        history.append(t.step())
    return history


@pytest.fixture
def why(qtbot):
    views = make_views()
    for key, view in views.items():
        qtbot.addWidget(view)
        view.resize(800, 520)
    return {k: views[k] for k in WHY}


def test_the_why_views_keep_the_view_contract(why, tmp_path):
    history = trained("lstm")
    for key, view in why.items():
        assert view.page == "Why" and view.title
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", view.help_text) if s]
        assert 3 <= len(sentences) <= 6, (key, len(sentences))
        view.set_data(history, history.latest)
        header, rows = view.csv_table()
        assert rows.shape[1] == len(header) and len(rows) > 0, key
        for suffix in (".png", ".svg", ".csv"):
            assert view.export(tmp_path / f"{key}{suffix}").stat().st_size > 100


def test_spectrum_curves_are_the_history_rows(why):
    history = trained("gru", layers=2)
    view = why["spectrum"]
    view.set_data(history, history.latest)
    view.selector.setCurrentIndex(1)                        # layer 2
    for j in range(3):
        np.testing.assert_array_equal(view.rho_curves[j].yData, history.rho[:, 1, 0, j])
        np.testing.assert_array_equal(view.sigma_curves[j].yData, history.sigma_max[:, 1, 0, j])
    assert view.lines[4.0].isVisible()                      # r, z: σ gates, 1/γ = 4
    assert "W_hn (γ = 1)" in view.key_item.labels and "W_hr (γ = 0.25)" in view.key_item.labels
    tanh = trained("rnn-tanh")
    view.set_data(tanh, tanh.latest)
    assert not view.lines[4.0].isVisible() and view.key_item.labels == ["W_hh (γ = 1)"]


@pytest.mark.parametrize("direction", [0, 1])
def test_decay_curve_and_its_per_step_factor(why, direction):
    # A loss at every step, so that both directions have gradient at every t.
    history = trained("rnn-tanh", bidirectional=True, task="reber")
    view = why["decay"]
    view.set_data(history, history.latest)
    view.selector.setCurrentIndex(direction)
    dh = history.dh_norm[-1, 0, direction].astype(np.float64)
    # In processing order, the gradient at each step over the one after it.
    seq = dh if direction == 0 else dh[::-1]
    ratio = seq[:-1] / seq[1:]
    expected_mean = float(np.exp(np.mean(np.log(ratio))))
    assert view.mean == pytest.approx(expected_mean, rel=1e-9)
    assert per_step_text(expected_mean) in view.heading.plain_text()
    drawn = np.sort(view.curve.yData)
    np.testing.assert_allclose(drawn, np.sort(ratio), rtol=1e-9)
    assert per_step_text(0.8312) == "×0.831 per step"


def test_saturation_curves_equal_the_per_step_fractions_and_the_scatter_the_units(why):
    t = Trainer(RunConfig(cell="lstm", hidden=7, seq_len=10, forget_bias=3.0))
    caps = [t.step() for _ in range(5)]
    history = History()
    for cap in caps:
        history.append(cap)
    view = why["saturation"]
    view.set_data(history, history.latest)
    for g in range(4):
        expected_low = [c.sat_low[0, 0, g].astype(np.float64).mean() for c in caps]
        expected_high = [c.sat_high[0, 0, g].astype(np.float64).mean() for c in caps]
        np.testing.assert_allclose(view.low_curves[g].yData, expected_low, rtol=1e-6)
        np.testing.assert_allclose(view.high_curves[g].yData, expected_high, rtol=1e-6)
    view.gate_combo.setCurrentIndex(1)                      # f, pushed high by the bias
    f = caps[-1].gates[0, 0, 1]                            # (T, H)
    x, y = view.scatter.getData()
    np.testing.assert_allclose(x, [(f[:, u] < 0.1).mean() for u in range(7)])
    np.testing.assert_allclose(y, [(f[:, u] > 0.9).mean() for u in range(7)])
    assert y.max() > 0


def empty(item) -> bool:
    return item.yData is None or len(item.yData) == 0


def rendered(view: CellDiagramView) -> QtGui.QImage:
    view.canvas_widget.resize(900, 560)
    return view.canvas_widget.grab().toImage()


@pytest.mark.parametrize("cell", CELLS)
def test_the_cell_diagram_draws_every_gate_with_the_captures_numbers(qtbot, cell):
    history = trained(cell, steps=2)
    cap = history.latest
    view = CellDiagramView()
    qtbot.addWidget(view)
    view.set_data(history, cap)
    for t, unit in ((0, None), (7, None), (11, 3)):
        view.set_timestep(t)
        view.set_unit(unit)
        image = rendered(view)
        boxes = {d.name: d for d in view.canvas_widget.drawn if d.kind == "box"}
        assert set(boxes) == BOXES[cell]
        for g, name in enumerate(cap.gate_names):
            values = cap.gates[0, 0, g, t].astype(np.float64)
            value = values.mean() if unit is None else values[unit]
            box = boxes[name]
            assert box.text.splitlines()[-1] == f"{value:.3f}"
            # Inside the box's border, the pixel is the box's fill, not the background.
            inner = box.rect.topLeft() + QtCore.QPointF(3, box.rect.height() / 2)
            pixel = image.pixelColor(int(inner.x()), int(inner.y()))
            assert pixel.name() == box.fill.name() and pixel.name() != "#ffffff", name
        # Each path's number is the gradient along it: the norm over units of the capture's.
        for drawn in (d for d in view.canvas_widget.drawn if d.kind == "path"):
            name, offset = drawn.name[:-2], int(drawn.name[-2:])
            s = t + offset
            if s >= cap.seq_len:
                continue
            per_unit = cap.paths[0, 0, cap.path_names.index(name), s].astype(np.float64)
            expected = np.sqrt((per_unit ** 2).sum()) if unit is None else per_unit[unit]
            assert drawn.text == ("—" if not np.isfinite(expected) else f"{expected:.2e}")
    links = {d.name for d in view.canvas_widget.drawn if d.kind == "link"}
    assert ("peephole" in links) == (cell == "lstm-peephole")
    assert ("coupled: i = 1 − f" in links) == (cell == "lstm-coupled")
    if cell == "lstm-coupled":
        assert boxes["i"].text.startswith("1−f")
    # Hovering a box names its equation.
    first = boxes[cap.gate_names[0]]
    assert view.canvas_widget.item_at(first.rect.center()).tip.startswith(
        f"{cap.gate_names[0]}_t =")


def test_the_lstm_belt_share_is_the_split_of_the_previous_cell_gradient(qtbot):
    history = trained("lstm", steps=1, forget_bias=2.0, task="adding")
    cap = history.latest
    view = CellDiagramView()
    qtbot.addWidget(view)
    view.set_data(history, cap)
    view.set_timestep(6)
    rendered(view)
    q = cap.path_names.index
    belt = np.sqrt((cap.paths[0, 0, q("belt"), 6].astype(np.float64) ** 2).sum())
    via_h = np.sqrt((cap.paths[0, 0, q("c_h"), 5].astype(np.float64) ** 2).sum())
    share = 100 * belt / (belt + via_h)
    assert view.canvas_widget.share.startswith(f"∂L/∂cₜ₋₁: {share:.0f}% along the belt")


def test_the_cliff_lab_draws_both_descents_from_the_clicked_point(qtbot):
    view = CliffView()
    qtbot.addWidget(view)
    view.start_at(4.5, -2.5)
    lr, clip = view.lr.value(), view.threshold.value()
    plain = cliff.descend(4.5, -2.5, lr, view.steps.value())
    clipped = cliff.descend(4.5, -2.5, lr, view.steps.value(), clip=clip)
    for item, expected in zip(view.paths, (plain, clipped)):
        np.testing.assert_array_equal(item.xData, expected.points[:, 0])
        np.testing.assert_array_equal(item.yData, expected.points[:, 1])
    steps = np.linalg.norm(np.diff(clipped.points, axis=0), axis=1)
    assert steps.max() <= lr * clip + 1e-12
    np.testing.assert_allclose(view.surface, cliff.loss_surface(view.ws, view.bs))
    header, rows = view.csv_table()
    assert header[:4] == ["step", "plain w", "plain b", "plain loss"]
    np.testing.assert_array_equal(rows[:len(plain.points), 1:3], plain.points)


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu"])
def test_gradtime_draws_the_rnn_bound_over_the_measured_curve(qtbot, cell):
    history = trained(cell, task="adding", init="normal", rho=1.1, seq_len=20)
    cap = history.latest
    view = make_views()["gradtime"]
    qtbot.addWidget(view)
    view.set_data(history, cap)
    dh = cap.dh_norm[0, 0].astype(np.float64)
    gs = float(cap.sigma_max[0, 0, 0])                      # γ = 1 for tanh and ReLU
    expected = dh[-1] * gs ** (len(dh) - 1 - np.arange(len(dh)))
    np.testing.assert_allclose(view.bounds.curves["h"].yData, expected, rtol=1e-9)
    assert np.all(dh <= view.bounds.curves["h"].yData * (1 + 1e-5))
    assert view.bounds.key.labels == [f"bound, γσ_max = {gs:.3g} (step {cap.step})"]
    view.bounds.toggle.setChecked(False)
    assert empty(view.bounds.curves["h"]) and view.bounds.key.labels == []


def test_gradtime_draws_the_forget_gate_product_beside_dc(qtbot):
    history = trained("lstm", task="adding", forget_bias=1.0)
    cap = history.latest
    view = make_views()["gradtime"]
    qtbot.addWidget(view)
    view.set_data(history, cap)
    f = cap.gates[0, 0, 1].astype(np.float64).mean(-1)
    dc = cap.dc_norm[0, 0].astype(np.float64)
    expected = [dc[-1] * np.prod(f[t + 1:]) for t in range(len(f))]
    np.testing.assert_allclose(view.bounds.curves["c"].yData, expected, rtol=1e-9)
    assert empty(view.bounds.curves["h"])
