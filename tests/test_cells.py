"""Every cell against PyTorch's own modules (or, for the variants PyTorch lacks, against
an autograd reference written here from the equations), with copied weights."""
import pytest
import torch
from torch import nn

from gradviz.engine.network import Network

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


def lstm_variant_reference(net, x, kind):
    """Unrolled autograd reference for the peephole and coupled LSTMs, from their equations.
    Returns the output (T, B, D·H) and the per-layer lists of h_t and c_t tensors."""
    T, B, _ = x.shape
    H = net.hidden
    hs, cs = [], []
    layer_in = x
    for k in range(net.layers):
        outs = []
        for d in range(net.directions):
            p = net.layer_params(k, d)
            xin = layer_in if d == 0 else layer_in.flip(0)
            h = torch.zeros(B, H, dtype=x.dtype)
            c = torch.zeros(B, H, dtype=x.dtype)
            h_list, c_list = [], []
            for t in range(T):
                z = xin[t] @ p["weight_ih"].t() + p["bias_ih"] + h @ p["weight_hh"].t() + p["bias_hh"]
                if kind == "lstm-peephole":
                    zi, zf, zg, zo = z.split(H, 1)
                    wci, wcf, wco = p["weight_ch"].split(H)
                    i = torch.sigmoid(zi + wci * c)
                    f = torch.sigmoid(zf + wcf * c)
                    g = torch.tanh(zg)
                    c = f * c + i * g
                    o = torch.sigmoid(zo + wco * c)
                else:
                    zf, zg, zo = z.split(H, 1)
                    f = torch.sigmoid(zf)
                    g = torch.tanh(zg)
                    o = torch.sigmoid(zo)
                    c = f * c + (1 - f) * g
                h = o * torch.tanh(c)
                h.retain_grad()
                c.retain_grad()
                h_list.append(h)
                c_list.append(c)
            hs.append(h_list)
            cs.append(c_list)
            seq = torch.stack(h_list)
            outs.append(seq if d == 0 else seq.flip(0))
        layer_in = torch.cat(outs, -1)
    return layer_in, hs, cs


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
    ref_out, _, _ = lstm_variant_reference(net, x, cell)
    (ref_out * w_out).sum().backward()

    assert (out - ref_out).abs().max() < 1e-12
    for name, p in net.recurrent_parameters():
        assert p.grad is not None and (grads[name] - p.grad).abs().max() < 1e-10, name
