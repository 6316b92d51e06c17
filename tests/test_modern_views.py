"""The Why tab for the modern cells: each cell's picture draws its gates with the capture's
numbers, the theory overlay on the gradient through time is the exact product of the
diagonal cells' captured factors, the decay view draws the factors, and the spectrum names
what replaces W_hh."""
import numpy as np
import pytest

from gradviz.engine.analysis.factors import factor_product, step_factors
from gradviz.registry import MODERN_CELLS
from gradviz.ui.views.bounds import overlay_values
from gradviz.ui.views.cellpictures import cell_of, picture
from gradviz.ui.views.celldiagram import CellDiagramView
from gradviz.ui.views.decay import DecayView
from gradviz.ui.views.spectrum import SpectrumView

from gradviz.config import RunConfig
from gradviz.engine.runs.history import History
from gradviz.engine.training.train import Trainer

from test_theory_views import rendered


def trained(cell, steps=6, **kw):
    fields = dict(cell=cell, hidden=6, seq_len=12, batch_size=8)
    fields.update(kw)
    t = Trainer(RunConfig(**fields))
    history = History()
    for _ in range(steps):
        history.append(t.step())
    return history

DIAGONAL = [n for n, s in MODERN_CELLS.items() if s.diagonal]


@pytest.mark.parametrize("cell", list(MODERN_CELLS))
def test_the_cell_diagram_draws_each_modern_cell(qtbot, cell):
    history = trained(cell, steps=2)
    cap = history.latest
    assert cell_of(cap) == cell
    view = CellDiagramView()
    qtbot.addWidget(view)
    view.set_data(history, cap)
    view.set_timestep(5)
    rendered(view)
    boxes = {d.name: d for d in view.canvas_widget.drawn if d.kind == "box"}
    assert set(cap.gate_names) <= set(boxes)
    for g, name in enumerate(cap.gate_names):
        value = cap.gates[0, 0, g, 5].astype(np.float64).mean()
        assert boxes[name].text.splitlines()[-1] == f"{value:.3f}"
    paths = {d.name[:-2] for d in view.canvas_widget.drawn if d.kind == "path"}
    assert {"dh", "w"} <= paths
    assert picture(cell).boxes


@pytest.mark.parametrize("cell", DIAGONAL)
def test_the_overlay_is_the_product_of_the_captured_factors(cell):
    """One sequence and a loss at the last step (the adding problem): the overlay is the
    measured ‖∂L/∂h_t‖ itself, to the rounding of the capture's float32 arrays (the
    float64 check to 1e-10 is tests/test_modern_cells.py's)."""
    history = trained(cell, steps=1, task="adding", seq_len=20, batch_size=1, dtype="float64")
    cap = history.latest
    name, label, values = overlay_values(cap, 0, 0)
    assert name == "h" and "∏" in label and "alone" not in label
    measured = cap.dh_norm[0, 0].astype(np.float64)
    keep = measured > 1e-280
    np.testing.assert_allclose(values[keep], measured[keep], rtol=2e-5)
    a = step_factors(cap.gate_names, cap.gates[0, 0])
    assert np.allclose(factor_product(np.abs(a[0]) * 0 + 1, a)[0] ** 2,
                       (np.prod(a[1:], 0) ** 2).sum())


@pytest.mark.parametrize("cell", ["indrnn", "mingru"])
def test_where_gradient_enters_earlier_the_overlay_says_it_is_the_carried_part_alone(cell):
    """A lower layer gets gradient from the layer above at every t: the product of its
    factors from the last step is then only the part carried from there, below the
    measured curve, and its key says so; the top layer's is the measured curve."""
    history = trained(cell, steps=1, task="adding", seq_len=20, batch_size=1, layers=2,
                      dtype="float64")
    cap = history.latest
    _, label, values = overlay_values(cap, 0, 0)
    assert label.startswith("carried from T−1 alone")
    measured = cap.dh_norm[0, 0].astype(np.float64)
    assert values[0] < 0.9 * measured[0]        # what the layer above sends adds up
    _, top, _ = overlay_values(cap, 1, 0)
    assert "alone" not in top


