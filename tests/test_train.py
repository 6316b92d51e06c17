"""The training step and its capture, against autograd on an unrolled reference."""
import copy
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from gradviz.config import RunConfig
from gradviz.registry import CELLS
from gradviz.engine.model.init import spectral_radius
from gradviz import registry
from gradviz.engine.analysis.spectrum import EIG_COST, RHO_SHARE
from gradviz.engine.training.train import Trainer

from reference import unrolled


def reference_step(trainer, net_before, gen_state, probe_rows=False):
    """Recompute a trainer's last step with autograd: same weights, same batch."""
    cfg = trainer.config
    gen = torch.Generator()
    gen.set_state(gen_state)
    batch = trainer.task.batch(cfg.batch_size, gen)
    x = batch.x.to(trainer.dtype)
    target = batch.target.to(trainer.dtype) if batch.target.is_floating_point() else batch.target
    out, hs, cs = unrolled(net_before, x, cfg.tbptt)
    y = net_before.readout(out[trainer.task.loss_positions])
    loss = trainer.task.loss(y, target)
    loss.backward()
    return loss, hs, cs


def step_with_reference(cfg):
    trainer = Trainer(cfg)
    net_before = copy.deepcopy(trainer.net)
    gen_state = trainer._data_gen.get_state()
    cap = trainer.step()
    loss, hs, cs = reference_step(trainer, net_before, gen_state)
    return trainer, net_before, cap, loss, hs, cs


@pytest.mark.parametrize("task", ["adding", "reber"])  # loss at the last step / at every step
@pytest.mark.parametrize("cell", list(CELLS))
def test_captured_gradient_norms_match_autograd(cell, task, cell_path):
    cfg = RunConfig(task=task, cell=cell, seq_len=9, hidden=6, layers=2, bidirectional=True,
                    batch_size=5, dtype="float64", seed=4)
    trainer, net_before, cap, loss, hs, cs = step_with_reference(cfg)
    assert cap.loss == pytest.approx(loss.item(), rel=1e-12)
    L, D, T = cap.dh_norm.shape
    assert (L, D, T) == (2, 2, 9)
    for k in range(L):
        for d in range(D):
            ref_dh = np.array([h.grad.norm().item() for h in hs[k][d]])
            np.testing.assert_allclose(cap.dh_norm[k, d], ref_dh, rtol=1e-5, atol=1e-30)
            if trainer.net.has_cell_state:
                ref_dc = np.array([c.grad.norm().item() for c in cs[k][d]])
                np.testing.assert_allclose(cap.dc_norm[k, d], ref_dc, rtol=1e-5, atol=1e-30)
    if not trainer.net.has_cell_state:
        assert cap.dc_norm is None
    # Parameter gradients before clipping agree too.
    ref_norms = [p.grad.norm().item() for _, p in net_before.named_parameters()]
    np.testing.assert_allclose(cap.param_grad_norm, ref_norms, rtol=1e-5)
    assert cap.grad_norm == pytest.approx(math.sqrt(sum(n * n for n in ref_norms)), rel=1e-10)


