"""The lessons of the modern-recurrence experiments (issue 22), checked on captured numbers
like those of :mod:`gradviz.experiments.lessons`, which takes them into its ``CHECKS``.

* ``copy-modern``: on the copy task the LRU and the orthogonal RNN leave the no-memory line
  that the tanh RNN and the (one-layer) minGRU stay on;
* ``modern-at-init``: the decades ‖∂L/∂h_t‖ loses over T at initialisation, for the tanh
  RNN, the LSTM, minGRU, the LRU and the orthogonal RNN side by side;
* ``indrnn-adding``: IndRNN (two layers, |u| clipped to 2^(1/T)) leaves the adding
  problem's no-memory line at T = 500, where the tanh RNN stays on it;
* ``lru-ring``: the LRU's ring, r_max = 0.999 against 0.9, on delayed recall.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from gradviz.config import RunConfig
from gradviz.engine.training.session import Session

# Steps over which a loss is averaged (as gradviz.experiments.lessons.LOSS_WINDOW).
WINDOW = 50


def _train(config: RunConfig, steps: int, until: Callable[[Session], bool] | None = None,
           ) -> Session:
    session = Session(config)
    for _ in session.steps(steps, full=False):
        if until is not None and until(session):
            break
    return session


def _loss(session: Session) -> float:
    """The loss over the last WINDOW steps, as a multiple of the no-memory baseline."""
    return float(np.mean(session.history.loss[-WINDOW:])) / session.trainer.baseline


def _below(fraction: float) -> Callable[[Session], bool]:
    return lambda s: len(s.history) >= WINDOW and _loss(s) < fraction


def decades_lost(config: RunConfig) -> float:
    """log10 ‖∂L/∂h_0‖/‖∂L/∂h_{T−1}‖ of the first layer on the first step (−inf where the
    gradient underflowed to 0)."""
    session = _train(config, 1)
    dh = session.history.dh_norm[0, 0, 0].astype(np.float64)
    with np.errstate(divide="ignore"):
        return float(np.log10(dh[0]) - np.log10(dh[-1]))


COPY_STEPS = 500


def _copy_modern(exp, steps: int | None) -> tuple[bool, str]:
    """The LRU (config) and the orthogonal RNN fall below 0.9× the baseline within
    COPY_STEPS steps; the tanh RNN ("then") and the one-layer minGRU stay above 0.95× over
    as many."""
    n = steps or COPY_STEPS
    parts, held = [], True
    for cell, config in (("lru", exp.config), ("rnn-orthogonal", exp.config.replace(cell="rnn-orthogonal"))):
        s = _train(config, n, until=_below(0.9))
        ok = _loss(s) < 0.9
        held &= ok
        parts.append(f"{cell} {_loss(s):.2f}x baseline at step {s.steps_done} (needs < 0.9)")
    for cell, config in (("rnn-tanh", exp.then_config), ("mingru", exp.config.replace(cell="mingru"))):
        s = _train(config, n)
        ok = _loss(s) > 0.95
        held &= ok
        parts.append(f"{cell} {_loss(s):.2f}x after {s.steps_done} (needs > 0.95)")
    return held, "; ".join(parts)


# (cell, the most decades it may lose, the fewest it must lose) over T at step 0.
AT_INIT = (("rnn-tanh", None, 12.0), ("lstm", None, 12.0), ("mingru", None, 12.0),
           ("lru", 3.0, None), ("rnn-orthogonal", 8.0, None))


def _modern_at_init(exp, steps: int | None) -> tuple[bool, str]:
    held, parts = True, []
    for cell, most, fewest in AT_INIT:
        lost = -decades_lost(exp.config.replace(cell=cell))
        ok = (most is None or lost <= most) and (fewest is None or lost >= fewest)
        held &= ok
        need = f"<= {most:g}" if most is not None else f">= {fewest:g}"
        parts.append(f"{cell} {'all (underflow)' if math.isinf(lost) else f'{lost:.1f}'} "
                     f"decades (needs {need})")
    return held, "lost over T at step 0: " + "; ".join(parts)


def _indrnn_adding(exp, steps: int | None) -> tuple[bool, str]:
    """IndRNN (config) falls below 0.5× the adding baseline within its steps; the tanh RNN
    ("then") stays above 0.9× over as many steps as IndRNN took; and at step 0 IndRNN's
    first layer loses at most 8 decades of ‖∂L/∂h_t‖ over T, the tanh RNN's at least 12."""
    ind = _train(exp.config, steps or exp.config.steps, until=_below(0.5))
    a = _loss(ind)
    tanh = _train(exp.then_config, ind.steps_done)
    b = _loss(tanh)
    lost_ind, lost_tanh = -decades_lost(exp.config), -decades_lost(exp.then_config)
    held = a < 0.5 and b > 0.9 and lost_ind <= 8.0 and lost_tanh >= 12.0

    def words(lost: float) -> str:
        return "all (underflow)" if math.isinf(lost) else f"{lost:.1f}"

    return held, (
        f"IndRNN {a:.2f}x baseline at step {ind.steps_done} (needs < 0.5), tanh RNN "
        f"{b:.2f}x after as many (needs > 0.9), at T = {exp.config.seq_len}; at step 0 "
        f"they lose {words(lost_ind)} (needs <= 8) and {words(lost_tanh)} (needs >= 12) "
        f"decades over T; {ind.steps_done / max(ind.seconds, 1e-9):.1f} and "
        f"{tanh.steps_done / max(tanh.seconds, 1e-9):.1f} steps/s")


def _lru_ring(exp, steps: int | None) -> tuple[bool, str]:
    """After the same steps, r_max 0.999 (config) is below 0.5× the baseline and r_max 0.9
    ("then") still above 0.9×; and the decades lost at step 0 say why."""
    n = steps or exp.config.steps
    wide, short = _train(exp.config, n), _train(exp.then_config, n)
    a, b = _loss(wide), _loss(short)
    lost_wide, lost_short = -decades_lost(exp.config), -decades_lost(exp.then_config)
    held = a < 0.5 and b > 0.9
    return held, (f"after {n} steps r_max {exp.config.lru_r_max:g}: {a:.2f}x baseline "
                  f"(needs < 0.5), r_max {exp.then_config.lru_r_max:g}: {b:.2f}x (needs > 0.9); "
                  f"at step 0 they lose {lost_wide:.1f} and {lost_short:.1f} decades over T")


CHECKS = {
    "copy-modern": _copy_modern,
    "modern-at-init": _modern_at_init,
    "lru-ring": _lru_ring,
    "indrnn-adding": _indrnn_adding,
}

__all__ = ["CHECKS", "decades_lost", "AT_INIT"]
