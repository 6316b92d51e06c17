"""The theory views' numbers, against independent computations: ρ and σ_max against
torch.linalg on the weights each step used, the chain-rule bounds against the captured
gradients, the gradient paths against autograd, the cliff's BPTT against autograd, and the
history's saturation and spectrum rows against the captures they came from."""
import numpy as np
import pytest
import torch

from reference import unrolled

from gradviz.config import RunConfig
from gradviz.engine.analysis import bounds, cliff
from gradviz.engine.runs.history import History
from gradviz.engine.runs.keyframes import Keyframes
from gradviz.engine.model.network import Network
from gradviz.engine.analysis.paths import path_names, path_norms
from gradviz.engine.runs.runfile import load_run, save_run
from gradviz.engine.runs.runfile import open_run
from gradviz.engine.analysis.spectrum import KRYLOV as KRYLOV_STEPS
from gradviz.engine.analysis.spectrum import (EIG_COST, MAX_EVERY, RHO_SHARE, SpectrumTracker,
                                              lanczos_top, rho_interval, step_multiply_adds)
from gradviz.engine.training.train import Trainer

CELLS = ["rnn-tanh", "rnn-relu", "lstm", "lstm-peephole", "lstm-coupled", "gru"]
# Stated tolerance of the tracked ρ and σ_max (gradviz.engine.analysis.spectrum): relative.
SPECTRUM_RTOL = 1e-5


def blocks_now(trainer):
    net, H = trainer.net, trainer.net.hidden
    return np.stack([[net.layer_params(k, d)["weight_hh"].detach().double().view(-1, H, H).numpy()
                      for d in range(net.directions)] for k in range(net.layers)])


# -- spectrum -----------------------------------------------------------------------------
@pytest.mark.parametrize("cell,hidden", [(c, 10) for c in CELLS] + [("lstm", 40), ("lstm", 80), ("gru", 80)])
def test_rho_and_sigma_equal_eigvals_and_svdvals_of_the_weights_each_step_used(cell, hidden):
    t = Trainer(RunConfig(cell=cell, hidden=hidden, seq_len=6, batch_size=4, layers=2,
                          bidirectional=cell == "gru", optimizer="adam", lr=0.02))
    weights, decomposed = {}, set()
    blocks = t.net.layers * t.net.directions * len(t.net.cell.spec.rho_names)
    # These steps are tiny beside a decomposition, which would wait MAX_EVERY steps; the
    # tracker is told they are larger, so that it decomposes every 5 steps here.
    assert rho_interval(hidden, blocks, t.spectrum.step_macs) == MAX_EVERY
    t.spectrum.step_macs = EIG_COST * blocks * hidden ** 3 / (RHO_SHARE * 4.5)
    every = rho_interval(hidden, blocks, t.spectrum.step_macs)
    assert every == 5
    for _ in range(2 * every + 3):
        w = torch.from_numpy(blocks_now(t))                  # (L, D, R, H, H), before the step
        weights[t.step_index] = w
        cap = t.step()
        # ρ is of the weights of step rho_step: this step's, or those of the last full
        # decomposition, at most rho_interval - 1 steps back.
        assert cap.step - every < cap.rho_step <= cap.step
        decomposed.add(cap.rho_step)
        np.testing.assert_allclose(
            cap.rho, torch.linalg.eigvals(weights[cap.rho_step]).abs().amax(-1).numpy(),
            rtol=SPECTRUM_RTOL)
        np.testing.assert_allclose(cap.sigma_max, torch.linalg.svdvals(w)[..., 0].numpy(),
                                   rtol=SPECTRUM_RTOL)
        assert cap.rho.dtype == cap.sigma_max.dtype == np.float64
    assert decomposed == set(range(0, 2 * every + 3, every))
    # σ_max came by Lanczos from the previous step's vector, not by decomposing: only the
    # first step, which has nothing to start from, was decomposed.
    assert t.spectrum.fallbacks["sigma"] == cap.sigma_max.size


