"""Every cell against PyTorch's own modules (or, for the variants PyTorch lacks, against
an autograd reference written from the equations in reference.py), with copied weights."""
import pytest
import torch
from torch import nn

from gradviz.engine.model.network import Network

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
def test_matches_torch_nn(cell, layers, bidirectional, dtype, tol, cell_path):
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
def test_lstm_variants_match_autograd_reference(cell, layers, bidirectional, cell_path):
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


# Hidden sizes: 6 is narrower than one vector block of the compiled product; 20 (float64)
# and 40 (float32) are one block (16 doubles / 32 floats wide) and columns left over.
@pytest.mark.parametrize("dtype,H", [(torch.float64, 6), (torch.float64, 20), (torch.float32, 6),
                                     (torch.float32, 40)])
def test_lstm_over_several_chunks_matches_torch_nn(dtype, H, cell_path):
    """Sequences longer than the LSTM's forward and backward chunks, with gate statistics
    checked against gates computed directly from torch.nn.LSTM's hidden states."""
    net, ref = make_pair("lstm", 2, True, dtype, seed=5, I=3, H=H)
    T, B, rows = 83, 5, 3   # B 5: the compiled product's blocks of 4 rows and a leftover row
    g = torch.Generator().manual_seed(7)
    x = torch.randn(T, B, 3, generator=g, dtype=dtype) * 2
    w_out = torch.randn(T, B, 2 * net.hidden, generator=g, dtype=dtype)
    fwd = net.run(x, stats_rows=rows)
    net.backward(fwd, w_out)
    ref_out, _ = ref(x)
    (ref_out * w_out).sum().backward()
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert ((fwd.output - ref_out).abs().max() / ref_out.abs().max()).item() < tol
    for name, p in ref.named_parameters():
        ours = getattr(net, name).grad
        assert ((ours - p.grad).abs().max() / p.grad.abs().max()).item() < tol, name

    # Gate statistics of a one-layer LSTM: gates from x and torch.nn's h_{t-1}.
    net, ref = make_pair("lstm", 1, False, dtype, seed=6, I=3, H=H)
    fwd = net.run(x, stats_rows=rows)
    with torch.no_grad():
        h, _ = ref(x)
        h_prev = torch.cat([torch.zeros_like(h[:1]), h[:-1]])
        z = x @ ref.weight_ih_l0.t() + ref.bias_ih_l0 + h_prev @ ref.weight_hh_l0.t() + ref.bias_hh_l0
        i, f, gg, o = z.view(T, B, 4, H).unbind(2)
        acts = torch.stack([torch.sigmoid(i), torch.sigmoid(f), torch.tanh(gg), torch.sigmoid(o)], 2)
    a = acts[:, :rows]
    lo = torch.tensor([0.1, 0.1, -0.8, 0.1], dtype=dtype).view(1, 1, 4, 1)
    hi = torch.tensor([0.9, 0.9, 0.8, 0.9], dtype=dtype).view(1, 1, 4, 1)
    stats = fwd.caches[0][0].stats
    assert torch.allclose(stats.mean, a.mean(1), atol=tol * 10)
    # A unit right at a band's edge may fall either side in float32; allow one in a step.
    assert (stats.low - (a < lo).to(dtype).mean((1, 3))).abs().max() <= 1.01 / (rows * H)
    assert (stats.high - (a > hi).to(dtype).mean((1, 3))).abs().max() <= 1.01 / (rows * H)
    if dtype == torch.float64:
        # Exact counts (the fractions may differ in the last bit from the division order).
        assert torch.allclose(stats.low, (a < lo).to(dtype).mean((1, 3)), rtol=0, atol=1e-12)
        assert torch.allclose(stats.high, (a > hi).to(dtype).mean((1, 3)), rtol=0, atol=1e-12)


def test_the_cells_are_the_registered_ones():
    """Name, blocks, gates and cell state come from the registry; nothing else is known."""
    from gradviz import registry
    from gradviz.engine.model.cells import CELL_CLASSES, make_cell
    assert list(CELL_CLASSES) == list(registry.CELLS)
    for name, spec in registry.CELLS.items():
        cell = make_cell(name)
        assert (cell.name, cell.blocks, cell.gate_names, cell.gate_ranges,
                cell.has_cell_state) == (name, spec.blocks, spec.gate_names, spec.gate_ranges,
                                         spec.has_cell_state)
    with pytest.raises(ValueError, match="unknown cell 'transformer'; allowed: rnn-tanh, "):
        make_cell("transformer")


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu", "lstm", "lstm-peephole",
                                  "lstm-coupled", "gru"])
def test_every_cell_is_its_reference_equations(cell, cell_path):
    """Outputs, cell states and the captured gates of one layer against the cell's plain
    equations (gradviz.engine.model.reference), step by step."""
    torch.manual_seed(4)
    net = Network(cell, 3, 5, output_size=1, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 4, 3, generator=g, dtype=torch.float64)
    fwd = net.run(x, stats_rows=4)
    cache = fwd.caches[0][0]
    assert cache.path == cell_path
    p = {n: w.detach() for n, w in net.layer_params(0, 0).items()}
    h, c = torch.zeros(4, 5, dtype=torch.float64), torch.zeros(4, 5, dtype=torch.float64)
    for t in range(6):
        step = net.cell.reference_step(p, x[t], h, c)
        torch.testing.assert_close(cache.h[t], step.h, rtol=1e-12, atol=1e-13)
        if net.has_cell_state:
            torch.testing.assert_close(cache.c[t], step.c, rtol=1e-12, atol=1e-13)
            c = step.c
        shown = step.gates if cell != "lstm-coupled" else torch.cat([1 - step.gates[:, :1],
                                                                     step.gates], 1)
        torch.testing.assert_close(cache.stats.mean[t], shown.mean(0), rtol=1e-12, atol=1e-13)
        h = step.h
