"""Every cell against PyTorch's own modules (or, for the variants PyTorch lacks, against
an autograd reference written from the equations in reference.py), with copied weights."""
import pytest
import torch
from torch import nn

from gradviz.engine.network import Network

from reference import unrolled

TORCH_MODULES = {
    "rnn-tanh": lambda i, h, l, b: nn.RNN(i, h, l, nonlinearity="tanh", bidirectional=b),
    "rnn-relu": lambda i, h, l, b: nn.RNN(i, h, l, nonlinearity="relu", bidirectional=b),
    "lstm": lambda i, h, l, b: nn.LSTM(i, h, l, bidirectional=b),
    "gru": lambda i, h, l, b: nn.GRU(i, h, l, bidirectional=b),
}


def make_pair(cell, layers, bidirectional, dtype, seed=0, I=3, H=5):
    torch.manual_seed(seed)
    net = Network(cell, I, H, output_size=2, layers=layers, bidirectional=bidirectional, dtype=dtype)
    ref = TORCH_MODULES[cell](I, H, layers, bidirectional).to(dtype)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(getattr(net, name))
    return net, ref


def run_ours(net, x, w_out, tbptt=0):
    fwd = net.run(x)
    net.backward(fwd, w_out, tbptt)
    grads = {}
    for n, p in net.recurrent_parameters():
        grads[n] = p.grad.clone()
        p.grad = None  # so that a reference's autograd pass starts from zero
    return fwd.output, grads


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", list(TORCH_MODULES))
def test_matches_torch_nn(cell, layers, bidirectional, dtype, tol):
    net, ref = make_pair(cell, layers, bidirectional, dtype)
    T, B = 7, 4
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, 3, generator=g, dtype=dtype)
    # A loss that is a random linear function of every output: ∂L/∂out = w_out.
    w_out = torch.randn(T, B, 5 * (2 if bidirectional else 1), generator=g, dtype=dtype)

    out, grads = run_ours(net, x, w_out)
    ref_out, _ = ref(x)
    (ref_out * w_out).sum().backward()

    def rel(a, b):
        return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()

    assert rel(out, ref_out) < tol
    for name, p in ref.named_parameters():
        assert grads[name].shape == p.grad.shape, name
        assert rel(grads[name], p.grad) < tol, name


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm-peephole", "lstm-coupled"])
def test_lstm_variants_match_autograd_reference(cell, layers, bidirectional):
    dtype = torch.float64
    torch.manual_seed(3)
    net = Network(cell, 3, 5, output_size=1, layers=layers, bidirectional=bidirectional, dtype=dtype)
    T, B = 6, 3
    g = torch.Generator().manual_seed(2)
    x = torch.randn(T, B, 3, generator=g, dtype=dtype)
    w_out = torch.randn(T, B, 5 * net.directions, generator=g, dtype=dtype)

    out, grads = run_ours(net, x, w_out)
    ref_out, _, _ = unrolled(net, x)
    (ref_out * w_out).sum().backward()

    assert (out - ref_out).abs().max() < 1e-12
    for name, p in net.recurrent_parameters():
        assert p.grad is not None and (grads[name] - p.grad).abs().max() < 1e-10, name
