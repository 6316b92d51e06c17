"""gradviz.Recurrent: gradviz's own cells as a torch module, trained by autograd and followed
exactly by gradviz.capture."""
import pytest
import torch

import gradviz
from gradviz.registry import MODERN_CELLS

from reference import unrolled


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", list(MODERN_CELLS))
def test_capture_follows_a_recurrent_module_exactly(cell, bidirectional):
    layer = gradviz.Recurrent(cell, 3, 6, num_layers=2, bidirectional=bidirectional,
                              dtype=torch.float64, seed=1)
    x = torch.randn(9, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    w = torch.randn(6 * layer.directions, dtype=torch.float64)

    def loss_fn(out):
        return ((out[-1] @ w) ** 2).mean()

    # autograd through the module's own forward pass, and the norms of the unrolled states
    out, h_n = layer(x)
    loss_fn(out).backward()
    expected = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad(set_to_none=True)
    ref_out, hs, _ = unrolled(layer, x)
    loss_fn(ref_out).backward()
    layer.zero_grad(set_to_none=True)

    cap = gradviz.capture(layer, x, loss_fn)
    for name, p in layer.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-10, atol=1e-13)
    for k in range(2):
        for d in range(layer.directions):
            ref = torch.stack([h.grad.norm() if h.grad is not None else torch.zeros((), dtype=torch.float64)
                               for h in hs[k][d]])
            torch.testing.assert_close(torch.as_tensor(cap.dh_norm[k, d]), ref, rtol=1e-10, atol=1e-14)
    assert cap.rho_names == MODERN_CELLS[cell].rho_names
    assert h_n.shape == (2 * layer.directions, 4, 6)


def test_a_recurrent_module_trains_with_an_optimiser_and_batch_first():
    layer = gradviz.Recurrent("mingru", 2, 8, batch_first=True)
    opt = torch.optim.Adam(layer.parameters(), lr=0.01)
    x = torch.randn(16, 5, 2)
    y = x.sum((1, 2))
    losses = []
    for _ in range(30):
        opt.zero_grad()
        out, _ = layer(x)
        loss = ((out[:, -1].sum(-1) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    cap = gradviz.capture(layer, x, lambda out: ((out[:, -1].sum(-1) - y) ** 2).mean())
    assert cap.dh_norm.shape == (1, 1, 5)


@pytest.mark.parametrize("cell", ["mingru", "minlstm", "indrnn", "lru", "rnn-orthogonal"])
def test_the_benchmarks_plain_reference_is_the_same_cell(cell):
    """benchmarks/capture_overhead.py times each modern cell against PlainModern: with the
    same weights it computes gradviz's outputs."""
    from test_benchmarks import load_benchmark
    plain = load_benchmark().PlainModern(cell, 3, 6).double()
    ours = gradviz.Recurrent(cell, 3, 6, dtype=torch.float64, seed=3)
    p = {n: w.detach() for n, w in ours.layer_params(0, 0).items()}
    with torch.no_grad():
        if cell == "rnn-orthogonal":
            plain.rnn.weight_hh_l0 = p["weight_hh"]
            for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
                getattr(plain.rnn, name).copy_(p[name[:-3]])
        elif cell == "lru":
            plain.proj.weight.copy_(torch.cat([p["B_re"], p["B_im"]]))
            plain.nu_log.copy_(p["nu_log"])
            plain.theta_log.copy_(p["theta_log"])
        else:
            plain.proj.weight.copy_(p["weight_ih"])
            plain.proj.bias.copy_(p["bias_ih"])
            if cell == "indrnn":
                plain.u.copy_(p["weight_hh"])
    x = torch.randn(7, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(plain(x), ours(x)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_the_benchmark_prints_a_row_for_every_modern_cell():
    import math
    import os
    import subprocess
    import sys
    from test_benchmarks import ROOT, SCRIPT
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--modern"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("cell "))
    rows = [ln.split() for ln in lines[head + 1:head + 6]]
    assert [r[0] for r in rows] == list(MODERN_CELLS)
    for row in rows:
        plain, ours, ratio = map(float, row[3:6])
        assert ratio == pytest.approx(ours / plain, abs=0.01, rel=0.01)
        assert math.isfinite(float(row[-1])) and float(row[-1]) < 100
    assert math.isfinite(float(lines[-1].split()[-1]))
