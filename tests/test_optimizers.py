"""gradviz's optimisers against torch.optim's at its default settings: the same parameters
after many steps (float64 to 1e-12, float32 to float32 rounding), the same state names, a
live change of lr and momentum taken at the next step, a state loaded back that continues
as the original would; and none of them imports torch._dynamo."""
import subprocess
import sys

import pytest
import torch

from gradviz import registry
from gradviz.engine.training.optimizers import OPTIMISERS
from gradviz.engine.training.train import make_optimizer

TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
         "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}


def _twins(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (7,), (2, 4, 3)]
    ours = [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    return ours, theirs, g


def _grads(params_pairs, g, dtype, step):
    for a, b in params_pairs:
        grad = torch.randn(a.shape, generator=g, dtype=dtype) * (10.0 ** (step % 5 - 2))
        a.grad, b.grad = grad.clone(), grad.clone()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("name,momentum", [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0),
                                           ("rmsprop", 0.0), ("adagrad", 0.0)])
def test_the_same_steps_as_torch_optim(name, momentum, dtype, tol):
    ours, theirs, g = _twins(dtype)
    opt = make_optimizer(name, ours, lr=0.01, momentum=momentum)
    ref = TORCH[name](theirs, lr=0.01, **({"momentum": momentum} if name == "sgd" else {}))
    for step in range(60):
        _grads(list(zip(ours, theirs)), g, dtype, step)
        if step == 30:                              # a live change, as Trainer.set_live
            for group in opt.param_groups + ref.param_groups:
                group["lr"] = 0.003
                if name == "sgd" and momentum:
                    group["momentum"] = 0.5
        opt.step()
        ref.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
        assert set(opt.state[a]) == set(ref.state[b])
        for key, value in opt.state[a].items():
            torch.testing.assert_close(value, ref.state[b][key], rtol=tol, atol=tol)
            assert value.dtype == ref.state[b][key].dtype, key


@pytest.mark.parametrize("name", list(registry.OPTIMIZERS))
def test_a_loaded_state_continues_as_the_original(name):
    ours, copy_params, g = _twins(torch.float64, seed=1)
    opt = make_optimizer(name, ours, lr=0.05, momentum=0.8)
    for step in range(5):
        _grads(list(zip(ours, copy_params)), g, torch.float64, step)
        opt.step()
    with torch.no_grad():
        for a, b in zip(ours, copy_params):
            b.copy_(a)
    other = make_optimizer(name, copy_params, lr=0.05, momentum=0.8)
    other.load_state({i: {k: v.clone() for k, v in opt.state[p].items()}
                      for i, p in enumerate(ours) if p in opt.state})
    for step in range(5, 10):
        _grads(list(zip(ours, copy_params)), g, torch.float64, step)
        opt.step()
        other.step()
    for a, b in zip(ours, copy_params):
        assert torch.equal(a, b)


def test_every_registered_optimizer_has_one_and_unknown_names_are_refused():
    assert set(OPTIMISERS) == set(registry.OPTIMIZERS)
    params = [torch.nn.Parameter(torch.zeros(3))]
    for name in registry.OPTIMIZERS:
        assert make_optimizer(name, params, lr=0.25).param_groups[0]["lr"] == 0.25
    assert make_optimizer("sgd", params, lr=0.1, momentum=0.5).param_groups[0]["momentum"] == 0.5
    with pytest.raises(ValueError, match="allowed: " + ", ".join(registry.OPTIMIZERS)):
        make_optimizer("lbfgs", params, lr=0.1)


def test_training_a_step_does_not_import_torch_dynamo():
    """The first curves wait for the training process's imports: torch._dynamo (which any
    torch.optim optimiser imports) doubles them."""
    code = ("import sys\n"
            "from gradviz.engine.training.session import Session\n"
            "from gradviz.config import RunConfig\n"
            "for o in ('sgd', 'adam', 'rmsprop', 'adagrad'):\n"
            "    Session(RunConfig(optimizer=o, seq_len=5, hidden=4, steps=2)).run()\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
