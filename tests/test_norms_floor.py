"""Norms exact to the float32 floor (issue 20, point 1).

A norm squares its elements, so a float32 ‖∂L/∂hₜ‖ summed in float32 read exactly 0 once
the elements fell below ~1e-19, nine orders of magnitude before float32's own floor. The
probe: a tanh RNN (W_hh × 0.3, T 120, last-step loss) whose gradient spans 1e-1 … 1e-35
and beyond; denormals flushed as in the training process. Every norm gradviz reports must
be 0 only where all its elements are 0, and agree with the float64 norm of the same
float32 elements to 1e-5 relative.
"""
import numpy as np
import pytest
import torch
from torch import nn

import gradviz
from gradviz.api.modules import shared_network
from gradviz.engine import native
from gradviz.engine.analysis import paths as paths_module
from gradviz.engine.analysis.norms import each_norm, norm_over, total_norm
from gradviz.engine.training.train import timestep_arrays

T, B, I, H = 120, 8, 3, 16
REL = 1e-5


@pytest.fixture
def flushing():
    before = torch.set_flush_denormal(True)
    yield before
    torch.set_flush_denormal(False)


def vanishing_rnn(cell: str = "tanh") -> nn.Module:
    torch.manual_seed(3)
    if cell == "lstm":
        module = nn.LSTM(I, H)
        with torch.no_grad():
            module.weight_hh_l0.mul_(0.3)
            module.bias_hh_l0[H:2 * H] = -6.0        # forget gate nearly shut
            module.bias_ih_l0[H:2 * H] = 0.0
        return module
    module = nn.RNN(I, H, nonlinearity="tanh")
    with torch.no_grad():
        module.weight_hh_l0.mul_(0.3)
    return module


def last_step_loss(out):
    return out[-1].pow(2).sum()


def backward(module):
    """gradviz's forward and backward pass of ``module`` on a fixed input: (net, fwd, grads)."""
    net = shared_network(module)
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(5))
    zeros = torch.zeros(1, B, H)
    fwd = net.run(x, (zeros, zeros.clone() if net.has_cell_state else None), stats_rows=B)
    out = fwd.output.detach().requires_grad_()
    last_step_loss(out).backward()
    grads = net.backward(fwd, out.grad)
    return net, fwd, grads


def check(got, elements):
    """``got`` (N,) float norms of the rows of ``elements`` (N, M) float32: 0 only where a
    row is all 0, else within REL of the float64 norm of the same float32 numbers."""
    ref = torch.linalg.vector_norm(elements.double(), dim=1).numpy()
    got = np.asarray(got, dtype=np.float64)
    zero_rows = (elements == 0).all(1).numpy()
    assert np.array_equal(got == 0, zero_rows), (got, ref)
    live = ~zero_rows
    np.testing.assert_allclose(got[live], ref[live], rtol=REL)


def test_the_probe_spans_the_range(flushing):
    """The gradient of the probe really spans 1e-1 … below 1e-35 in float32, normal
    numbers all the way (so the norms below are tested where they used to fail)."""
    _, _, grads = backward(vanishing_rnn())
    peak = grads[0][0].dh.abs().amax(dim=(1, 2))
    nonzero = peak[peak > 0]
    assert nonzero.max() > 1e-1 and nonzero.min() < 1e-35
    assert ((peak > 1e-30) & (peak < 1e-19)).sum() > 5


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_timestep_norms_exact_to_the_floor(flushing, cell):
    net, fwd, grads = backward(vanishing_rnn(cell))
    arrays = timestep_arrays(net, fwd, grads, 0)
    g = grads[0][0]
    check(arrays["dh_norm"][0, 0], g.dh.reshape(T, -1))
    check(arrays["dout_norm"][0, 0], g.dout.reshape(T, -1))
    if cell == "lstm":
        check(arrays["dc_norm"][0, 0], g.dc.reshape(T, -1))