def test_the_decay_view_draws_the_factors_and_the_spectrum_names_the_replacement(qtbot):
    history = trained("lru", steps=3)
    decay, spectrum = DecayView(), SpectrumView()
    for view in (decay, spectrum):
        qtbot.addWidget(view)
        view.set_data(history, history.latest)
    mean = decay.factor_curves[0].yData
    lam = history.latest.gates[0, 0, history.latest.gate_names.index("a")].mean(-1)
    np.testing.assert_allclose(mean, lam[1:], rtol=1e-6)
    assert "|λ|" in decay.heading.plain_text()
    assert "diag(|λ|) in place of W_hh" in spectrum.heading.plain_text()


def test_the_orthogonal_rnn_captures_the_singular_values_of_its_jacobian():
    """diag(1 − h_t²)·W_hh's singular values, batch means of the largest, smallest and mean,
    against torch.linalg.svdvals on the same forward pass at float64 (2 layers, both
    directions), and in the capture (float32, time order)."""
    import torch
    from gradviz.engine.training.timesteps import orthogonal_singular_values

    B = 5
    t = Trainer(RunConfig(cell="rnn-orthogonal", hidden=6, seq_len=9, batch_size=B, layers=2,
                          bidirectional=True, dtype="float64", task="adding"))
    data = torch.Generator()
    data.set_state(t._data_gen.get_state())
    x = torch.cat([t.task.batch(B, data).x.double(), t.probe], 1)
    fwd = t.net.run(x)
    cap = t.step()
    assert cap.jacobian_sv.shape == (2, 2, 3, 9)
    for k in range(2):
        for d in range(2):
            dphi = fwd.caches[k][d].dphi
            w = t.net.layer_params(k, d)["weight_hh"].detach()
            assert torch.allclose(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-12)
            s = torch.linalg.svdvals(dphi[:, :B, :, None] * w)       # (T, B, H)
            want = torch.stack([s.amax(-1).mean(1), s.amin(-1).mean(1), s.mean((1, 2))])
            got = orthogonal_singular_values(dphi, B)
            assert torch.allclose(got, want, rtol=0, atol=1e-12)
            in_time = want.flip(-1) if d == 1 else want
            np.testing.assert_allclose(cap.jacobian_sv[k, d], in_time.numpy(), rtol=1e-5)
            assert np.all(cap.jacobian_sv[k, d, 1] <= cap.jacobian_sv[k, d, 2])
            assert np.all(cap.jacobian_sv[k, d, 2] <= cap.jacobian_sv[k, d, 0])
    assert Trainer(RunConfig(cell="rnn-tanh", hidden=6, seq_len=9)).step().jacobian_sv is None


def test_the_decay_view_draws_the_orthogonal_rnns_singular_values(qtbot):
    history = trained("rnn-orthogonal", steps=3)
    decay = DecayView()
    qtbot.addWidget(decay)
    decay.set_data(history, history.latest)
    big, small, mean = history.latest.jacobian_sv[0, 0]
    np.testing.assert_allclose(decay.factor_curves[0].yData, mean[1:], rtol=1e-6)
    np.testing.assert_allclose(decay.factor_curves[1].yData, small[1:], rtol=1e-6)
    np.testing.assert_allclose(decay.factor_curves[2].yData, big[1:], rtol=1e-6)
    assert "σ of diag(1 − h²)·W_hh" in decay.heading.plain_text()
    plain = trained("rnn-tanh", steps=1)
    decay.set_data(plain, plain.latest)
    assert decay.factor_curves[0].yData is None or len(decay.factor_curves[0].yData) == 0


def test_a_saved_orthogonal_run_keeps_the_singular_values(tmp_path):
    from gradviz.engine.runs.runfile import open_run
    from gradviz.engine.training.session import Session

    session = Session(RunConfig(cell="rnn-orthogonal", hidden=6, seq_len=9, batch_size=4))
    session.run(3)
    session.save(tmp_path / "run")
    run = open_run(tmp_path / "run")
    np.testing.assert_array_equal(run.history.latest.jacobian_sv,
                                  session.history.latest.jacobian_sv)
    assert all(k.jacobian_sv is not None for k in run.keyframes.captures)