def test_rho_is_decomposed_as_often_as_it_costs_a_fiftieth_of_the_training():
    for T, H, G, layers in [(50, 128, 4, 1), (200, 128, 4, 1), (1000, 128, 4, 1), (50, 32, 4, 1),
                            (200, 32, 3, 2), (1000, 16, 1, 1), (10, 8, 4, 1)]:
        macs = step_multiply_adds(T, 33, H, [2] + [H] * (layers - 1), G)
        every = rho_interval(H, G * layers, macs)
        decompose = EIG_COST * G * layers * H ** 3
        assert 1 <= every <= MAX_EVERY
        # The fewest steps whose training is at least 1/RHO_SHARE times a decomposition.
        if 1 < every < MAX_EVERY:
            assert every * macs * RHO_SHARE >= decompose > (every - 1) * macs * RHO_SHARE
    # Longer sequences, more work per step: ρ is decomposed more often.
    assert (rho_interval(128, 4, step_multiply_adds(1000, 33, 128, [2], 4))
            < rho_interval(128, 4, step_multiply_adds(200, 33, 128, [2], 4))
            < rho_interval(128, 4, step_multiply_adds(50, 33, 128, [2], 4)) < MAX_EVERY)
    # A small block in a long step: every step; no step size known: every MAX_EVERY.
    assert rho_interval(8, 1, step_multiply_adds(1000, 33, 8, [2], 1)) == 1
    assert rho_interval(8, 1) == MAX_EVERY
    # The diagonal cells' steps have no recurrent product.
    assert step_multiply_adds(10, 4, 8, [3], 2, recurrent=False) == 10 * 4 * 2 * 8 * 6


def test_lanczos_finds_the_largest_singular_value_of_hard_blocks():
    g = np.random.default_rng(5)
    H = 40
    q, _ = np.linalg.qr(g.standard_normal((H, H)))
    u, _ = np.linalg.qr(g.standard_normal((H, H)))
    close = np.linspace(1.0, 0.1, H)
    close[1] = 1.0 - 1e-9                               # a top pair a hair apart
    blocks = np.stack([
        q,                                              # orthogonal: every σ is 1
        u @ np.diag(close) @ q.T,
        g.standard_normal((H, H)) / H ** 0.5,           # random: a crowded top
        np.diag(np.r_[3.0, np.zeros(H - 1)]),           # rank one
    ])
    start = g.standard_normal((len(blocks), H))
    sigma, x, done = lanczos_top(blocks, start, steps=H)
    exact = np.linalg.svd(blocks, compute_uv=False)[:, 0]
    assert done.all()
    np.testing.assert_allclose(sigma, exact, rtol=1e-7)
    # The Ritz vectors are unit vectors that W stretches by σ_max.
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(blocks @ x[..., None], axis=(1, 2)), exact,
                               rtol=1e-4)
    # Too few vectors from a random start: not converged, and said so; the value is an
    # underestimate (a Ritz value of WᵀW lies inside its spectrum).
    sigma, _, done = lanczos_top(blocks[2:3], start[2:3], steps=2)
    assert not done[0] and sigma[0] <= exact[2] * (1 + 1e-12)


def test_a_block_lanczos_does_not_settle_is_decomposed_in_full():
    g = torch.Generator().manual_seed(0)
    H = 80
    w = torch.randn(2, H, H, generator=g, dtype=torch.float64) / H ** 0.5
    tracker = SpectrumTracker()
    tracker.update(w, 0)
    assert tracker.fallbacks == {"rho": 2, "sigma": 2}     # the first step: all in full
    # A new, unrelated matrix each step: the old vector is no start for it, and Lanczos
    # may not settle within KRYLOV vectors; either way the answer is exact.
    for step in range(1, 4):
        w = torch.randn(2, H, H, generator=g, dtype=torch.float64) / H ** 0.5
        rho, sigma = tracker.update(w, step)
        np.testing.assert_allclose(sigma, torch.linalg.svdvals(w)[:, 0], rtol=1e-6)
        assert tracker.rho_step == 0 and rho.shape == (2,)
    rho, _ = tracker.update(w, MAX_EVERY)
    np.testing.assert_allclose(rho, torch.linalg.eigvals(w).abs().amax(-1), rtol=1e-10)
    assert tracker.rho_step == MAX_EVERY


def test_rho_and_sigma_of_float32_weights_are_float64_and_survive_a_file(tmp_path):
    t = Trainer(RunConfig(cell="lstm", hidden=6, seq_len=4))
    history = History()
    for _ in range(3):
        history.append(t.step())
    assert history.rho.shape == history.sigma_max.shape == (3, 1, 1, 4)
    save_run(tmp_path / "run", t.config, history)
    loaded = load_run(tmp_path / "run")[1]
    np.testing.assert_array_equal(loaded.rho, history.rho)
    np.testing.assert_array_equal(loaded.sigma_max, history.sigma_max)
    np.testing.assert_array_equal(loaded.dout_norm, history.dout_norm)


