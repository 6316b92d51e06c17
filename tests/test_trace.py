"""gradviz.trace, capture(lengths=), ragged watches and live TensorBoard, each against an
independent reference at float64: retain_grad on a loop unrolled by hand, and PyTorch's
own module on the packed batch."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import gradviz

TOL = 1e-10
D64 = torch.float64


def _check(cap, hs, name):
    want = np.array([h.grad.norm().item() if h.grad is not None else 0.0 for h in hs])
    np.testing.assert_allclose(cap.norms[name], want, rtol=TOL, atol=TOL * 1e-3)


def _run_loop(step, x, h0, tr, names=("h",), reverse=False):
    """Unroll ``step`` over x (T, B, I), marking with ``tr`` and keeping retain_grad refs."""
    T = x.shape[0]
    state, kept, outs = h0, [], [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        state = step(x[t], state, t)
        h = state[0] if isinstance(state, tuple) else state
        h.retain_grad()
        tr.mark(h, t, names[0])
        kept.append((t, h))
        outs[t] = h
    kept.sort(key=lambda p: p[0])
    return torch.stack(outs), [h for _, h in kept]


def test_trace_of_two_lstmcell_layers_both_directions_is_retain_grad():
    torch.manual_seed(1)
    T, B, I, H = 9, 3, 2, 4
    cells = {n: nn.LSTMCell(i, H, dtype=D64) for n, i in
             (("f1", I), ("b1", I), ("f2", 2 * H))}
    x = torch.randn(T, B, I, dtype=D64)
    tr = gradviz.trace()
    z = torch.zeros(B, H, dtype=D64)
    out_f, hs_f = _run_loop(lambda xt, s, t: cells["f1"](xt, s), x, (z, z), tr, ("h1",))
    out_b, hs_b = _run_loop(lambda xt, s, t: cells["b1"](xt, s), x, (z, z), tr, ("h1_rev",),
                            reverse=True)
    layer1 = torch.cat([out_f, out_b], -1)
    out2, hs_2 = _run_loop(lambda xt, s, t: cells["f2"](xt, s), layer1, (z, z), tr, ("h2",))
    loss = (out2[-1] ** 2).sum() + out2[T // 2].sum() + out_b[0].pow(3).sum()
    loss.backward()
    cap = tr.capture()
    assert cap.names == ("h1", "h1_rev", "h2") and cap.norms["h1"].shape == (T,)
    _check(cap, hs_f, "h1")
    _check(cap, hs_b, "h1_rev")
    _check(cap, hs_2, "h2")
    # The total gradient, not the direct one: h1 at t=0 is reached only through time.
    assert cap.norms["h1"][0] > 0


def test_trace_of_a_layernorm_lstm_and_its_gates():
    torch.manual_seed(2)
    T, B, I, H = 8, 4, 3, 5
    W = nn.Linear(I + H, 4 * H, dtype=D64)
    ln_g, ln_c = nn.LayerNorm(4 * H, dtype=D64), nn.LayerNorm(H, dtype=D64)
    x = torch.randn(T, B, I, dtype=D64)
    tr = gradviz.trace()
    gates_seen = []

    def step(xt, state, t):
        h, c = state
        i, f, g, o = ln_g(W(torch.cat([xt, h], -1))).chunk(4, -1)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        tr.mark(f, t, "f", gate=True)
        tr.mark(g, t, "g", gate=True, span=(-1, 1))
        gates_seen.append(f.detach())
        c = f * c + i * g
        c.retain_grad()
        tr.mark(c, t, "c")
        step.cs.append(c)
        return o * torch.tanh(ln_c(c)), c
    step.cs = []
    z = torch.zeros(B, H, dtype=D64)
    out, hs = _run_loop(step, x, (z, z), tr)
    nn.functional.mse_loss(out[-1], torch.ones(B, H, dtype=D64)).backward()
    cap = tr.capture()
    _check(cap, hs, "h")
    _check(cap, step.cs, "c")
    assert cap.gate_of == {"f": "h", "g": "h"}
    for t, f in enumerate(gates_seen):
        np.testing.assert_allclose(cap.gates["f"]["mean"][t], f.mean(0).numpy(), rtol=1e-12)
        assert cap.gates["f"]["low"][t] == pytest.approx((f < 0.1).double().mean().item())
        assert cap.gates["f"]["high"][t] == pytest.approx((f > 0.9).double().mean().item())


def test_trace_of_a_mingru_loop_and_its_input():
    torch.manual_seed(3)
    T, B, I, H = 10, 2, 3, 4
    Wz, Wh = nn.Linear(I, H, dtype=D64), nn.Linear(I, H, dtype=D64)
    x = torch.randn(T, B, I, dtype=D64, requires_grad=True)
    tr = gradviz.trace()
    xs = tr.inputs(x)

    def step(xt, h, t):        # minGRU (Feng et al. 2024): gates from the input only
        z = torch.sigmoid(Wz(xt))
        return (1 - z) * h + z * Wh(xt)
    out, hs = _run_loop(step, xs, torch.zeros(B, H, dtype=D64), tr)
    (out[-1].sum() + out[3].pow(2).sum()).backward()
    cap = tr.capture()
    _check(cap, hs, "h")
    np.testing.assert_allclose(cap.input_norms["x"], x.grad.norm(dim=(1, 2)).numpy(), rtol=TOL)


def test_trace_edges():
    tr = gradviz.trace()
    a = torch.ones(2, requires_grad=True)
    tr.mark(torch.zeros(2), 0)            # no gradient at all: nan
    b = tr.mark(a * 2, 1)
    tr.mark(a * 3, 2)                     # requires one, reaches no loss: 0
    b.sum().backward()
    cap = tr.capture()
    assert math.isnan(cap.norms["h"][0]) and cap.norms["h"][2] == 0
    assert cap.norms["h"][1] == pytest.approx(math.sqrt(2))
    with pytest.raises(ValueError, match="twice"):
        tr.mark(a * 1, 0)
        tr.mark(a * 1, 0)
    tr.reset()
    with torch.no_grad():                 # an evaluation pass: ignored
        tr.mark(a * 1, 0)
    assert tr.names == ()
    tr.enabled = False
    c = a * 1
    assert tr.mark(c, 0) is c


# -- lengths ------------------------------------------------------------------------------
def _packed_reference(module, x, lengths, loss_fn):
    out, _ = module(pack_padded_sequence(x, lengths, batch_first=module.batch_first,
                                         enforce_sorted=False))
    T = x.shape[1 if module.batch_first else 0]
    loss_fn(pad_packed_sequence(out, batch_first=module.batch_first, total_length=T)[0]).backward()


def _per_sequence_norms(module, x, lengths, weight):
    """‖∂L/∂h_t‖ per layer, direction and t by hand: each sequence alone, unrolled with
    PyTorch's own cells (LSTMCell / GRUCell with the module's weights) and retain_grad,
    for the loss sum(output * weight), which is a sum over sequences."""
    L, D, H = module.num_layers, 2, module.hidden_size
    T = x.shape[0]
    total = np.zeros((L, D, T))
    kind = nn.LSTMCell if isinstance(module, nn.LSTM) else nn.GRUCell
    for b, n in enumerate(lengths.tolist()):
        inp = x[:n, b:b + 1]
        kept = {}
        for k in range(L):
            outs = []
            for d in range(D):
                sfx = f"_l{k}{'_reverse' if d else ''}"
                cell = kind(inp.shape[-1], H, dtype=D64)
                with torch.no_grad():
                    for s in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                        getattr(cell, s).copy_(getattr(module, s + sfx))
                h = torch.zeros(1, H, dtype=D64)
                state = (h, h) if kind is nn.LSTMCell else h
                seq = [None] * n
                for t in (range(n) if d == 0 else range(n - 1, -1, -1)):
                    state = cell(inp[t], state)
                    hh = state[0] if isinstance(state, tuple) else state
                    hh.retain_grad()
                    kept[k, d, t] = hh
                    seq[t] = hh
                outs.append(torch.stack(seq))
            inp = torch.cat(outs, -1)
        (inp * weight[:n, b:b + 1]).sum().backward()
        for (k, d, t), hh in kept.items():
            total[k, d, t] += hh.grad.pow(2).sum().item()
    return np.sqrt(total)


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_lengths_equal_the_packed_module_for_both_directions(kind):
    torch.manual_seed(4)
    module = kind(3, 4, num_layers=2, bidirectional=True, dtype=D64)
    T, B = 7, 4
    x = torch.randn(T, B, 3, dtype=D64, requires_grad=True)
    lengths = torch.tensor([7, 2, 5, 4])
    weight = torch.randn(T, B, 8, dtype=D64)
    loss_fn = lambda out: (out * weight).sum()   # noqa: E731
    cap = gradviz.capture(module, x, loss_fn, lengths=lengths)
    ours = [p.grad.clone() for p in module.parameters()] + [x.grad.clone()]
    module.zero_grad()
    x.grad = None
    _packed_reference(module, x, lengths, loss_fn)
    for a, b in zip(ours, [p.grad for p in module.parameters()] + [x.grad]):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)
    want = _per_sequence_norms(module, x.detach(), lengths, weight)
    np.testing.assert_allclose(cap.dh_norm, want, rtol=TOL, atol=1e-14)
    np.testing.assert_allclose(cap.dx_norm, x.grad.norm(dim=(1, 2)).numpy(), rtol=TOL)
    # A PackedSequence gives the same capture.
    module.zero_grad()
    packed = pack_padded_sequence(x.detach(), lengths, enforce_sorted=False)
    again = gradviz.capture(module, packed, loss_fn)
    np.testing.assert_allclose(again.dh_norm, cap.dh_norm, rtol=TOL)


def test_lengths_are_checked():
    module = nn.GRU(2, 3)
    x = torch.randn(5, 2, 2)
    for bad, words in (([5], "2 whole numbers"), ([0, 3], "between 1 and T"),
                       ([1.5, 2.0], "whole numbers")):
        with pytest.raises(ValueError, match=words):
            gradviz.capture(module, x, lambda o: o.sum(), lengths=bad)


# -- watches ------------------------------------------------------------------------------
def test_a_ragged_watch_keeps_every_capture_padded_with_nan(tmp_path):
    torch.manual_seed(5)
    module = nn.LSTM(2, 3, dtype=D64)
    w = gradviz.watch(module, every=1)
    Ts = (30, 30, 40, 30, 40)
    for T in Ts:
        w.backward(torch.randn(T, 2, 2, dtype=D64), lambda out: out[-1].sum())
    w.close()
    h = w.history
    assert len(h) == 5 and h.dh_norm.shape == (5, 1, 1, 40)
    for i, T in enumerate(Ts):
        assert np.isfinite(h.dh_norm[i, 0, 0, :T]).all() and (h.dh_norm[i, 0, 0, :T] > 0).all()
        assert np.isnan(h.dh_norm[i, 0, 0, T:]).all()
        assert np.isnan(h.dx_norm[i, T:]).all() and np.isfinite(h.dx_norm[i, :T]).all()
    run = gradviz.load_run(gradviz.save_run(w, tmp_path / "ragged"))
    np.testing.assert_array_equal(run.history.dh_norm, h.dh_norm)
    assert run.recorded["sizes"]["seq_len_max"] == 40


def test_a_traced_watch_records_marks_clipping_and_qualified_tensorboard_tags(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(6)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.GRUCell(2, 4, dtype=D64)
            self.head = nn.Linear(4, 1, dtype=D64)

        def forward(self, x, tr):
            h = torch.zeros(x.shape[1], 4, dtype=D64)
            for t in range(x.shape[0]):
                h = tr.mark(self.cell(x[t], h), t)
            return self.head(h)

    model = Model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tr = gradviz.trace()
    board = tmp_path / "tb"
    with gradviz.watch(model, trace=tr, every=2, optimizer=opt, path=tmp_path / "run",
                       tensorboard=board) as w:
        for step in range(5):
            opt.zero_grad()
            x = torch.randn(6 + step % 2, 3, 2, dtype=D64)
            w.backward((model(x, tr) - 1).pow(2).sum())
            nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
            opt.step()
    h = w.history
    assert list(h.step) == [0, 2, 4] and h.clipped.all()
    np.testing.assert_allclose(h.grad_norm_clipped, 1e-3, rtol=1e-6)
    assert h.param_names == ("cell.weight_ih", "cell.weight_hh", "cell.bias_ih",
                             "cell.bias_hh", "head.weight", "head.bias")
    run = gradviz.load_run(tmp_path / "run")
    assert run.recorded["marks"] == ["h"] and run.recorded["optimizer"] == "SGD"
    assert run.summary["clipped_steps"] == 3 and run.recorded["model"] == "Model"
    clipping = run.recorded["clipping"]
    assert clipping["clipped_steps"] == 3 and clipping["captured_steps"] == 3
    assert clipping["largest_after_clipping"] == pytest.approx(1e-3, rel=1e-5)
    acc = EventAccumulator(str(board))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"grad_2.0_norm/cell.weight_hh", "grad_2.0_norm/head.bias", "grad_2.0_norm_total",
            "grad_2.0_norm_total/post_clip"} <= tags
    total = {e.step: e.value for e in acc.Scalars("grad_2.0_norm_total")}
    post = {e.step: e.value for e in acc.Scalars("grad_2.0_norm_total/post_clip")}
    assert sorted(total) == [0, 2, 4]
    for i, step in enumerate(h.step):
        assert total[step] == pytest.approx(h.grad_norm[i], rel=1e-6)
        assert post[step] == pytest.approx(1e-3, rel=1e-5)


def test_a_watch_of_the_whole_model_names_every_parameter(tmp_path):
    torch.manual_seed(7)
    model = nn.ModuleDict({"emb": nn.Embedding(5, 2), "lstm": nn.LSTM(2, 3, num_layers=6),
                           "head": nn.Linear(3, 1)})
    with gradviz.watch(model["lstm"], model=model, path=tmp_path / "big") as w:
        tokens = torch.randint(0, 5, (4, 2))
        w.backward(model["emb"](tokens), lambda out: model["head"](out[-1]).sum())
    names = w.history.param_names
    assert names[0] == "emb.weight" and "lstm.weight_hh_l5" in names and names[-1] == "head.bias"
    owners = dict(zip(names, w.history.param_owners))
    assert owners["lstm.weight_hh_l5"] == (5, 0) and owners["head.bias"] is None
    run = gradviz.load_run(tmp_path / "big")     # six layers: beyond the app, still saved
    assert run.recorded["parameters"] == sum(p.numel() for p in model.parameters())
    assert run.recorded["sizes"]["num_layers"] == 6 and run.config is None


@pytest.mark.slow
def test_the_window_opens_a_traced_run_and_a_bigger_model(tmp_path, qtbot):
    from gradviz.ui.prefs import Prefs
    from gradviz.ui.window import MainWindow

    torch.manual_seed(8)
    cell = nn.RNNCell(2, 3)
    tr = gradviz.trace()
    with gradviz.watch(cell, trace=tr, path=tmp_path / "traced") as w:
        for _ in range(3):
            h = torch.zeros(2, 3)
            for t in range(6):
                h = tr.mark(cell(torch.randn(2, 2), h), t)
                tr.mark(h, t, "act", gate=True, span=(-1, 1))
                out = tr.mark(torch.tanh(h), t, "out")
            w.backward(h.sum() + out.sum())
    lstm = nn.LSTM(2, 3, num_layers=6)
    with gradviz.watch(lstm, path=tmp_path / "deep") as w:
        w.backward(torch.randn(5, 2, 2), lambda out: out.sum())
    for run in ("traced", "deep"):
        window = MainWindow(prefs=Prefs(tmp_path / "settings.ini"))
        qtbot.addWidget(window)
        failures = []
        window.scheduler.view_failed.connect(lambda key, text: failures.append((key, text)))
        window.open_run(tmp_path / run)
        window.draw_now()
        assert not failures, failures
        # Shown as what it is, not as a task of the app's.
        assert "Recorded from Python" in window.windowTitle()
        assert ("marks h, out" if run == "traced" else "LSTM") in window.windowTitle()
        view = window.views["gradtime"]
        view.set_data(window.history, window.history.latest)
        selector = view.selector
        items = [selector.itemText(i) for i in range(selector.count())]
        assert items == (["h", "out"] if run == "traced" else
                         [f"layer {k}" for k in range(1, 7)])
        window.close()


def test_captures_and_histories_render_inline_as_png():
    module = nn.GRU(2, 3)
    cap = gradviz.capture(module, torch.randn(6, 2, 2), lambda out: out[-1].sum())
    png = cap._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    w = gradviz.watch(module)
    for T in (5, 7):
        w.backward(torch.randn(T, 2, 2), lambda out: out[-1].sum())
    w.close()
    assert w.history._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    from gradviz.engine.runs.history import History
    assert History()._repr_png_() is None


def test_a_watch_reads_the_norm_after_the_users_clipping():
    torch.manual_seed(9)
    lstm = nn.LSTM(2, 3, dtype=D64)
    opt = torch.optim.Adam(lstm.parameters(), lr=1e-3)
    with gradviz.watch(lstm, every=2, optimizer=opt) as w:
        for step in range(4):
            opt.zero_grad()
            w.backward(torch.randn(5, 2, 2, dtype=D64), lambda out: out.pow(2).sum())
            if step < 2:
                nn.utils.clip_grad_norm_(lstm.parameters(), 1e-4)
            opt.step()
    h = w.history
    assert list(h.clipped) == [True, False]
    assert h.grad_norm_clipped[0] == pytest.approx(1e-4, rel=1e-6)
    assert h.grad_norm_clipped[1] == h.grad_norm[1] > 1e-4
    recorded = w.recorded()
    assert recorded["optimizer"] == "Adam" and recorded["lr"] == 1e-3
    assert recorded["clipping"]["clipped_steps"] == 1 and "task" not in recorded
    assert recorded["clipping"]["read"] == "optimizer step pre-hook"


def test_the_gradient_flow_view_draws_absent_steps_apart_from_non_finite_ones(qtbot):
    from gradviz.ui.views.gradflow import ABSENT_INDEX, NONFINITE_INDEX, GradflowView

    module = nn.GRU(2, 3)
    w = gradviz.watch(module)
    for T in (4, 6, 4):
        w.backward(torch.randn(T, 2, 2), lambda out: out[-1].sum())
    w.close()
    view = GradflowView()
    qtbot.addWidget(view)
    view.set_data(w.history, w.history.latest)
    image = view.image_array()
    assert image.shape == (3, 6)
    assert (image[[0, 2], 4:] == ABSENT_INDEX).all() and (image[1] < ABSENT_INDEX).all()
    assert not (image == NONFINITE_INDEX).any()


def test_gradient_through_time_overlays_the_input_gradient_where_recorded(qtbot):
    from gradviz.ui.views.gradtime import GradtimeView
    from gradviz.ui.views.inputgrad import INPUT_LABEL

    torch.manual_seed(10)
    module = nn.GRU(2, 3, dtype=D64)
    x = torch.randn(6, 2, 2, dtype=D64, requires_grad=True)
    w = gradviz.watch(module)
    w.backward(x, lambda out: out[-1].sum())
    w.close()
    np.testing.assert_allclose(w.history.dx_norm[0], x.grad.norm(dim=(1, 2)).numpy(), rtol=1e-6)
    view = GradtimeView()
    qtbot.addWidget(view)
    view.set_data(w.history, w.history.latest)
    assert len(view.input_overlay.item.xData) == 6
    assert INPUT_LABEL in [e[2] for e in view.colour_key.entries]
    session = gradviz.Session(gradviz.RunConfig(cell="gru", seq_len=6, hidden=4, steps=1))
    session.run()                          # gradviz's own training records no ‖∂L/∂x_t‖
    view.set_data(session.history, session.history.latest)
    assert len(view.input_overlay.item.xData or []) == 0
    assert INPUT_LABEL not in [e[2] for e in view.colour_key.entries]


def test_a_watch_with_lengths_trains_as_the_packed_module():
    torch.manual_seed(11)
    module = nn.LSTM(2, 3, bidirectional=True, batch_first=True, dtype=D64)
    twin = nn.LSTM(2, 3, bidirectional=True, batch_first=True, dtype=D64)
    twin.load_state_dict(module.state_dict())
    w = gradviz.watch(module, every=2)
    weight = torch.randn(3, 8, 6, dtype=D64)
    for step in range(3):
        x = torch.randn(3, 8, 2, dtype=D64)
        lengths = torch.tensor([8, 3, 6 - step])
        loss_fn = lambda out: (out * weight[:, :out.shape[1]]).sum()   # noqa: E731
        module.zero_grad()
        twin.zero_grad()
        loss = w.backward(x, loss_fn, lengths=lengths)
        _packed_reference(twin, x, lengths, loss_fn)
        for a, b in zip(module.parameters(), twin.parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=TOL)
        assert isinstance(loss, float)
    w.close()
    assert list(w.history.step) == [0, 2] and w.history.dh_norm.shape == (2, 1, 2, 8)


def test_a_ragged_history_exports_each_row_over_its_own_steps(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gradviz.tensorboard import export_history

    module = nn.GRU(2, 3, dtype=D64)
    w = gradviz.watch(module)
    for T in (5, 8, 5):
        w.backward(torch.randn(T, 2, 2, dtype=D64), lambda out: out[-1].sum())
    w.close()
    export_history(w.history, tmp_path)
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    last = {e.step: e.value for e in acc.Scalars("dh_norm/last/l0")}
    for i, T in enumerate((5, 8, 5)):
        assert last[i] == pytest.approx(float(w.history.dh_norm[i, 0, 0, T - 1]), rel=1e-6)
    rho = {e.step: e.value for e in acc.Scalars("rho/l0/W_hr")}
    assert sorted(rho) == [0, 1, 2]
    assert len(acc.Images("dx_norm/log10")) == 3
