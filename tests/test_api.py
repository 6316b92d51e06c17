"""gradviz.capture on a user's torch.nn.RNN / LSTM / GRU, against PyTorch itself.

The reference is the module's weights unrolled over time with PyTorch's own one-step cell
functions (torch.lstm_cell, …) and autograd, every h_t and c_t kept with retain_grad, so
its .grad is the total gradient reaching it; the parameter gradients are compared with the
module's own backward pass.
"""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gradviz

TOL = 1e-10
MODULES = {
    "rnn-tanh": lambda **kw: nn.RNN(nonlinearity="tanh", **kw),
    "rnn-relu": lambda **kw: nn.RNN(nonlinearity="relu", **kw),
    "lstm": lambda **kw: nn.LSTM(**kw),
    "gru": lambda **kw: nn.GRU(**kw),
}


def make(kind, layers=1, bidirectional=False, batch_first=False, dtype=torch.float64, **kw):
    torch.manual_seed(7)
    return MODULES[kind](input_size=4, hidden_size=5, num_layers=layers,
                         bidirectional=bidirectional, batch_first=batch_first,
                         dtype=dtype, **kw)


def step_fn(module):
    if isinstance(module, nn.LSTM):
        return lambda x, h, c, w: torch.lstm_cell(x, (h, c), *w)
    if isinstance(module, nn.GRU):
        return lambda x, h, c, w: (torch.gru_cell(x, h, *w), None)
    cell = torch.rnn_tanh_cell if module.nonlinearity == "tanh" else torch.rnn_relu_cell
    return lambda x, h, c, w: (cell(x, h, *w), None)


