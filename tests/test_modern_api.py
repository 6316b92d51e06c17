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
