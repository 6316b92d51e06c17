"""The four optimisers the app trains with (SGD with momentum, Adam, RMSprop, Adagrad), at
torch.optim's default settings, without torch.optim.

Why not torch.optim: constructing any torch.optim optimiser imports ``torch._dynamo``, which
takes as long as importing PyTorch itself (about 1.1 s of a 2.3 s start on a 2-core
machine), and the first gradient curves wait for it. These classes do the same arithmetic
in the same order on each parameter, so a run's numbers are those torch.optim gives
(tests/test_optimizers.py compares them step by step). They keep the same per-parameter
state under the same names (``momentum_buffer``; ``step``, ``exp_avg``, ``exp_avg_sq``;
``step``, ``square_avg``; ``step``, ``sum``), so a saved run's optimiser state reads the
same whichever wrote it.

Only what the trainer uses of torch.optim's interface is here: ``param_groups`` (one group,
``lr`` and SGD's ``momentum`` may be changed between steps), ``state``, :meth:`step`, and
:meth:`indexed_state` / :meth:`load_state` in place of ``state_dict`` / ``load_state_dict``.
"""
from __future__ import annotations

from typing import Iterable

import torch


def _scalar(value: float = 0.0) -> torch.Tensor:
    """A step counter as torch.optim keeps one: a 0-d tensor of the default float type's
    precision class (float64 only when that is the default)."""
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    return torch.tensor(value, dtype=dtype)


class Optimiser:
    """One group of parameters, each with a state dict of tensors."""

    defaults: dict = {}

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, **settings):
        params = list(params)
        if not params:
            raise ValueError("the optimiser got no parameters")
        self.param_groups = [{"params": params, "lr": float(lr), **self.defaults, **settings}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return self.param_groups[0]["params"]

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        for p in self.params:
            if p.grad is not None:
                self._update(p, p.grad, self.state.setdefault(p, {}), group)

    def _update(self, p, grad, state: dict, group: dict) -> None:
        raise NotImplementedError

    def indexed_state(self) -> dict[int, dict[str, torch.Tensor]]:
        """The state by parameter index (as :meth:`load_state` takes it)."""
        return {i: self.state[p] for i, p in enumerate(self.params) if p in self.state}

    def load_state(self, per_param: dict[int, dict[str, torch.Tensor]]) -> None:
        """Replace the state by ``per_param``: for the i-th parameter, its state's tensors
        (converted to that parameter's device, and its dtype unless a step counter)."""
        state = {}
        for i, values in per_param.items():
            p = self.params[i]
            state[p] = {k: (v.clone() if k == "step" else v.to(p.device, p.dtype).clone())
                        for k, v in values.items()}
        self.state = state


class SGD(Optimiser):
    """p ← p − lr·b, with b ← momentum·b + g (b = g on the first step); b = g when the
    momentum is 0, and then no state is kept."""

    defaults = {"momentum": 0.0}

    def _update(self, p, grad, state, group) -> None:
        momentum = group["momentum"]
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = torch.clone(grad).detach()
            else:
                buf.mul_(momentum).add_(grad)
            grad = buf
        p.add_(grad, alpha=-group["lr"])


class Adam(Optimiser):
    """Kingma & Ba (2015): β = (0.9, 0.999), ε = 1e-8, bias-corrected moments."""

    defaults = {"betas": (0.9, 0.999), "eps": 1e-8}

    def _update(self, p, grad, state, group) -> None:
        if not state:
            state.update(step=_scalar(), exp_avg=torch.zeros_like(p),
                         exp_avg_sq=torch.zeros_like(p))
        beta1, beta2 = group["betas"]
        state["step"] += 1
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = state["step"].item()
        first = 1 - beta1 ** step
        second_root = (1 - beta2 ** step) ** 0.5
        denom = (exp_avg_sq.sqrt() / second_root).add_(group["eps"])
        p.addcdiv_(exp_avg, denom, value=-group["lr"] / first)


class RMSprop(Optimiser):
    """Tieleman & Hinton (2012): a running mean of g² with α = 0.99, ε = 1e-8."""

    defaults = {"alpha": 0.99, "eps": 1e-8}

    def _update(self, p, grad, state, group) -> None:
        if not state:
            state.update(step=_scalar(), square_avg=torch.zeros_like(p))
        state["step"] += 1
        square_avg = state["square_avg"]
        square_avg.mul_(group["alpha"]).addcmul_(grad, grad, value=1 - group["alpha"])
        p.addcdiv_(grad, square_avg.sqrt().add_(group["eps"]), value=-group["lr"])


class Adagrad(Optimiser):
    """Duchi et al. (2011): the sum of every g² so far, ε = 1e-10; its state exists from
    the start, as torch.optim.Adagrad's does."""

    defaults = {"eps": 1e-10}

    def __init__(self, params, lr: float, **settings):
        super().__init__(params, lr, **settings)
        for p in self.params:
            self.state[p] = {"step": _scalar(), "sum": torch.zeros_like(p)}

    def _update(self, p, grad, state, group) -> None:
        if not state:
            state.update(step=_scalar(), sum=torch.zeros_like(p))
        state["step"] += 1
        state["sum"].addcmul_(grad, grad, value=1)
        p.addcdiv_(grad, state["sum"].sqrt().add_(group["eps"]), value=-group["lr"])


OPTIMISERS = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad}

__all__ = ["Optimiser", "SGD", "Adam", "RMSprop", "Adagrad", "OPTIMISERS"]