@pytest.mark.parametrize("compiled", [True, False])
def test_path_norms_exact_to_the_floor(flushing, compiled, monkeypatch):
    if compiled and native.kernels() is None:
        pytest.skip("no compiled loops here")
    if not compiled:
        monkeypatch.setattr(paths_module, "compiled_loops", lambda *_: None)
    net, fwd, grads = backward(vanishing_rnn())
    g = grads[0][0]
    out = paths_module.path_norms(net.cell, fwd.caches[0][0], g, B)    # (Q, T, H)
    names = paths_module.path_names(net.cell)
    # dh's path, per timestep and unit, over the batch rows
    check(out[names.index("dh")].reshape(-1), g.dh.permute(0, 2, 1).reshape(T * H, B))


def test_capture_norms_exact_to_the_floor(flushing):
    """End to end: gradviz.capture's ‖∂L/∂hₜ‖ and parameter norms, against the float64 norm
    of the float32 gradient that the module's own unrolled cells give (autograd, retain_grad):
    no timestep whose reference is a normal float32 number reads 0."""
    module = vanishing_rnn()
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(5))
    cap = gradviz.capture(module, x, last_step_loss)
    w = [module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0]
    h = torch.zeros(B, H)
    hs = []
    for t in range(T):
        h = torch.rnn_tanh_cell(x[t], h, *w)
        h.retain_grad()
        hs.append(h)
    last_step_loss(torch.stack(hs)).backward()
    ref = np.array([float(torch.linalg.vector_norm(h.grad.double())) for h in hs])
    got = cap.dh_norm[0, 0].astype(np.float64)
    assert ref.min() < 1e-35                               # the probe reaches the floor
    normal = ref > 1e-36
    assert (got[normal] > 0).all()
    # Two float32 computations of the same recurrence (rounding grows along 120 steps).
    np.testing.assert_allclose(got[normal], ref[normal], rtol=1e-3)


def test_parameter_norms_exact_to_the_floor(flushing):
    tensors = [torch.full((7, 5), 3e-30), torch.full((4,), 1e-37), torch.zeros(3),
               torch.full((2, 2), 2e25), torch.tensor([1.0, -2.0])]
    norms = each_norm(tensors)
    check(norms, torch.nn.utils.rnn.pad_sequence([t.reshape(-1) for t in tensors],
                                                 batch_first=True))
    ref = np.sqrt(sum(float(torch.linalg.vector_norm(t.double())) ** 2 for t in tensors))
    assert total_norm(norms) == pytest.approx(ref, rel=REL)
    small = [torch.full((3,), 1e-36)]
    assert total_norm(each_norm(small)) == pytest.approx(np.sqrt(3) * 1e-36, rel=REL)


def test_norm_over_keeps_non_finite_and_large():
    x = torch.ones(4, 3, 5)
    x[1] = 1e30                        # squares overflow float32
    x[2, 0, 0] = float("nan")
    x[3, 1, 1] = float("inf")
    n = norm_over(x, (1, 2)).double()
    assert n[0] == pytest.approx(np.sqrt(15), rel=REL)
    assert n[1] == pytest.approx(np.sqrt(15) * 1e30, rel=REL)
    assert np.isnan(n[2].item()) and n[3].item() == np.inf


def test_training_capture_reads_vanished_steps(flushing):
    """A gradviz training step (compiled loops or not) on a vanishing tanh RNN: every
    captured norm whose float64 value is a normal float32 number is above 0."""
    from gradviz.config import RunConfig
    from gradviz.engine.training.train import Trainer

    cfg = RunConfig(cell="rnn-tanh", hidden=16, seq_len=120, batch_size=8, init="default",
                    rho=0.1, task="adding", seed=2)
    cap = Trainer(cfg.validate()).step()
    dh = cap.dh_norm[0, 0]
    # Vanished from the last step backwards: zeros, if any, only before the first non-zero.
    first = int(np.argmax(dh > 0))
    assert (dh[first:] > 0).all()
    assert (dh[first:] < 1e-19).sum() >= 5                 # below the old float32 floor
