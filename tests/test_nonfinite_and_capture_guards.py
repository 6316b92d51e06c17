"""Non-finite weights are refused, never crash; capture/watch check memory first, leave
``.grad`` as it was on any failure and say what autocast does (issue 20, points 2 and 9).

torch.linalg.eigvals on a NaN or inf matrix crashes the process in MKL's DGEBAL (exit 139)
on some machines; every route that reached it with a user's weights is probed here, the
crashing ones in a child process so that a crash fails the test instead of the run.
"""
import math
import queue
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from torch import nn

import gradviz
from gradviz.api import guards
from gradviz.config import RunConfig
from gradviz.engine.model.finite import NonFiniteWeights
from gradviz.engine.model.init import spectral_radius
from gradviz.engine.model.network import Network
from gradviz.engine.analysis.spectrum import SpectrumTracker
from gradviz.engine.training import memory
from gradviz.engine.training.session import Session


def in_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)


def lstm():
    torch.manual_seed(0)
    return nn.LSTM(3, 6)


def loss_fn(out):
    return out[-1].pow(2).sum()


# -- non-finite weights ----------------------------------------------------------------------
def test_capture_refuses_nan_weights_naming_the_tensor():
    child = in_child("""
        import torch, gradviz
        m = torch.nn.LSTM(3, 32)
        with torch.no_grad():
            m.weight_hh_l0[5, 7] = float("nan")
        try:
            gradviz.capture(m, torch.randn(10, 4, 3), lambda o: o.sum())
        except ValueError as exc:
            print("REFUSED", exc)
    """)
    assert child.returncode == 0, child.stderr[-500:]
    assert child.stdout.startswith("REFUSED gradviz.capture: weight_hh_l0 holds NaN")
    assert len(child.stdout.strip().splitlines()) == 1


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_capture_refuses_every_non_finite_parameter(bad):
    for name in ("weight_ih_l0", "bias_hh_l0"):
        m = lstm()
        with torch.no_grad():
            getattr(m, name).view(-1)[2] = bad
        with pytest.raises(NonFiniteWeights, match=f"gradviz.capture: {name} holds NaN or "
                                                   "infinite values"):
            gradviz.capture(m, torch.randn(5, 2, 3), loss_fn)


def test_a_watch_loop_whose_optimiser_made_nan_gets_one_error():
    m = lstm()
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    w = gradviz.watch(m, every=2, optimizer=opt)
    x = torch.randn(5, 2, 3)
    w.backward(x, loss_fn)
    opt.step()
    opt.zero_grad()
    w.backward(x, lambda out: loss_fn(out) * math.nan)     # PyTorch's own step: NaN grads
    opt.step()                                             # the optimiser makes NaN weights
    assert not torch.isfinite(m.weight_hh_l0).all()
    with pytest.raises(ValueError, match="gradviz.capture: weight_ih_l0 holds NaN"):
        w.backward(x, loss_fn)
    assert w.captured == 1


def test_every_decomposition_refuses_non_finite_blocks():
    w = torch.randn(3, 8, 8, dtype=torch.float64)
    w[1, 2, 2] = math.nan
    with pytest.raises(NonFiniteWeights, match="W_hh"):
        spectral_radius(w[1], "W_hh")
    tracker = SpectrumTracker()
    with pytest.raises(NonFiniteWeights, match="the spectrum: block b holds NaN"):
        tracker.update(w, 0, ["block a", "block b", "block c"])
    net = Network("gru", 2, 4, 1, 1, False, torch.float64, "cpu")
    with torch.no_grad():
        net.weight_hh_l0[0, 0] = math.inf
    from gradviz.engine.analysis.spectrum import spectral
    with pytest.raises(NonFiniteWeights, match="weight_hh_l0"):
        spectral(net)


def nan_state_run(folder):
    config = RunConfig(task="adding", cell="gru", seq_len=6, hidden=4, batch_size=2)
    session = Session(config)
    session.run(2)
    session.save(folder)
    with np.load(folder / "state.npz") as f:
        arrays = dict(f)
    arrays["weight_1"] = arrays["weight_1"].copy()
    arrays["weight_1"].flat[3] = np.nan
    np.savez_compressed(folder / "state.npz", **arrays)
    return config