# -- bounds -------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu"])
@pytest.mark.parametrize("init,rho", [("default", None), ("normal", 1.3), ("orthogonal", 1.0)])
def test_every_captured_gradient_is_under_the_drawn_bound_last_step_loss(cell, init, rho):
    """Random weights, the adding task (a loss at the last step only), every t."""
    t = Trainer(RunConfig(cell=cell, task="adding", hidden=16, seq_len=30, batch_size=8,
                          init=init, rho=rho, seed=4))
    for _ in range(5):
        cap = t.step()
        dh, dout = cap.dh_norm[0, 0].astype(np.float64), cap.dout_norm[0, 0].astype(np.float64)
        # The adding task's loss reads the last step only: no local terms before it, and
        # the unrolled bound is the geometric one.
        assert np.all(dout[:-1] == 0) and dout[-1] > 0
        gs = bounds.block_gamma("W_hh") * float(cap.sigma_max[0, 0, 0])
        geometric = dh[-1] * gs ** (len(dh) - 1 - np.arange(len(dh)))
        drawn = bounds.rnn_unrolled_bound(dh, dout, gs)
        np.testing.assert_allclose(drawn, geometric, rtol=1e-12)
        assert np.all(dh <= drawn * (1 + 1e-5)), (dh / drawn).max()
        assert np.all(dh <= bounds.rnn_step_bound(dh, dout, gs) * (1 + 1e-5))
        t.step()


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu"])
def test_with_a_loss_at_every_step_the_bound_holds_with_its_local_terms(cell):
    t = Trainer(RunConfig(cell=cell, task="reber", hidden=12, seq_len=20, batch_size=6,
                          layers=2, bidirectional=True, init="normal", rho=1.2))
    cap = t.step()
    L, D, T = cap.dh_norm.shape
    for k in range(L):
        for d in range(D):
            dh = cap.dh_norm[k, d].astype(np.float64)
            dout = cap.dout_norm[k, d].astype(np.float64)
            assert np.count_nonzero(dout) == T          # a loss (or the layer above) at every t
            gs = float(cap.sigma_max[k, d, 0])
            for bound in (bounds.rnn_unrolled_bound, bounds.rnn_step_bound):
                assert np.all(dh <= bound(dh, dout, gs, reverse=d == 1) * (1 + 1e-5)), (k, d)
            # Without the local terms it would not hold here: they are needed.
            zero = np.zeros_like(dout)
            assert np.any(dh > bounds.rnn_step_bound(dh, zero, gs, reverse=d == 1) * 1.001)


def test_forget_product_is_the_product_of_the_captured_forget_gate_means():
    t = Trainer(RunConfig(cell="lstm", task="adding", hidden=6, seq_len=9, bidirectional=True,
                          forget_bias=1.0))
    cap = t.step()
    fi = cap.gate_names.index("f")
    for d in range(2):
        f = cap.gates[0, d, fi].astype(np.float64).mean(-1)          # (T,)
        dc = cap.dc_norm[0, d].astype(np.float64)
        got = bounds.forget_product(dc, f, reverse=d == 1)
        T = len(f)
        for t_ in range(T):
            later = range(t_ + 1, T) if d == 0 else range(0, t_)
            last = T - 1 if d == 0 else 0
            expected = dc[last] * np.prod([f[s] for s in later])
            assert got[t_] == pytest.approx(expected, rel=1e-12)


def test_decay_ratio_and_its_geometric_mean():
    dh = np.array([0.5 ** (9 - t) for t in range(10)])
    ratio = bounds.decay_ratio(dh)
    np.testing.assert_allclose(ratio, 0.5)
    assert bounds.geometric_mean(ratio) == pytest.approx(0.5)
    np.testing.assert_allclose(bounds.decay_ratio(dh[::-1], reverse=True), 0.5)
    with_zero = dh.copy()
    with_zero[3] = 0.0
    assert np.isnan(bounds.decay_ratio(with_zero)[[2, 3]]).all()


