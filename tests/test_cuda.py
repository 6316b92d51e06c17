"""capture, watch, trace and lengths on a CUDA module agree with the same on the CPU.
Skipped where no CUDA device is present (no test here has run on one yet)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import gradviz

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
D64 = torch.float64


def _pair(module):
    return module.to(D64), copy.deepcopy(module).to(D64).cuda()


def test_capture_and_lengths_on_cuda_equal_the_cpu():
    torch.manual_seed(0)
    cpu, gpu = _pair(nn.LSTM(3, 5, num_layers=2, bidirectional=True))
    x = torch.randn(7, 4, 3, dtype=D64)
    lengths = [7, 3, 5, 2]
    for kwargs in ({}, {"lengths": lengths}):
        a = gradviz.capture(cpu, x, lambda o: o.pow(2).sum(), **kwargs)
        b = gradviz.capture(gpu, x.cuda(), lambda o: o.pow(2).sum(), **kwargs)
        np.testing.assert_allclose(b.dh_norm, a.dh_norm, rtol=1e-10)
        np.testing.assert_allclose(b.param_grad_norm, a.param_grad_norm, rtol=1e-10)
        for p, q in zip(cpu.parameters(), gpu.parameters()):
            torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=0, atol=1e-10)


def test_watch_and_trace_on_cuda():
    torch.manual_seed(1)
    gpu = nn.GRU(2, 4).to(D64).cuda()
    w = gradviz.watch(gpu, every=2)
    for _ in range(4):
        loss = w.backward(torch.randn(6, 3, 2, dtype=D64, device="cuda"), lambda o: o.sum())
    assert isinstance(loss, torch.Tensor) and loss.is_cuda      # not captured: no host sync
    w.close()
    assert list(w.history.step) == [0, 2] and np.isfinite(w.history.dh_norm).all()
    cell = nn.GRUCell(2, 4).to(D64).cuda()
    tr = gradviz.trace()
    h = torch.zeros(3, 4, dtype=D64, device="cuda")
    hs = []
    for t in range(5):
        h = tr.mark(cell(torch.randn(3, 2, dtype=D64, device="cuda"), h), t)
        h.retain_grad()
        hs.append(h)
    h.sum().backward()
    np.testing.assert_allclose(tr.capture().norms["h"], [v.grad.norm().item() for v in hs],
                               rtol=1e-10)
