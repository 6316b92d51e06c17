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


def test_steps_that_are_not_captured_do_not_wait_for_the_gpu():
    # torch raises on any operation that synchronises with the host while the debug mode
    # is "error": the steps a watch does not capture must run without one.
    torch.manual_seed(2)
    gpu = nn.LSTM(3, 8).cuda()
    opt = torch.optim.SGD(gpu.parameters(), lr=0.1)
    w = gradviz.watch(gpu, every=3, optimizer=opt)
    cell = nn.GRUCell(3, 8).cuda()
    tr = gradviz.trace()
    tw = gradviz.watch(cell, trace=tr, every=3)
    x = torch.randn(10, 4, 3, device="cuda")
    for step in range(6):
        opt.zero_grad()
        quiet = step % 3 != 0
        if quiet:
            torch.cuda.set_sync_debug_mode("error")
        try:
            w.backward(x, lambda o: o.pow(2).mean())
            opt.step()
            h = torch.zeros(4, 8, device="cuda")
            for t in range(10):
                h = tr.mark(cell(x[t], h), t)
            tw.backward(h.pow(2).mean())
        finally:
            torch.cuda.set_sync_debug_mode("default")
    w.close()
    tw.close()
    assert list(w.history.step) == [0, 3] and list(tw.history.step) == [0, 3]


def test_the_spectrum_of_a_cuda_module_is_computed_on_a_cpu_copy():
    from gradviz.api.modules import shared_network
    from gradviz.engine.analysis.spectrum import spectral

    torch.manual_seed(3)
    cpu, gpu = _pair(nn.GRU(3, 6, num_layers=2))
    rho_gpu, sigma_gpu = spectral(shared_network(gpu))
    rho_cpu, sigma_cpu = spectral(shared_network(cpu))
    assert rho_gpu.device.type == sigma_gpu.device.type == "cpu"
    torch.testing.assert_close(rho_gpu, rho_cpu, rtol=1e-12, atol=0)
    torch.testing.assert_close(sigma_gpu, sigma_cpu, rtol=1e-12, atol=0)
