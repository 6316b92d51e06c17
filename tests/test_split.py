"""The split of ∂L/∂h_t into its local part (dout_t, from the loss at t or the layer above)
and the part carried back through the recurrence, against autograd on every registered
cell's plain equations, at float64, vector by vector."""
import numpy as np
import pytest
import torch

from gradviz import registry
from gradviz.engine.analysis.bounds import carried_gradient
from gradviz.engine.model.network import Network
from gradviz.engine.training.timesteps import timestep_arrays


def split_by_autograd(net, x):
    """The network unrolled with autograd, each h_t read twice through its own copy: one
    for the output (the layer above, or the loss), one for the next step. Returns the top
    output and, per layer and direction in processing order, lists over t of (h_t, the copy
    the output reads, the copy the recurrence reads), each with its gradient retained."""
    T, B, _ = x.shape
    H = net.hidden
    layer_in, kept = x, []
    for k in range(net.layers):
        outs, per_dir = [], []
        for d in range(net.directions):
            p = net.layer_params(k, d)
            xin = layer_in if d == 0 else layer_in.flip(0)
            h = torch.zeros(B, H, dtype=x.dtype)
            c = torch.zeros(B, H, dtype=x.dtype)
            triples = []
            for t in range(T):
                step = net.cell.reference_step(p, xin[t], h, c)
                h_t = step.h
                h_t.retain_grad()
                out_t, rec_t = h_t.clone(), h_t.clone()
                out_t.retain_grad()
                rec_t.retain_grad()
                triples.append((h_t, out_t, rec_t))
                h = rec_t
                if step.c is not None:
                    c = step.c
            per_dir.append(triples)
            seq = torch.stack([o for _, o, _ in triples])
            outs.append(seq if d == 0 else seq.flip(0))
        kept.append(per_dir)
        layer_in = torch.cat(outs, -1)
    return layer_in, kept


def _grad(t):
    return t.grad if t.grad is not None else torch.zeros_like(t)


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("cell", list(registry.CELLS))
def test_local_plus_carried_is_the_total_for_every_cell(cell, layers, bidirectional, cell_path):
    torch.manual_seed(7)
    net = Network(cell, 3, 6, output_size=2, layers=layers, bidirectional=bidirectional,
                  dtype=torch.float64)
    T, B = 7, 4
    g = torch.Generator().manual_seed(8)
    x = torch.randn(T, B, 3, generator=g, dtype=torch.float64)
    w_out = torch.randn(T, B, 6 * net.directions, generator=g, dtype=torch.float64)

    fwd = net.run(x, stats_rows=B)
    grads = net.backward(fwd, w_out)
    ref_out, kept = split_by_autograd(net, x)
    (ref_out * w_out).sum().backward()
    torch.testing.assert_close(fwd.output, ref_out.detach(), rtol=1e-12, atol=1e-12)

    for k in range(layers):
        for d in range(net.directions):
            lg = grads[k][d]
            carried = carried_gradient(lg)
            for t, (h_t, out_t, rec_t) in enumerate(kept[k][d]):
                total, local, through = _grad(h_t), _grad(out_t), _grad(rec_t)
                # autograd's own split adds up, and each part is what gradviz has.
                torch.testing.assert_close(local + through, total, rtol=1e-12, atol=1e-12)
                torch.testing.assert_close(lg.dh[t], total, rtol=1e-10, atol=1e-12)
                torch.testing.assert_close(lg.dout[t], local, rtol=1e-10, atol=1e-12)
                torch.testing.assert_close(carried[t], through, rtol=1e-10, atol=1e-12)
                torch.testing.assert_close(lg.dout[t] + carried[t], total, rtol=1e-10,
                                           atol=1e-12)
            # Nothing follows the last step processed: nothing is carried into it.
            assert float(carried[-1].abs().max()) == 0.0

    # The capture's norms are the norms of these vectors, in time order.
    arrays = timestep_arrays(net, fwd, grads, None, dtype=torch.float64)
    for k in range(layers):
        for d in range(net.directions):
            triples = kept[k][d] if d == 0 else kept[k][d][::-1]
            want = np.array([float(torch.linalg.vector_norm(_grad(r))) for _, _, r in triples])
            np.testing.assert_allclose(arrays["carried_norm"][k, d], want, rtol=1e-10,
                                       atol=1e-14)


@pytest.mark.parametrize("cell", list(registry.CELLS))
def test_a_last_step_loss_carries_everything_before_the_end(cell):
    """With the loss at the last step only, the local part is zero before T−1 and the
    carried part is the whole gradient there."""
    torch.manual_seed(9)
    net = Network(cell, 2, 4, output_size=1, dtype=torch.float64)
    g = torch.Generator().manual_seed(10)
    x = torch.randn(9, 3, 2, generator=g, dtype=torch.float64)
    d_out = torch.zeros(9, 3, 4, dtype=torch.float64)
    d_out[-1] = torch.randn(3, 4, generator=g, dtype=torch.float64)
    fwd = net.run(x)
    grads = net.backward(fwd, d_out)
    arrays = timestep_arrays(net, fwd, grads, None, dtype=torch.float64)
    dh, dout, carried = (arrays[n][0, 0] for n in ("dh_norm", "dout_norm", "carried_norm"))
    assert np.all(dout[:-1] == 0) and dout[-1] > 0
    np.testing.assert_allclose(carried[:-1], dh[:-1], rtol=1e-12)
    assert carried[-1] == 0


def test_gradtime_draws_the_part_chosen(qtbot):
    """The toolbar's choice draws the local or the carried part's rows, names them in the
    axis and the CSV, and hides the bound (which is on the whole ∂L/∂h_t)."""
    from gradviz.config import RunConfig
    from gradviz.engine.runs.history import History
    from gradviz.engine.training.train import Trainer
    from gradviz.ui.views import make_views
    from gradviz.ui.views.data import LOG_FLOOR

    trainer = Trainer(RunConfig(cell="rnn-tanh", task="reber", hidden=6, seq_len=12,
                                batch_size=8))
    history = History()
    for _ in range(4):
        history.append(trainer.step())
    view = make_views()["gradtime"]
    qtbot.addWidget(view)
    view.set_data(history, history.latest)
    newest = view.curves_h[-1]
    np.testing.assert_array_equal(newest.yData, history.dh_norm[-1, 0, 0])
    assert len(view.bounds.curves["h"].yData)
    for index, field, name in ((1, "dout_norm", "local dL/dh"),
                               (2, "carried_norm", "carried dL/dh")):
        view.part.setCurrentIndex(index)
        rows = getattr(history, field)[-1, 0, 0]
        drawn = rows.astype(np.float64)[rows != 0]       # exact zeros are left out
        np.testing.assert_array_equal(newest.yData, np.maximum(drawn, LOG_FLOOR))
        assert len(newest.yData) == (len(rows) - 1 if field == "carried_norm" else len(rows))
        assert view.bounds.curves["h"].xData is None or len(view.bounds.curves["h"].xData) == 0
        header, table = view.csv_table()
        assert header[-1] == f"{name} step {int(history.step[-1])}"
        np.testing.assert_array_equal(table[:, -1], rows)
        assert view.plot_h.getAxis("left").labelText.startswith(view.h_part()[2][:5])
    # Reber's loss is at every step: the local part is there at every t, and the carried
    # part is zero at the last step only.
    assert np.all(history.dout_norm[-1, 0, 0] > 0)
    assert history.carried_norm[-1, 0, 0, -1] == 0 and np.all(history.carried_norm[-1, 0, 0, :-1] > 0)