def unrolled(module, x, h0=None, tbptt=0):
    """The module's recurrence unrolled with autograd over x (T, B, I). Returns the output
    (T, B, D·H) and hs[k][d] / cs[k][d], lists over time order of h_t / c_t (retained)."""
    T, B, _ = x.shape
    D = 2 if module.bidirectional else 1
    H = module.hidden_size
    step = step_fn(module)
    hs, cs, layer_in = [], [], x
    for k in range(module.num_layers):
        outs, hk, ck = [], [], []
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            w = [getattr(module, n + sfx) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            j = k * D + d
            if h0 is None:
                h = c = torch.zeros(B, H, dtype=x.dtype)
            else:
                h, c = (h0[0][j], h0[1][j]) if isinstance(h0, tuple) else (h0[j], None)
            xin = layer_in if d == 0 else layer_in.flip(0)
            h_list, c_list = [], []
            for t in range(T):
                if tbptt and t and t % tbptt == 0:
                    h = h.detach()
                    c = None if c is None else c.detach()
                h, c = step(xin[t], h, c, w)
                h.retain_grad()
                if c is not None:
                    c.retain_grad()
                h_list.append(h)
                c_list.append(c)
            if d:
                h_list.reverse()
                c_list.reverse()
            hk.append(h_list)
            ck.append(c_list)
            outs.append(torch.stack(h_list))
        hs.append(hk)
        cs.append(ck)
        layer_in = torch.cat(outs, -1)
    return layer_in, hs, cs


def user_input(module, T=7, B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, 4, generator=g, dtype=module.weight_ih_l0.dtype)
    return (x.transpose(0, 1).contiguous() if module.batch_first else x), x


def loss_for(shape, dtype, seed=2):
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return lambda out: (torch.sin(out) * weight).sum()


def norms(tensors):
    return np.array([t.grad.norm().item() for t in tensors])


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", list(MODULES))
def test_capture_matches_autograd_and_the_modules_backward(kind, layers, bidirectional,
                                                           batch_first, cell_path):
    module = make(kind, layers, bidirectional, batch_first)
    own = copy.deepcopy(module)
    x, x_tbi = user_input(module)
    D = 2 if bidirectional else 1
    loss_fn = loss_for(own(x)[0].shape, torch.float64)

    cap = gradviz.capture(module, x, loss_fn)

    ref_out, hs, cs = unrolled(own, x_tbi)
    assert torch.allclose(ref_out, own(x_tbi if not batch_first else x)[0]
                          if not batch_first else own(x)[0].transpose(0, 1), atol=1e-12)
    ref_loss = loss_fn(ref_out.transpose(0, 1) if batch_first else ref_out)
    ref_loss.backward()
    assert cap.loss == pytest.approx(ref_loss.item(), abs=TOL)
    assert cap.dh_norm.shape == (layers, D, 7) and cap.dh_norm.dtype == np.float64
    for k in range(layers):
        for d in range(D):
            np.testing.assert_allclose(cap.dh_norm[k, d], norms(hs[k][d]), rtol=0, atol=TOL)
            if kind == "lstm":
                np.testing.assert_allclose(cap.dc_norm[k, d], norms(cs[k][d]), rtol=0, atol=TOL)
            np.testing.assert_allclose(cap.probe_h[k, d],
                                       torch.stack(hs[k][d])[:, 0].detach().numpy(), atol=TOL)
    assert (cap.dc_norm is None) == (kind != "lstm")

    for p in own.parameters():
        p.grad = None
    loss_fn(own(x)[0]).backward()
    mine, theirs = dict(module.named_parameters()), dict(own.named_parameters())
    assert cap.param_names == tuple(theirs)
    for name, p in theirs.items():
        torch.testing.assert_close(mine[name].grad, p.grad, rtol=0, atol=TOL)
    np.testing.assert_allclose(cap.param_grad_norm, norms(theirs.values()), rtol=0, atol=TOL)
    assert cap.grad_norm == pytest.approx(np.linalg.norm(norms(theirs.values())), abs=TOL)
    assert cap.param_owners == tuple((int(n.split("_l")[1][0]), int("reverse" in n))
                                     for n in theirs)


def test_gates_saturation_and_rho_are_the_lstms():
    module = make("lstm", 1, True)
    x, _ = user_input(module, T=6, B=4)
    cap = gradviz.capture(module, x, lambda out: out.pow(2).sum())
    H = 5
    for d, sfx in enumerate(("_l0", "_l0_reverse")):
        w_ih, w_hh, b_ih, b_hh = (getattr(module, n + sfx).detach()
                                  for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        xs = x if d == 0 else x.flip(0)
        h = c = torch.zeros(4, H, dtype=torch.float64)
        acts = []
        for t in range(6):
            z = xs[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
            i, f, o = (torch.sigmoid(z[:, s * H:(s + 1) * H]) for s in (0, 1, 3))
            g = torch.tanh(z[:, 2 * H:3 * H])
            c = f * c + i * g
            h = o * torch.tanh(c)
            acts.append(torch.stack([i, f, g, o], 1))        # (B, G, H)
        acts = torch.stack(acts)                              # (T, B, G, H)
        if d:
            acts = acts.flip(0)
        # The bottom and top 10% of each gate's range: (0, 1) for σ, (-1, 1) for g = tanh.
        lo = torch.tensor([0.1, 0.1, -0.8, 0.1], dtype=torch.float64).view(1, 1, 4, 1)
        hi = torch.tensor([0.9, 0.9, 0.8, 0.9], dtype=torch.float64).view(1, 1, 4, 1)
        np.testing.assert_allclose(cap.gates[0, d], acts.mean(1).permute(1, 0, 2).numpy(),
                                   atol=TOL)
        np.testing.assert_allclose(cap.sat_low[0, d],
                                   (acts < lo).double().mean((1, 3)).T.numpy(), atol=TOL)
        np.testing.assert_allclose(cap.sat_high[0, d],
                                   (acts > hi).double().mean((1, 3)).T.numpy(), atol=TOL)
        blocks = w_hh.view(4, H, H)
        np.testing.assert_allclose(cap.rho[0, d],
                                   torch.linalg.eigvals(blocks).abs().amax(-1).numpy(), rtol=1e-9)
    assert cap.gate_names == ("i", "f", "g", "o") and cap.rho_names == ("W_hi", "W_hf", "W_hg", "W_ho")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_initial_state_input_gradient_readout_and_accumulation(kind):
    """h0 given, x from an 'embedding' that needs its gradient, a readout inside the loss,
    .grad already holding something: all as the module's own backward leaves them."""
    module = make(kind, 2, True, batch_first=True)
    own = copy.deepcopy(module)
    head = nn.Linear(10, 1, dtype=torch.float64)
    own_head = copy.deepcopy(head)
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(3, 7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    own_emb = emb.detach().clone().requires_grad_()
    shape = (4, 3, 5)
    h0 = torch.randn(shape, generator=g, dtype=torch.float64)
    c0 = torch.randn(shape, generator=g, dtype=torch.float64)
    state = (h0, c0) if kind == "lstm" else h0
    for a, b in zip(module.parameters(), own.parameters()):
        a.grad = torch.full_like(a, 0.25)
        b.grad = torch.full_like(b, 0.25)

    gradviz.capture(module, torch.tanh(emb), lambda out: head(out).pow(2).mean(), h0=state)
    own_out, _ = own(torch.tanh(own_emb), state)
    own_head(own_out).pow(2).mean().backward()

    for a, b in [*zip(module.parameters(), own.parameters()),
                 *zip(head.parameters(), own_head.parameters()), (emb, own_emb)]:
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=TOL)


def test_truncated_bptt_matches_a_detached_unroll():
    module = make("gru", 2, True)
    own = copy.deepcopy(module)
    x, _ = user_input(module, T=9)
    loss_fn = loss_for((9, 3, 10), torch.float64)
    cap = gradviz.capture(module, x, loss_fn, tbptt=4)
    ref_out, hs, _ = unrolled(own, x, tbptt=4)
    loss_fn(ref_out).backward()
    for k in range(2):
        for d in range(2):
            np.testing.assert_allclose(cap.dh_norm[k, d], norms(hs[k][d]), rtol=0, atol=TOL)
    for a, b in zip(module.parameters(), own.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=TOL)


def test_float32_unbatched_and_no_bias():
    module = nn.LSTM(4, 6, num_layers=2, bias=False)
    own = copy.deepcopy(module)
    x = torch.randn(8, 4)
    cap = gradviz.capture(module, x, lambda out: out[-1].sum())
    own(x)[0][-1].sum().backward()
    assert cap.dh_norm.dtype == np.float32 and cap.dh_norm.shape == (2, 1, 8)
    for a, b in zip(module.parameters(), own.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)
    # Only the last step's output is in the loss: the top layer's gradient at t = T-1 is the
    # direct one, d(sum h)/dh = 1 for each of the 6 units.
    assert cap.dh_norm[1, 0, -1] == pytest.approx(np.sqrt(6), rel=1e-6)


def test_capture_leaves_torchs_random_state_alone():
    module = make("rnn-tanh", 2, True)
    x, _ = user_input(module)
    state = torch.get_rng_state()
    gradviz.capture(module, x, lambda out: out.sum())
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("build, x, h0, message", [
    (lambda: nn.LSTM(4, 5, proj_size=3), None, None, "proj_size=3"),
    (lambda: nn.GRU(4, 5, num_layers=2, dropout=0.5), None, None, "dropout=0.5"),
    (lambda: nn.LSTMCell(4, 5), None, None, "follows torch.nn.RNN, nn.LSTM and nn.GRU"),
    (lambda: nn.RNN(4, 5), torch.randn(3, 2, 7), None, "input_size is 4"),
    (lambda: nn.RNN(4, 5), torch.randn(3, 2, 4, dtype=torch.float64), None, "must agree"),
    (lambda: nn.RNN(4, 5), None, torch.zeros(1, 2, 5, requires_grad=True), "h0.detach()"),
    (lambda: nn.LSTM(4, 5), None, torch.zeros(1, 2, 5), "a pair (h0, c0)"),
    (lambda: nn.GRU(4, 5), None, torch.zeros(1, 3, 5), "need (1, 2, 5)"),
    (lambda: nn.GRU(4, 5).half(), torch.randn(3, 2, 4).half(), None, "float32 or float64"),
])
def test_refusals_say_why(build, x, h0, message):
    module = build()
    x = torch.randn(3, 2, 4) if x is None else x
    with pytest.raises((TypeError, ValueError)) as err:
        gradviz.capture(module, x, lambda out: out.sum(), h0=h0)
    assert message in str(err.value)


def test_dropout_is_no_obstacle_in_eval_mode():
    module = make("gru", 2, dropout=0.5).eval()
    own = copy.deepcopy(module)
    x, _ = user_input(module)
    gradviz.capture(module, x, lambda out: out.pow(2).sum())
    own(x)[0].pow(2).sum().backward()
    for a, b in zip(module.parameters(), own.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=TOL)


def test_a_loss_that_ignores_the_output_is_refused():
    module = make("gru")
    x, _ = user_input(module)
    with pytest.raises(ValueError, match="scalar tensor computed from the output"):
        gradviz.capture(module, x, lambda out: torch.tensor(1.0))


# -- watch, save_run, load_run, show ------------------------------------------------------
def batches(n, batch_first=True):
    g = torch.Generator().manual_seed(5)
    for _ in range(n):
        x = torch.randn(6, 9, 4, generator=g, dtype=torch.float64)
        yield (x if batch_first else x.transpose(0, 1)), x[:, :, 0].sum(1, keepdim=True)


def test_watch_captures_every_k_steps_and_trains_as_the_plain_loop(tmp_path):
    module = make("lstm", 2, batch_first=True)
    head = nn.Linear(5, 1, dtype=torch.float64)
    own, own_head = copy.deepcopy(module), copy.deepcopy(head)
    opt = torch.optim.SGD([*module.parameters(), *head.parameters()], lr=0.05)
    own_opt = torch.optim.SGD([*own.parameters(), *own_head.parameters()], lr=0.05)
    w = gradviz.watch(module, every=3, optimizer=opt)
    for x, y in batches(8):
        opt.zero_grad()
        loss = w.backward(x, lambda out: nn.functional.mse_loss(head(out[:, -1]), y))
        own_opt.zero_grad()
        own_loss = nn.functional.mse_loss(own_head(own(x)[0][:, -1]), y)
        own_loss.backward()
        assert loss == pytest.approx(own_loss.item(), abs=TOL)
        for a, b in zip([*module.parameters(), *head.parameters()],
                        [*own.parameters(), *own_head.parameters()]):
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=TOL)
        opt.step()
        own_opt.step()
    assert list(w.history.step) == [0, 3, 6] and w.steps == 8
    assert np.all(w.history.lr == 0.05) and w.history.latest.step == 6
    config = w.config
    assert (config.cell, config.hidden, config.layers, config.bidirectional, config.seq_len,
            config.batch_size, config.dtype, config.lr) == ("lstm", 5, 2, False, 9, 6,
                                                            "float64", 0.05)

    run = gradviz.load_run(gradviz.save_run(w, tmp_path / "mine"))
    # The file says the run came from Python, with the module's sizes: no gradviz settings.
    assert run.config is None and run.from_python and not run.can_continue
    assert list(run.history.step) == [0, 3, 6]
    np.testing.assert_allclose(run.history.dh_norm, w.history.dh_norm)
    rec = run.recorded
    assert rec["source"] == "python" and rec["api"] == "gradviz.watch"
    assert rec["sizes"]["cell"] == "lstm" and rec["sizes"]["hidden_size"] == 5
    assert rec["sizes"]["num_layers"] == 2 and rec["sizes"]["batch_size"] == 6
    assert rec["optimizer"] == "SGD" and rec["lr"] == 0.05 and rec["dtype"] == "float64"
    assert run.summary["steps_done"] == 8 and "task" not in run.summary


def test_a_watch_in_a_with_block_saves_on_leaving(tmp_path):
    module = make("gru")
    with gradviz.watch(module, every=2, path=tmp_path / "run") as w:
        for x, _ in batches(3, batch_first=False):
            w.backward(x, lambda out: out.pow(2).mean())
    run = gradviz.load_run(tmp_path / "run")
    assert list(run.history.step) == [0, 2] and run.recorded["sizes"]["cell"] == "gru"
    assert np.isnan(run.history.lr).all() and np.isnan(run.history.baseline)


def test_save_run_takes_sessions_runs_and_histories_with_their_config(tmp_path):
    config = gradviz.RunConfig(cell="gru", seq_len=8, hidden=4, steps=3)
    session = gradviz.Session(config)
    session.run()
    gradviz.save_run(session, tmp_path / "a")
    run = gradviz.load_run(tmp_path / "a")
    assert run.config == config and len(run.history) == 3
    with pytest.raises(ValueError, match="pass config="):
        gradviz.save_run(run.history, tmp_path / "b")
    gradviz.save_run(run.history, tmp_path / "b", config=config)
    gradviz.save_run(run, tmp_path / "c")
    for folder in "bc":
        np.testing.assert_array_equal(gradviz.load_run(tmp_path / folder).history.loss,
                                      run.history.loss)
    with pytest.raises(TypeError, match="Session, Watch, SavedRun or History"):
        gradviz.save_run(42, tmp_path / "d")


def test_a_watched_run_opens_in_the_window(tmp_path, qtbot):
    from gradviz.ui.inprocess import InProcessWorker
    from gradviz.ui.model import AppModel
    from gradviz.ui.prefs import Prefs
    from gradviz.ui.window import MainWindow

    module = make("lstm", 1, True)
    w = gradviz.watch(module)
    for x, _ in batches(3, batch_first=False):
        w.backward(x, lambda out: out.pow(2).mean())
    gradviz.save_run(w, tmp_path / "run")
    # Nothing is trained: the training backend is a thread, not a process.
    window = MainWindow(model=AppModel(prefs=Prefs(tmp_path / "settings.ini"),
                                       backend=InProcessWorker))
    qtbot.addWidget(window)
    failures = []
    window.scheduler.view_failed.connect(lambda key, text: failures.append(key))
    window.open_run(tmp_path / "run")
    window.draw_now()
    assert not failures and len(window.history) == 3
    assert window.state.live.recorded["sizes"]["bidirectional"]
    window.close()


def test_show_starts_the_app_in_a_process_of_its_own(tmp_path, monkeypatch):
    import subprocess
    import sys

    started = []

    class FakePopen:
        def __init__(self, args, **kwargs):
            started.append((args, kwargs))

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    session = gradviz.Session(gradviz.RunConfig(cell="gru", seq_len=6, hidden=4, steps=2))
    session.run()
    assert isinstance(gradviz.show(session), FakePopen)
    (args, kwargs), = started
    assert args[:3] == [sys.executable, "-m", "gradviz.api.showchild"]
    assert kwargs["start_new_session"] and len(gradviz.load_run(args[3]).history) == 2
    # Not the caller's streams: a log file in the temporary run folder, removed with it.
    assert kwargs["stdout"] not in (None, sys.stdout) and kwargs["stdin"] == subprocess.DEVNULL
    assert args[4] == str(Path(args[3]) / "show.log") and args[5:] == ["--remove", args[3]]
    import shutil
    shutil.rmtree(args[3])                # the app that would have removed it never started
    from gradviz.engine.runs.runformat import RunFileError
    with pytest.raises(RunFileError, match="no such run folder"):
        gradviz.show(tmp_path / "nothing")
    assert len(started) == 1


@pytest.mark.slow
def test_show_does_not_hold_a_pipe_and_cleans_its_temporary_folder(tmp_path, monkeypatch):
    """A piped script ends while the app is open; the child removes what show() made."""
    import subprocess
    import sys
    import time

    from gradviz.api import showchild

    root = Path(__file__).resolve().parents[1]
    code = ("import gradviz, sys\n"
            "s = gradviz.Session(gradviz.RunConfig(cell='gru', seq_len=6, hidden=4, steps=1))\n"
            "s.run(); p = gradviz.show(s); print(p.pid, p.args[3]); sys.stdout.flush()\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(root), "QT_QPA_PLATFORM": "offscreen"}
    start = time.monotonic()
    # capture_output holds pipes: run() returns only when every writer of them has closed.
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=root, timeout=120)
    assert done.returncode == 0, done.stderr
    pid, folder = done.stdout.split()
    folder = Path(folder)
    assert time.monotonic() - start < 100 and folder.name.startswith("gradviz-show-")
    # The child's own clean-up, run here with the app stubbed out.
    made = tmp_path / "gradviz-show-x"
    made.mkdir()
    log = made / "show.log"
    log.write_text("")
    monkeypatch.setattr("gradviz.api.show.open_command", lambda args: 0)
    assert showchild.main([str(made), str(log), "--remove", str(made)]) == 0
    assert not made.exists()
    import os
    import signal
    try:                                  # the app started above, by its own process group
        os.killpg(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        pass
    for _ in range(100):                  # its child removes the temporary folder on leaving
        if not folder.exists():
            break
        time.sleep(0.1)
    assert not folder.exists()


def test_gradviz_open_checks_the_run_first(tmp_path, monkeypatch, capsys):
    from gradviz import cli
    from gradviz.ui import app

    assert cli.main(["open", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err == f"gradviz open: {tmp_path / 'nothing'}: no such run folder\n"
    assert cli.main(["open"]) == 2 and "give one run folder" in capsys.readouterr().err
    session = gradviz.Session(gradviz.RunConfig(cell="gru", seq_len=6, hidden=4, steps=1))
    session.run()
    session.save(tmp_path / "run")
    opened = []
    monkeypatch.setattr(app, "run_app", lambda run=None: opened.append(run) or 0)
    assert cli.main(["open", str(tmp_path / "run")]) == 0 and opened == [str(tmp_path / "run")]


def test_import_gradviz_is_light_and_python_m_gradviz_works():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import sys, gradviz; gradviz.RunConfig; print(sorted(m for m in "
            "('torch', 'PyQt6', 'pyqtgraph') if m in sys.modules))")
    env = {**__import__("os").environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=root, check=True).stdout
    assert out.strip() == "[]"
    done = subprocess.run([sys.executable, "-m", "gradviz", "--version"], capture_output=True,
                          text=True, env=env, cwd=root)
    assert done.returncode == 0 and done.stdout == f"gradviz {gradviz.__version__}\n"
    assert set(gradviz.__all__) >= {"RunConfig", "Session", "capture", "watch", "load_run",
                                    "save_run", "show"}