@pytest.mark.parametrize("tbptt", [0, 20])
def test_long_lstm_sequence_matches_autograd(tbptt, cell_path):
    """Longer than the LSTM's 32-step chunks, with truncation points inside and across them."""
    cfg = RunConfig(task="reber", cell="lstm", seq_len=75, hidden=5, batch_size=3,
                    dtype="float64", tbptt=tbptt, seed=2)
    trainer, net_before, cap, loss, hs, cs = step_with_reference(cfg)
    assert cap.loss == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(cap.dh_norm[0, 0], [h.grad.norm().item() for h in hs[0][0]],
                               rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(cap.dc_norm[0, 0], [c.grad.norm().item() for c in cs[0][0]],
                               rtol=1e-6, atol=1e-30)
    ref_norms = [p.grad.norm().item() for _, p in net_before.named_parameters()]
    np.testing.assert_allclose(cap.param_grad_norm, ref_norms, rtol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh", "lstm-peephole"])
def test_truncated_bptt_matches_detached_reference(cell, cell_path):
    cfg = RunConfig(task="reber", cell=cell, seq_len=10, hidden=5, layers=2, bidirectional=True,
                    batch_size=3, dtype="float64", tbptt=4)
    trainer, net_before, cap, loss, hs, cs = step_with_reference(cfg)
    for k in range(2):
        for d in range(2):
            ref = np.array([h.grad.norm().item() for h in hs[k][d]])
            np.testing.assert_allclose(cap.dh_norm[k, d], ref, rtol=1e-6, atol=1e-30)
    ref_norms = [p.grad.norm().item() for _, p in net_before.named_parameters()]
    np.testing.assert_allclose(cap.param_grad_norm, ref_norms, rtol=1e-6)


def test_capture_float32_agrees_with_float64():
    trainers = {dtype: Trainer(RunConfig(task="adding", cell="lstm", seq_len=40, hidden=16,
                                         dtype=dtype, seed=1))
                for dtype in ("float32", "float64")}
    with torch.no_grad():
        for p32, p64 in zip(trainers["float32"].params, trainers["float64"].params):
            p64.copy_(p32)
    caps = {dtype: t.step() for dtype, t in trainers.items()}
    np.testing.assert_allclose(caps["float32"].dh_norm, caps["float64"].dh_norm, rtol=1e-4)
    assert caps["float32"].dh_norm.min() > 0


def test_gates_probe_and_saturation(cell_path):
    cfg = RunConfig(task="copy", cell="lstm", seq_len=25, hidden=7, layers=2, batch_size=4,
                    dtype="float64")
    trainer = Trainer(cfg)
    net_before = copy.deepcopy(trainer.net)
    gen_state = trainer._data_gen.get_state()
    cap = trainer.step()
    assert cap.gate_names == ("i", "f", "g", "o")
    assert cap.gates.shape == (2, 1, 4, 25, 7)
    # The probe's trajectory is what the network computes on the probe sequence alone.
    with torch.no_grad():
        out, hs, cs = unrolled(net_before, trainer.probe)
    np.testing.assert_allclose(cap.probe_h[1, 0], out[:, 0].numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(cap.probe_c[0, 0], torch.stack(cs[0][0])[:, 0].numpy(), rtol=1e-6, atol=1e-7)
    # Gate means over the real batch (the probe row excluded): recompute the forget gate of
    # layer 0 from the reference states.
    gen = torch.Generator()
    gen.set_state(gen_state)
    x = trainer.task.batch(4, gen).x.double()
    with torch.no_grad():
        _, hs, _ = unrolled(net_before, x)
        p = net_before.layer_params(0, 0)
        h_prev = torch.stack([torch.zeros(4, 7, dtype=torch.float64)] + hs[0][0][:-1])
        z = x @ p["weight_ih"].t() + p["bias_ih"] + h_prev @ p["weight_hh"].t() + p["bias_hh"]
        f = torch.sigmoid(z[..., 7:14])
    np.testing.assert_allclose(cap.gates[0, 0, 1], f.mean(1).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(cap.sat_high[0, 0, 1], (f > 0.9).double().mean((1, 2)).numpy())
    np.testing.assert_allclose(cap.sat_low[0, 0, 2],
                               (torch.tanh(z[..., 14:21]) < -0.8).double().mean((1, 2)).numpy())


def test_clip_by_norm_bounds_the_global_norm():
    cfg = RunConfig(task="adding", cell="rnn-relu", seq_len=30, hidden=16, init="identity", rho=1.5,
                    clip="norm", clip_threshold=0.05, optimizer="sgd", lr=1e-3)
    trainer = Trainer(cfg)
    clipped_any = False
    for _ in range(5):
        cap = trainer.step()
        total = math.sqrt(sum(p.grad.norm().item() ** 2 for p in trainer.params))
        assert total <= cfg.clip_threshold * (1 + 1e-5)
        assert cap.grad_norm_clipped == pytest.approx(total, rel=1e-6)
        assert cap.clipped == (cap.grad_norm > cfg.clip_threshold)
        clipped_any |= cap.clipped
    assert clipped_any


def test_clip_by_norm_leaves_small_gradients_alone():
    cfg = RunConfig(task="adding", cell="lstm", seq_len=10, hidden=8, clip="norm", clip_threshold=1e5)
    cap = Trainer(cfg).step()
    assert not cap.clipped and cap.grad_norm_clipped == cap.grad_norm


def test_clip_by_value_bounds_every_element():
    cfg = RunConfig(task="adding", cell="gru", seq_len=20, hidden=8, clip="value", clip_threshold=1e-3)
    trainer = Trainer(cfg)
    cap = trainer.step()
    assert cap.clipped
    assert max(p.grad.abs().max().item() for p in trainer.params) <= 1e-3 * (1 + 1e-6)
    assert cap.grad_norm_clipped < cap.grad_norm


def test_live_changes_take_effect_on_the_next_step():
    trainer = Trainer(RunConfig(task="adding", cell="lstm", seq_len=10, hidden=8, lr=1e-3))
    trainer.step()
    trainer.set_live(lr=0.5, clip="norm", clip_threshold=0.01)
    cap = trainer.step()
    assert trainer.optimizer.param_groups[0]["lr"] == 0.5
    assert cap.lr == 0.5 and cap.clip == "norm"
    assert cap.grad_norm_clipped <= 0.01 * (1 + 1e-5)
    with pytest.raises(ValueError, match="cannot change during training"):
        trainer.set_live(hidden=3)


def test_seed_reproduces_a_run_bit_for_bit_and_seeds_differ():
    def losses(seed):
        t = Trainer(RunConfig(task="series", cell="gru", seq_len=15, hidden=8, seed=seed))
        return [t.step().loss for _ in range(5)]
    assert losses(3) == losses(3)
    assert losses(3) != losses(4)


def test_same_seed_gives_two_cells_the_same_data():
    a = Trainer(RunConfig(cell="lstm", seq_len=12, seed=9))
    b = Trainer(RunConfig(cell="gru", seq_len=12, seed=9))
    assert torch.equal(a.task.batch(4, a._data_gen).x, b.task.batch(4, b._data_gen).x)


def test_nonfinite_step_is_not_applied_and_training_goes_on(monkeypatch):
    trainer = Trainer(RunConfig(task="adding", cell="lstm", seq_len=10, hidden=8))
    before = [p.detach().clone() for p in trainer.params]
    real_loss = trainer.task.loss
    monkeypatch.setattr(trainer.task, "loss", lambda y, t: real_loss(y, t) * float("nan"))
    cap = trainer.step()
    assert cap.nonfinite and cap.events and "not finite" in cap.events[0]
    assert all(torch.equal(a, p) for a, p in zip(before, trainer.params))
    monkeypatch.setattr(trainer.task, "loss", real_loss)
    cap = trainer.step()
    assert not cap.nonfinite
    assert not all(torch.equal(a, p) for a, p in zip(before, trainer.params))


def test_diverging_training_never_makes_weights_nonfinite():
    cfg = RunConfig(task="adding", cell="rnn-relu", seq_len=50, hidden=16, init="identity", rho=3.0,
                    optimizer="sgd", lr=10.0)
    trainer = Trainer(cfg)
    caps = [trainer.step() for _ in range(15)]
    assert any(c.nonfinite for c in caps)
    assert all(torch.isfinite(p).all() for p in trainer.params)


def test_stateful_mode_carries_the_final_state():
    cfg = RunConfig(task="reber", cell="lstm", seq_len=10, hidden=6, stateful=True, batch_size=3)
    trainer = Trainer(cfg)
    trainer.step()
    h_carried = trainer._state[0].clone()
    assert h_carried.abs().sum() > 0
    state = trainer._initial_state(4, 3)
    assert torch.equal(state[0][:, :3], h_carried)
    assert state[0][:, 3].abs().sum() == 0  # the probe row always starts from zero


@pytest.mark.parametrize("init", ["orthogonal", "identity", "normal"])
def test_initialisation_and_rho(init):
    t = Trainer(RunConfig(cell="lstm", hidden=12, init=init, rho=0.7, forget_bias=1.0))
    w = t.net.weight_hh_l0.detach().view(4, 12, 12)
    np.testing.assert_allclose(spectral_radius(w).numpy(), 0.7, rtol=1e-5)
    if init in ("orthogonal", "identity"):
        q = w[0] / 0.7
        np.testing.assert_allclose((q @ q.t()).numpy(), np.eye(12), atol=1e-5)
    f_bias = t.net.bias_ih_l0.detach()[12:24]
    np.testing.assert_allclose(f_bias.numpy(), 1.0)


def test_rho_reported_matches_the_weights():
    t = Trainer(RunConfig(cell="gru", hidden=10, rho=1.3))
    cap = t.step()
    assert cap.rho_names == ("W_hr", "W_hz", "W_hn")
    # The capture describes the weights the step used (before its update): ρ = 1.3.
    np.testing.assert_allclose(cap.rho[0, 0], 1.3, rtol=1e-4)
    assert np.all(cap.sigma_max >= cap.rho - 1e-5)


def test_generate_text_for_language_tasks_only():
    t = Trainer(RunConfig(task="reber", cell="lstm", seq_len=12, hidden=8))
    text = t.generate(30)
    assert isinstance(text, str) and len(text) == 30 and set(text) <= set("BTPSXVE")
    assert Trainer(RunConfig(task="adding")).generate() is None


def test_engine_does_not_import_qt():
    code = ("import sys, gradviz.config, gradviz.engine.training.train, gradviz.engine.runs.runfile, "
            "gradviz.engine.tasks; bad = [m for m in sys.modules if m.startswith(('PyQt', 'pyqtgraph'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spectral_radius_describes_the_weights_of_every_captured_step():
    t = Trainer(RunConfig(cell="rnn-tanh", hidden=6, seq_len=5, lr=0.05, optimizer="sgd"))
    # Steps this small would wait MAX_EVERY steps between decompositions; told they are
    # larger, the tracker decomposes every 10 steps.
    t.spectrum.step_macs = EIG_COST * 6 ** 3 / (RHO_SHARE * 9.5)
    caps, before = [], []
    for _ in range(30):
        before.append(t.net.weight_hh_l0.detach().clone())
        caps.append(t.step())
    assert [c.step for c in caps] == list(range(30))
    # Each value describes the weights of the step it names (that step's own, or the last
    # full decomposition's, at most 9 steps back), which training changes;
    # σ_max always those of the step itself.
    for cap, w in zip(caps, before):
        assert cap.step - 10 < cap.rho_step <= cap.step
        assert cap.rho[0, 0, 0] == pytest.approx(spectral_radius(before[cap.rho_step]).item(),
                                                 rel=1e-5)
        assert cap.sigma_max[0, 0, 0] == pytest.approx(
            torch.linalg.svdvals(w.double())[0].item(), rel=1e-5)
    assert caps[-1].rho[0, 0, 0] != caps[0].rho[0, 0, 0]


@pytest.mark.slow
def test_prepared_process_does_not_fault_in_fresh_memory_every_step():
    # Without prepare_training_process() glibc maps an LSTM step's large buffers afresh
    # each time: ~2,000 page faults per step at T = 200, a large part of the step's time.
    code = """
import resource
from gradviz.engine.training.train import Trainer, prepare_training_process
from gradviz.config import RunConfig
prepare_training_process()
t = Trainer(RunConfig(task="adding", cell="lstm", seq_len=200, hidden=32))
for _ in range(3):
    t.step()
faults = []
for _ in range(7):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t.step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[3])  # the median: now and then a step grows the heap once
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert float(out.stdout) < 100


def test_light_step_captures_the_same_gradients_without_per_unit_arrays():
    cfg = RunConfig(task="adding", cell="lstm", seq_len=12, hidden=6, layers=2)
    a, b = Trainer(cfg), Trainer(cfg)
    for _ in range(3):
        full, light = a.step(), b.step(full=False)
        assert light.is_light and not full.is_light
        np.testing.assert_array_equal(full.dh_norm, light.dh_norm)
        np.testing.assert_array_equal(full.dc_norm, light.dc_norm)
        assert full.loss == light.loss and full.grad_norm == light.grad_norm
