"""The modern recurrences (minGRU, minLSTM, IndRNN, LRU, orthogonal RNN) against autograd
on their own equations unrolled by hand (gradviz.engine.model.reference), at float64:
outputs, every parameter's gradient and the total ‖∂L/∂h_t‖ of every layer, direction and
step; and, for the diagonal cells, the gradient through time as the exact product of their
per-step factors."""
import math

import pytest
import torch

from gradviz.engine.model.network import Network
from gradviz.registry import MODERN_CELLS

from reference import unrolled

MODERN = list(MODERN_CELLS)
DIAGONAL = [name for name, spec in MODERN_CELLS.items() if spec.diagonal]
F64 = torch.float64


def _net(cell, layers, bidirectional, seed=3, I=3, H=6):
    torch.manual_seed(seed)
    net = Network(cell, I, H, output_size=1, layers=layers, bidirectional=bidirectional,
                  dtype=F64)
    if cell == "indrnn":
        # u across 0 … 1.2 and biases that leave some units inactive: both sides of the ReLU.
        with torch.no_grad():
            for k in range(layers):
                for d in range(net.directions):
                    net.layer_params(k, d)["weight_hh"].uniform_(-0.2, 1.2)
    return net


@pytest.mark.parametrize("tbptt", [0, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", MODERN)
def test_matches_autograd_on_the_equations(cell, layers, bidirectional, tbptt):
    net = _net(cell, layers, bidirectional)
    T, B = 8, 3
    g = torch.Generator().manual_seed(2)
    x = torch.randn(T, B, 3, generator=g, dtype=F64)
    w_out = torch.randn(T, B, 6 * net.directions, generator=g, dtype=F64)

    fwd = net.run(x)
    grads = net.backward(fwd, w_out, tbptt)
    ours = {}
    for name, p in net.recurrent_parameters():
        assert p.grad is not None, name
        ours[name] = p.grad.clone()
        p.grad = None
    ref_out, hs, _ = unrolled(net, x, tbptt)
    (ref_out * w_out).sum().backward()

    assert (fwd.output - ref_out).abs().max() < 1e-12
    for name, p in net.recurrent_parameters():
        scale = p.grad.abs().max().clamp_min(1.0)
        assert (ours[name] - p.grad).abs().max() / scale < 1e-10, name
    for k in range(layers):
        for d in range(net.directions):
            order = range(T) if d == 0 else range(T - 1, -1, -1)
            ref = torch.stack([hs[k][d][t].grad.norm() for t in order])
            got = grads[k][d].dh.norm(dim=(1, 2))
            assert torch.allclose(got, ref, rtol=1e-10, atol=1e-14), (k, d)


@pytest.mark.parametrize("cell", MODERN)
def test_every_modern_cell_is_its_reference_equations(cell):
    """Outputs and the captured gate means of one layer, step by step."""
    net = _net(cell, 1, False, seed=4, H=6)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 4, 3, generator=g, dtype=F64)
    cache = net.run(x, stats_rows=4).caches[0][0]
    p = {n: w.detach() for n, w in net.layer_params(0, 0).items()}
    h = torch.zeros(4, 6, dtype=F64)
    for t in range(6):
        step = net.cell.reference_step(p, x[t], h, None)
        torch.testing.assert_close(cache.h[t], step.h, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(cache.stats.mean[t], step.gates.mean(0), rtol=1e-12, atol=1e-13)
        h = step.h


@pytest.mark.parametrize("cell", DIAGONAL)
def test_last_step_gradient_is_the_product_of_the_captured_factors(cell):
    """With a loss on the last step only, ‖∂L/∂h_t‖ = ‖dh_{T-1} ⊙ ∏_{s>t} a_s‖, a_s the
    factor ∂h_s/∂h_{s-1} the capture holds (one batch row: the captured batch means are the
    factors themselves)."""
    from gradviz.engine.training.train import timestep_arrays
    net = _net(cell, 1, False, seed=6, H=8)
    T, B = 40, 1
    x = torch.randn(T, B, 3, generator=torch.Generator().manual_seed(7), dtype=F64)
    fwd = net.run(x, stats_rows=B)
    dout = torch.zeros(T, B, 8, dtype=F64)
    dout[-1] = torch.randn(B, 8, generator=torch.Generator().manual_seed(8), dtype=F64)
    grads = net.backward(fwd, dout)
    cap = timestep_arrays(net, fwd, grads, probe=0, dtype=F64, rows=B)
    gates = cap["gates"][0, 0]                       # (G, T, H)
    names = net.cell.gate_names
    if cell == "mingru":
        factor = 1 - gates[names.index("z")]
    elif cell == "minlstm":
        factor = gates[names.index("f")]
    elif cell == "indrnn":
        factor = gates[names.index("j")]
    else:   # the LRU: |λ| of each complex unit, for its real and imaginary parts alike
        factor = gates[names.index("a")]
        lam = torch.exp(-torch.exp(net.layer_params(0, 0)["nu_log"].detach())).repeat(2)
        torch.testing.assert_close(torch.as_tensor(factor), lam.expand(T, 8), rtol=1e-14, atol=0)
    factor = torch.as_tensor(factor)
    last = dout[-1, 0]
    for t in range(T):
        product = torch.prod(factor[t + 1:], 0) if t < T - 1 else torch.ones(8, dtype=F64)
        expected = float(torch.linalg.vector_norm(last * product))
        assert math.isclose(cap["dh_norm"][0, 0, t], expected, rel_tol=1e-10, abs_tol=1e-300), t
    # and the cell's own factor is what the capture showed
    torch.testing.assert_close(net.cell.factor(fwd.caches[0][0])[:, 0], factor,
                               rtol=1e-12, atol=1e-15)


def test_orthogonal_rnn_stays_orthogonal_while_it_trains():
    from gradviz.config import RunConfig
    from gradviz.engine.training.train import Trainer
    tr = Trainer(RunConfig(cell="rnn-orthogonal", task="adding", seq_len=20, hidden=16,
                           batch_size=8, lr=0.05, steps=5))
    w0 = tr.net.weight_hh_l0.detach().clone()
    for _ in range(5):
        cap = tr.step()
    w = tr.net.weight_hh_l0.detach().double()
    assert not torch.allclose(w, w0.double())                 # it trained …
    assert torch.allclose(w @ w.t(), torch.eye(16, dtype=F64), atol=1e-5)   # … and stayed
    assert cap.rho_names == ("W_hh",) and abs(float(cap.rho.max()) - 1) < 1e-4


@pytest.mark.parametrize("cell", MODERN)
def test_each_modern_cell_trains_and_captures(cell):
    from gradviz.config import RunConfig
    from gradviz.engine.training.train import Trainer
    tr = Trainer(RunConfig(cell=cell, task="copy", seq_len=12, hidden=8, batch_size=4,
                           layers=2, bidirectional=True, steps=3))
    caps = [tr.step() for _ in range(3)]
    cap = caps[-1]
    # (the backward direction's states before the copy's output window get no gradient)
    assert cap.dh_norm.shape == (2, 2, 12) and (cap.dh_norm[:, 0] > 0).all()
    assert cap.loss < 10 and not cap.nonfinite
    assert cap.rho_names == MODERN_CELLS[cell].rho_names and cap.rho.shape == (2, 2, 1)
    assert cap.gates.shape[2] == len(MODERN_CELLS[cell].gates)


def test_cell_initialisations_follow_the_settings():
    from gradviz.config import ConfigError, RunConfig
    from gradviz.engine.training.train import Trainer
    tr = Trainer(RunConfig(cell="lru", hidden=64, lru_r_min=0.5, lru_r_max=0.6,
                           lru_max_phase=0.1))
    lam = torch.exp(-torch.exp(tr.net.nu_log_l0.detach().double()))
    assert lam.min() >= 0.5 - 1e-6 and lam.max() <= 0.6 + 1e-6
    assert torch.exp(tr.net.theta_log_l0.detach()).max() <= 0.1 + 1e-6
    u = Trainer(RunConfig(cell="indrnn", seq_len=100)).net.weight_hh_l0.detach()
    assert 0 <= u.min() and u.max() <= 2 ** (1 / 100) and u.max() > 0.9
    u = Trainer(RunConfig(cell="indrnn", indrnn_u_max=0.5)).net.weight_hh_l0.detach()
    assert u.max() <= 0.5
    with pytest.raises(ConfigError, match="hidden: the LRU needs an even number"):
        RunConfig(cell="lru", hidden=7).validate()
    # r_min above r_max: the ring between the two, not an error
    tr = Trainer(RunConfig(cell="lru", hidden=64, lru_r_min=0.6, lru_r_max=0.5))
    lam = torch.exp(-torch.exp(tr.net.nu_log_l0.detach().double()))
    assert lam.min() >= 0.5 - 1e-6 and lam.max() <= 0.6 + 1e-6


@pytest.mark.parametrize("u_max, limit", [(None, 2 ** (1 / 20)), (0.5, 2 ** (1 / 20)),
                                           (1.5, 1.5)])
def test_training_keeps_indrnns_u_within_its_limit(u_max, limit):
    """Li et al. 2018 clip |u| after every step: at max(2^(1/T), the initial max |u|).
    SGD at a learning rate that throws u far past it on the first step."""
    from gradviz.api.modern import Recurrent
    from gradviz.config import RunConfig
    from gradviz.engine.training.train import Trainer
    tr = Trainer(RunConfig(cell="indrnn", seq_len=20, layers=2, bidirectional=True,
                           optimizer="sgd", lr=50.0, indrnn_u_max=u_max, hidden=8))
    for _ in range(3):
        tr.step(full=False)
    us = [p.detach() for n, p in tr.net.named_parameters() if n.startswith("weight_hh")]
    assert len(us) == 4
    peak = max(float(u.abs().max()) for u in us)
    assert peak == pytest.approx(limit, rel=1e-6)      # reached, and not passed
    layer = Recurrent("indrnn", 2, 4, seq_len=20)
    with torch.no_grad():
        layer.weight_hh_l0.fill_(-3.0)
    layer.constrain()
    assert torch.all(layer.weight_hh_l0 == -torch.tensor(2 ** (1 / 20), dtype=torch.float32))
    lru = Recurrent("lru", 2, 4)
    before = [p.detach().clone() for p in lru.parameters()]
    lru.constrain()                                    # nothing to keep for other cells
    assert all(torch.equal(a, b) for a, b in zip(before, lru.parameters()))


@pytest.mark.slow
@pytest.mark.parametrize("fields", [
    dict(cell="rnn-orthogonal", task="copy"),
    dict(cell="lru", task="series", stateful=True),
    dict(cell="minlstm", task="adding", layers=2, bidirectional=True),
    dict(cell="indrnn", task="adding"), dict(cell="mingru", task="recall")])
def test_a_modern_run_saved_and_resumed_equals_one_that_never_stopped(tmp_path, fields):
    """The orthogonal parametrisation's base and the cells' own initialisations come back
    from the configuration, so the run continues bit for bit."""
    from gradviz.config import RunConfig
    from gradviz.engine.training.session import Session
    from test_resume import assert_same_run
    config = RunConfig(seq_len=10, hidden=6, batch_size=5, steps=20, seed=3, **fields)
    whole = Session(config)
    whole.run(20)
    first = Session(config)
    first.run(10)
    first.save(tmp_path / "run")
    resumed = Session.resume(tmp_path / "run")
    resumed.run(10)
    assert_same_run(whole, resumed)


@pytest.mark.slow
def test_the_gradient_at_initialisation_lesson_holds():
    """modern-at-init: one step of each of five cells (the other modern lessons train for a
    minute or more; benchmarks/experiments.py checks them)."""
    from gradviz.experiments import load_experiment
    from gradviz.experiments.lessons import check_lesson
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcome = check_lesson(load_experiment("modern-at-init"))
    finally:
        torch.set_num_threads(before)
    assert outcome.held, outcome.line()


@pytest.mark.slow
def test_the_indrnn_adding_lesson_holds():
    """indrnn-adding: IndRNN leaves the adding baseline at T = 500 where the tanh RNN stays
    on it (a minute or more of training on a 2-core machine)."""
    from gradviz.experiments import load_experiment
    from gradviz.experiments.lessons import check_lesson
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcome = check_lesson(load_experiment("indrnn-adding"))
    finally:
        torch.set_num_threads(before)
    assert outcome.held, outcome.line()