@pytest.mark.slow
def test_gradviz_run_resume_of_nan_weights_exits_2_in_one_line(tmp_path):
    nan_state_run(tmp_path)
    child = subprocess.run([sys.executable, "-m", "gradviz", "run", "--resume", str(tmp_path),
                            "--steps", "2", "--quiet"], capture_output=True, text=True,
                           timeout=120)
    assert child.returncode == 2, child.stderr[-800:]
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1 and "weight_hh_l0" in lines[0] and "NaN" in lines[0]
    assert "Traceback" not in child.stderr


def test_the_training_process_reports_nan_weights_and_lives_on(tmp_path):
    from gradviz.engine.training import messages as m
    from gradviz.engine.training.process import serve

    config = nan_state_run(tmp_path)
    commands, results = queue.Queue(), queue.Queue()
    commands.put(m.Reset(4, config.to_dict(), resume=str(tmp_path)))
    commands.put(m.Reset(5, config.to_dict()))               # the app's Reset goes on
    commands.put(m.Step())
    commands.put(m.Quit())
    serve(commands, results, 1, config.to_dict())
    reports = [results.get() for _ in range(results.qsize())]
    errors = [r for r in reports if type(r).__name__ == "Error"]
    assert len(errors) == 1 and errors[0].run_id == 4 and errors[0].traceback == ""
    assert "weight_hh_l0" in errors[0].message and "NaN" in errors[0].message
    assert [r for r in reports if r.run_id == 5 and getattr(r, "captures", ())]


# -- memory -------------------------------------------------------------------------------------
def test_capture_refuses_what_will_not_fit_before_allocating():
    """The issue's probe: x (200000, 32, 1) on nn.LSTM(1, 512) passed 4 GB in 6 s before a
    guard killed it; here it is refused at once, in one line. The estimate itself is the
    training step's (tests/test_faults_memory.py holds it against measured peaks)."""
    m = nn.LSTM(1, 512)
    x = torch.randn(200000, 32, 1)
    need = guards.capture_bytes(m, "lstm", 200000, 32)
    have = memory.available_bytes()
    if have is None or need <= have:
        pytest.skip(f"this machine has {have} bytes available")
    before = [p.grad for p in m.parameters()]
    started = time.perf_counter()
    with pytest.raises(MemoryError) as info:
        gradviz.capture(m, x, loss_fn)
    assert time.perf_counter() - started < 10
    message = str(info.value)
    assert "\n" not in message and "needs about" in message and "available" in message
    assert "timesteps at a time" in message
    assert [p.grad for p in m.parameters()] == before