# -- paths --------------------------------------------------------------------------------
@pytest.mark.parametrize("tbptt", [0, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_gradient_paths_equal_autograd_of_the_plain_equations(cell, tbptt, cell_path):
    """On both paths (the compiled loop and PyTorch operations), with and without truncated
    BPTT, over the batch rows but the last (which rides along as the probe does)."""
    dtype = torch.float64
    torch.manual_seed(1)
    net = Network(cell, 3, 5, output_size=1, dtype=dtype)
    T, B = 7, 5
    rows = B - 1
    g = torch.Generator().manual_seed(3)
    x = torch.randn(T, B, 3, generator=g, dtype=dtype)
    w_out = torch.randn(T, B, 5, generator=g, dtype=dtype)
    fwd = net.run(x, stats_rows=B)
    grads = net.backward(fwd, w_out, tbptt=tbptt)         # a loss at every step: Σ w_out·h
    paths = path_norms(net.cell, fwd.caches[0][0], grads[0][0], rows, tbptt).numpy()
    names = path_names(net.cell)

    _, hs, cs = unrolled(net, x, tbptt)
    hs, cs = hs[0][0], cs[0][0]
    (torch.stack(hs) * w_out).sum().backward(retain_graph=True)
    dh = torch.stack([h.grad for h in hs])

    def norm(v):
        return torch.linalg.vector_norm(v.detach()[:rows], dim=0).numpy()   # over rows: (H,)

    np.testing.assert_allclose(paths[names.index("dh")],
                               torch.linalg.vector_norm(dh[:, :rows], dim=1), rtol=1e-10)
    p = net.layer_params(0, 0)
    for t in range(1, T):
        # Truncated BPTT: nothing crosses from step t back to step t − 1.
        crosses = not (tbptt and t % tbptt == 0)
        h_prev = hs[t - 1].detach().requires_grad_()
        c_prev = cs[t - 1].detach().requires_grad_() if cs[t - 1] is not None else None
        step = net.cell.reference_step(p, x[t], h_prev, c_prev)
        if cell.startswith("lstm"):
            dc_t = cs[t].grad
            # The reference step's gates are its parameter blocks: f is first when coupled.
            f = step.gates[:, 0] if cell == "lstm-coupled" else step.gates[:, 1]
            belt = f * dc_t if crosses else torch.zeros_like(dc_t)
            np.testing.assert_allclose(paths[names.index("belt"), t], norm(belt), rtol=1e-10)
            # What reaches c_{t−1} other than along the belt: its total minus f_t ⊙ ∂L/∂c_t.
            np.testing.assert_allclose(paths[names.index("c_h"), t - 1],
                                       norm(cs[t - 1].grad - belt), rtol=1e-8, atol=1e-14)
            # Through W_hh: everything step t sends to h_{t−1}, by autograd of the step.
            via = torch.autograd.grad([step.h, step.c], h_prev, [hs[t].grad, cs[t].grad - (
                torch.autograd.grad(step.h, step.c, hs[t].grad, retain_graph=True)[0])],
                retain_graph=True)[0]
        else:
            via = torch.autograd.grad(step.h, h_prev, hs[t].grad, retain_graph=True)[0]
            if cell == "gru":
                belt = step.gates[:, 1] * hs[t].grad if crosses else torch.zeros_like(via)
                np.testing.assert_allclose(paths[names.index("belt"), t], norm(belt), rtol=1e-10)
                via = via - belt
        if not crosses:
            via = torch.zeros_like(via)
        np.testing.assert_allclose(paths[names.index("w"), t], norm(via), rtol=1e-8, atol=1e-14)
    if cell.startswith("lstm"):
        np.testing.assert_allclose(paths[names.index("c_h"), T - 1], norm(cs[T - 1].grad),
                                   rtol=1e-10)
    assert np.isnan(paths[names.index("w"), 0]).all()


# -- cliff --------------------------------------------------------------------------------
def test_the_cliffs_bptt_equals_autograd_at_random_points():
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-2, 10, 40), rng.uniform(-7, 2, 40)])
    loss, dw, db = cliff.loss_and_grad(points[:, 0], points[:, 1])
    for (w0, b0), l_, gw, gb in zip(points, loss, dw, db):
        w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
        b = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
        x = torch.tensor(cliff.X0, dtype=torch.float64)
        for _ in range(cliff.STEPS):
            x = w * torch.sigmoid(x) + b
        ref = (torch.sigmoid(x) - cliff.TARGET) ** 2
        ref.backward()
        assert l_ == pytest.approx(ref.item(), rel=1e-12, abs=1e-300)
        assert gw == pytest.approx(w.grad.item(), rel=1e-9, abs=1e-300)
        assert gb == pytest.approx(b.grad.item(), rel=1e-9, abs=1e-300)


def test_clipped_descent_takes_steps_no_longer_than_lr_times_the_threshold():
    plain = cliff.descend(4.0, -2.0, lr=2.0, steps=60)
    clipped = cliff.descend(4.0, -2.0, lr=2.0, steps=60, clip=0.5)
    steps = np.linalg.norm(np.diff(clipped.points, axis=0), axis=1)
    assert np.all(steps <= 2.0 * 0.5 + 1e-12)
    assert np.linalg.norm(np.diff(plain.points, axis=0), axis=1).max() > 2.0 * 0.5
    for path in (plain, clipped):
        np.testing.assert_allclose(path.loss, cliff.loss_and_grad(*path.points.T)[0])


