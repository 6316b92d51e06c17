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
    """One group of parameters, each with a state dict of tensors. A step updates every
    parameter that has a gradient with one ``torch._foreach_*`` call per operation (the
    per-tensor arithmetic of the plain ops, without a Python call per tensor)."""

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
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return
        states = [self._state_of(p) for p in params]
        # Parameters whose step counters differ (one had no gradient at some step) are
        # updated in groups of equal counters: the bias correction is per count.
        counts = [float(st["step"]) if "step" in st else 0.0 for st in states]
        for count in dict.fromkeys(counts):
            some = [i for i, c in enumerate(counts) if c == count]
            self._update([params[i] for i in some], [params[i].grad for i in some],
                         [states[i] for i in some], group)

    def _state_of(self, p) -> dict:
        state = self.state.setdefault(p, {})
        if not state:
            state.update(self._fresh(p))
        return state

    def _fresh(self, p) -> dict[str, torch.Tensor]:
        """A parameter's state before its first step (none for SGD, whose momentum buffer
        starts as the first gradient)."""
        return {}

    def _update(self, params, grads, states, group) -> None:
        raise NotImplementedError

    @staticmethod
    def _count(states) -> float:
        """Add one to each step counter; the new count."""
        steps = [st["step"] for st in states]
        torch._foreach_add_(steps, 1)
        return steps[0].item()

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

    def _update(self, params, grads, states, group) -> None:
        momentum = group["momentum"]
        if momentum != 0:
            old = [st["momentum_buffer"] for st in states if "momentum_buffer" in st]
            if old:
                torch._foreach_mul_(old, momentum)
                torch._foreach_add_(old, [g for g, st in zip(grads, states)
                                          if "momentum_buffer" in st])
            for g, st in zip(grads, states):
                if "momentum_buffer" not in st:
                    st["momentum_buffer"] = torch.clone(g).detach()
            grads = [st["momentum_buffer"] for st in states]
        torch._foreach_add_(params, grads, alpha=-group["lr"])


class Adam(Optimiser):
    """Kingma & Ba (2015): β = (0.9, 0.999), ε = 1e-8, bias-corrected moments."""

    defaults = {"betas": (0.9, 0.999), "eps": 1e-8}

    def _fresh(self, p):
        return {"step": _scalar(), "exp_avg": torch.zeros_like(p),
                "exp_avg_sq": torch.zeros_like(p)}

    def _update(self, params, grads, states, group) -> None:
        beta1, beta2 = group["betas"]
        step = self._count(states)
        exp_avg = [st["exp_avg"] for st in states]
        exp_avg_sq = [st["exp_avg_sq"] for st in states]
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
        first = 1 - beta1 ** step
        second_root = (1 - beta2 ** step) ** 0.5
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, second_root)
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(params, exp_avg, denom, value=-group["lr"] / first)


class RMSprop(Optimiser):
    """Tieleman & Hinton (2012): a running mean of g² with α = 0.99, ε = 1e-8."""

    defaults = {"alpha": 0.99, "eps": 1e-8}

    def _fresh(self, p):
        return {"step": _scalar(), "square_avg": torch.zeros_like(p)}

    def _update(self, params, grads, states, group) -> None:
        self._count(states)
        square_avg = [st["square_avg"] for st in states]
        torch._foreach_mul_(square_avg, group["alpha"])
        torch._foreach_addcmul_(square_avg, grads, grads, value=1 - group["alpha"])
        avg = torch._foreach_sqrt(square_avg)
        torch._foreach_add_(avg, group["eps"])
        torch._foreach_addcdiv_(params, grads, avg, value=-group["lr"])


class Adagrad(Optimiser):
    """Duchi et al. (2011): the sum of every g² so far, ε = 1e-10; its state exists from
    the start, as torch.optim.Adagrad's does."""

    defaults = {"eps": 1e-10}

    def __init__(self, params, lr: float, **settings):
        super().__init__(params, lr, **settings)
        for p in self.params:
            self.state[p] = self._fresh(p)

    def _fresh(self, p):
        return {"step": _scalar(), "sum": torch.zeros_like(p)}

    def _update(self, params, grads, states, group) -> None:
        self._count(states)
        sums = [st["sum"] for st in states]
        torch._foreach_addcmul_(sums, grads, grads, value=1)
        std = torch._foreach_sqrt(sums)
        torch._foreach_add_(std, group["eps"])
        torch._foreach_addcdiv_(params, grads, std, value=-group["lr"])


OPTIMISERS = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad}

__all__ = ["Optimiser", "SGD", "Adam", "RMSprop", "Adagrad", "OPTIMISERS"]