def test_capture_memory_refusal_in_a_small_room(monkeypatch):
    m = lstm()
    need = guards.capture_bytes(m, "lstm", 50, 4)
    assert need > guards.capture_bytes(m, "lstm", 25, 4) > 0
    monkeypatch.setattr(memory, "available_bytes", lambda: need // 3)
    with pytest.raises(MemoryError, match=r"capture at most about \d+ timesteps at a time"):
        gradviz.capture(m, torch.randn(50, 4, 3), loss_fn)
    monkeypatch.setattr(memory, "available_bytes", lambda: need)
    gradviz.capture(m, torch.randn(50, 4, 3), loss_fn)                   # fits: captured


# -- .grad after a failure -----------------------------------------------------------------------
def test_a_failure_inside_capture_leaves_every_grad_as_it_was(monkeypatch):
    m = lstm()
    head = nn.Linear(6, 1)
    for p in [*m.parameters(), *head.parameters()]:
        p.grad = torch.randn_like(p)
    m.bias_ih_l0.grad = None                       # one without a gradient yet
    before = {n: (p.grad, None if p.grad is None else p.grad.clone())
              for n, p in [*m.named_parameters(), *head.named_parameters()]}

    def broken(self, *args, **kwargs):
        for p in m.parameters():                    # half-way through, as a real failure
            p.grad = torch.zeros_like(p)
        raise RuntimeError("forced failure")

    monkeypatch.setattr(Network, "backward", broken)
    with pytest.raises(RuntimeError, match="forced failure"):
        gradviz.capture(m, torch.randn(5, 2, 3), lambda out: head(out[-1]).sum())
    for name, p in [*m.named_parameters(), *head.named_parameters()]:
        obj, values = before[name]
        assert p.grad is obj, name
        if obj is not None:
            assert torch.equal(p.grad, values), name


# -- autocast --------------------------------------------------------------------------------------
def test_capture_under_autocast_runs_the_recurrence_in_float32():
    m = lstm()
    x = torch.randn(7, 3, 3)
    plain = gradviz.capture(m, x, loss_fn)
    grads = [p.grad.clone() for p in m.parameters()]
    for p in m.parameters():
        p.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = gradviz.capture(m, x, loss_fn)
    np.testing.assert_array_equal(cast.dh_norm, plain.dh_norm)
    for p, g in zip(m.parameters(), grads):
        assert p.grad.dtype == torch.float32 and torch.equal(p.grad, g)


def test_capture_with_lengths_refuses_nan_weights_too():
    m = lstm()
    with torch.no_grad():
        m.weight_hh_l0[1, 1] = math.nan
    with pytest.raises(NonFiniteWeights, match="gradviz.capture: weight_hh_l0 holds NaN"):
        gradviz.capture(m, torch.randn(5, 2, 3), loss_fn, lengths=[5, 3])


# -- capture with lengths: the same memory check and the same care of .grad ---------------------
def _packed_reference(module, x, lengths, loss_of):
    """Each parameter's gradient from PyTorch's own module on the packed batch."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    packed = pack_padded_sequence(x, torch.as_tensor(lengths), enforce_sorted=False)
    out = pad_packed_sequence(module(packed)[0], total_length=x.shape[0])[0]
    return torch.autograd.grad(loss_of(out), list(module.parameters()))


def test_a_capture_with_lengths_is_refused_when_it_will_not_fit(monkeypatch):
    torch.manual_seed(11)
    m = nn.GRU(3, 6, bidirectional=True, dtype=torch.float64)
    x, lengths = torch.randn(50, 4, 3, dtype=torch.float64), [50, 20, 33, 7]
    need = guards.packed_capture_bytes(m, 50, 4)
    assert need > guards.packed_capture_bytes(m, 25, 4) > 0
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    before = [p.grad for p in m.parameters()]
    monkeypatch.setattr(memory, "available_bytes", lambda: need // 3)
    with pytest.raises(MemoryError, match=r"capture at most about \d+ timesteps at a time") as info:
        gradviz.capture(m, x, lambda out: out.pow(2).sum(), lengths=lengths)
    assert "\n" not in str(info.value) and "needs about" in str(info.value)
    assert all(p.grad is b and bool((b == 1).all()) for p, b in zip(m.parameters(), before))
    # A watch's captured step is held to it too.
    w = gradviz.watch(m)
    with pytest.raises(MemoryError):
        w.backward(x, lambda out: out.pow(2).sum(), lengths=lengths)
    monkeypatch.setattr(memory, "available_bytes", lambda: need)
    cap = gradviz.capture(m, x, lambda out: out.pow(2).sum(), lengths=lengths)    # fits
    # Accumulated onto the gradient that was there, as loss.backward() would.
    reference = _packed_reference(m, x, lengths, lambda out: out.pow(2).sum())
    for p, ref in zip(m.parameters(), reference):
        torch.testing.assert_close(p.grad, 1 + ref, rtol=0, atol=1e-10)
    assert np.isfinite(cap.dh_norm[0, 0, :50]).all()


def test_a_failure_inside_a_capture_with_lengths_leaves_every_grad_as_it_was(monkeypatch):
    from gradviz.api import packed

    torch.manual_seed(12)
    m = nn.LSTM(3, 4, dtype=torch.float64)
    for p in m.parameters():
        p.grad = torch.randn_like(p)
    m.bias_hh_l0.grad = None                        # one without a gradient yet
    before = {n: (p.grad, None if p.grad is None else p.grad.clone())
              for n, p in m.named_parameters()}
    x, lengths = torch.randn(6, 3, 3, dtype=torch.float64), [6, 2, 4]
    real_step, calls = packed._step, []

    def broken(*args):
        calls.append(1)
        if len(calls) == 4:                         # half-way through, as a real failure
            for p in m.parameters():
                p.grad = torch.zeros_like(p)
            raise RuntimeError("forced failure")
        return real_step(*args)

    def unchanged():
        for name, p in m.named_parameters():
            obj, values = before[name]
            assert p.grad is obj, name
            if values is not None:
                assert torch.equal(p.grad, values), name

    monkeypatch.setattr(packed, "_step", broken)
    with pytest.raises(RuntimeError, match="forced failure"):
        gradviz.capture(m, x, lambda out: out.sum(), lengths=lengths)
    unchanged()
    monkeypatch.setattr(packed, "_step", real_step)

    def failing_loss(out):
        raise KeyError("the user's loss failed")

    with pytest.raises(KeyError):
        gradviz.capture(m, x, failing_loss, lengths=lengths)
    unchanged()
    with pytest.raises(ValueError, match="must return a scalar tensor"):
        gradviz.capture(m, x, lambda out: out, lengths=lengths)
    unchanged()

    class Boom(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value):
            return value.clone()

        @staticmethod
        def backward(ctx, grad):
            raise RuntimeError("backward failed")

    with pytest.raises(RuntimeError, match="backward failed"):
        gradviz.capture(m, x, lambda out: out.sum() + Boom.apply(out[-1].sum()),
                        lengths=lengths)
    unchanged()


def test_the_first_non_finite_tensor_is_named_whatever_the_devices():
    from gradviz.engine.model.finite import first_nonfinite

    good, nan, inf = torch.ones(3), torch.tensor([1.0, math.nan]), torch.tensor([math.inf])
    assert first_nonfinite([("a", good), ("b", good.double())]) is None
    assert first_nonfinite([("a", good), ("b", inf), ("c", nan)]) == "b"
    assert first_nonfinite([("a", nan), ("b", inf)]) == "a"
    assert first_nonfinite([("ints", torch.arange(3)), ("empty", torch.empty(0)),
                            ("z", nan)]) == "z"
    assert first_nonfinite([]) is None


def test_the_spectrum_is_computed_on_the_cpu_in_float64():
    from gradviz.api.modules import shared_network
    from gradviz.engine.analysis.spectrum import spectral
    from gradviz.engine.model.init import spectral_radius

    torch.manual_seed(13)
    m = nn.LSTM(3, 5, num_layers=2)                     # float32
    rho, sigma = spectral(shared_network(m))
    assert rho.dtype == sigma.dtype == torch.float64 and rho.device.type == "cpu"
    blocks = m.weight_hh_l1.detach().double().view(4, 5, 5)
    torch.testing.assert_close(rho[1, 0], spectral_radius(blocks), rtol=1e-12, atol=0)
    torch.testing.assert_close(sigma[1, 0], torch.linalg.matrix_norm(blocks, ord=2),
                               rtol=1e-12, atol=0)


def test_weights_changed_after_the_trainers_own_check_are_checked_again(monkeypatch):
    # The trainer skips the spectrum's finiteness check for weights it found finite after
    # its last update; weights changed since, in place or replaced, are checked again.
    from gradviz.engine.analysis import spectrum
    from gradviz.engine.training.train import Trainer
    t = Trainer(RunConfig(cell="lstm", hidden=6, seq_len=5))
    checked = []
    real = spectrum.first_nonfinite
    monkeypatch.setattr(spectrum, "first_nonfinite",
                        lambda tensors: checked.append(1) or real(tensors))
    t.step()                       # the first step's weights: never checked by the trainer
    t.step()                       # those of the update it checked: not again
    assert len(checked) == 1
    with torch.no_grad():
        t.net.weight_hh_l0[0, 0] = math.nan
    with pytest.raises(NonFiniteWeights, match="weight_hh_l0 block"):
        t.step()
    assert len(checked) == 2