# -- history rows -------------------------------------------------------------------------
def test_saturation_and_spectrum_rows_equal_the_captures_and_merge_by_count():
    t = Trainer(RunConfig(cell="gru", hidden=6, seq_len=8, optimizer="adam", lr=0.05))
    caps = [t.step() for _ in range(24)]
    history = History(capacity=8)
    for cap in caps:
        history.append(cap)
    assert history.count.sum() == 24 and len(history) < 24
    first = 0
    for k in range(len(history)):
        group = caps[first:first + int(history.count[k])]
        first += int(history.count[k])
        for name in ("sat_low", "sat_high", "rho", "sigma_max"):
            # A gate's fraction averaged over t, then over the row's captures.
            values = [getattr(c, name) for c in group]
            if name.startswith("sat"):
                values = [v.astype(np.float64).mean(-1) for v in values]
            np.testing.assert_allclose(getattr(history, name)[k], np.mean(values, axis=0),
                                       rtol=1e-6)


def test_a_light_capture_has_no_saturation_row_and_merges_away():
    t = Trainer(RunConfig(cell="lstm", hidden=5, seq_len=6))
    full, light = t.step(), t.step(full=False)
    history = History(capacity=2)
    history.append(full)
    history.append(light)
    assert np.isnan(history.sat_low[1]).all() and np.isfinite(history.rho[1]).all()
    history.append(t.step())                            # merges the first two rows
    np.testing.assert_allclose(history.sat_low[0], full.sat_low.mean(-1), rtol=1e-6)
    np.testing.assert_allclose(history.rho[0], (full.rho + light.rho) / 2, rtol=1e-12)


def test_a_run_file_from_before_the_theory_rows_still_opens_with_them_empty(tmp_path):
    import zipfile
    t = Trainer(RunConfig(cell="lstm", hidden=4, seq_len=5))
    history, keyframes = History(), Keyframes()
    for _ in range(3):
        cap = t.step()
        history.append(cap)
        keyframes.add(cap)
    save_run(tmp_path / "run", t.config, history, keyframes=keyframes)
    kept = open_run(tmp_path / "run").keyframes.captures
    for got, saved in zip(kept, keyframes.captures, strict=True):
        np.testing.assert_array_equal(got.paths, saved.paths)
        np.testing.assert_array_equal(got.dout_norm, saved.dout_norm)
        assert got.path_names == saved.path_names
    npz = tmp_path / "run" / "capture.npz"
    with zipfile.ZipFile(npz) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    theory = {"rho", "sigma_max", "sat_low", "sat_high", "dout_norm", "latest_paths",
              "latest_path_names", "latest_dout_norm", "key_paths", "key_path_names",
              "key_dout_norm"}
    assert theory <= {name[:-4] for name in members}
    with zipfile.ZipFile(npz, "w") as zf:
        for name, data in members.items():
            if name[:-4] not in theory:
                zf.writestr(name, data)
    loaded = load_run(tmp_path / "run")[1]
    assert len(loaded) == 3 and np.isnan(loaded.rho).all() and np.isnan(loaded.sat_low).all()
    assert loaded.rho.shape == (3, 1, 1, 4)
    assert loaded.latest.paths is None and loaded.latest.dout_norm is None
    np.testing.assert_array_equal(loaded.dh_norm, history.dh_norm)


def test_the_compiled_lanczos_reads_float32_blocks_as_their_float64_copy():
    # σ_max of a float32 run's blocks without the float64 copy: the same numbers, bit for
    # bit, at sizes on and off the vector width.
    from gradviz.engine import native
    loops = native.kernels()
    if loops is None:
        pytest.skip(native.status())
    g = torch.Generator().manual_seed(3)
    for H in (1, 7, 32, 33, 130):
        w = torch.randn(3, H, H, generator=g) / H ** 0.5
        start = torch.randn(3, H, generator=g, dtype=torch.float64)
        v32, v64 = start.clone(), start.clone()
        s32, ok32 = loops.top_singular(w, v32, KRYLOV_STEPS, 1e-7)
        s64, ok64 = loops.top_singular(w.double(), v64, KRYLOV_STEPS, 1e-7)
        assert torch.equal(s32, s64) and torch.equal(v32, v64) and torch.equal(ok32, ok64), H
        np.testing.assert_allclose(s32[ok32], torch.linalg.svdvals(w.double())[ok32, 0],
                                   rtol=1e-6)
    with pytest.raises(ValueError, match="float64 or float32"):
        loops.top_singular(w.half(), v32, KRYLOV_STEPS, 1e-7)
