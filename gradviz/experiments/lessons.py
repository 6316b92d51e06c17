"""The check of each experiment's lesson, on the numbers a headless run captures.

``check_lesson(experiment)`` trains the experiment's configuration (and, where the lesson
is a comparison, its "then" configuration) from a fresh model with
:class:`~gradviz.engine.training.session.Session`, for the steps the lesson needs, and says whether
what the experiment's description promises is in :attr:`Session.history`. So "the
exploding run explodes visibly and the clipped one does not" is a tested fact.

The runs are deterministic for one torch thread (what the app's training process uses for
models this small, :func:`gradviz.engine.training.train.threads_for`); callers set
``torch.set_num_threads(1)``.
"""
from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from gradviz.config import RunConfig
from gradviz.engine.analysis.bounds import geometric_mean
from gradviz.engine.training.session import Session

from . import Experiment
from .lessons_modern import CHECKS as MODERN_CHECKS

# Steps over which a loss is averaged before it is compared with the baseline.
LOSS_WINDOW = 50


@dataclass(frozen=True)
class Outcome:
    """Whether a lesson held, the figures that say so, and the seconds it took."""
    name: str
    held: bool
    detail: str
    seconds: float = 0.0

    def line(self) -> str:
        """``NAME: held (…)`` or ``NAME: failed (…)``."""
        return f"{self.name}: {'held' if self.held else 'failed'} ({self.detail}; {self.seconds:.1f} s)"


def train(config: RunConfig, steps: int, until: Callable[[Session], bool] | None = None) -> Session:
    """A fresh session of ``config`` trained ``steps`` steps, or until ``until(session)``."""
    session = Session(config)
    for _ in session.steps(steps, full=False):
        if until is not None and until(session):
            break
    return session


def log_ratio(norms: np.ndarray) -> np.ndarray:
    """log10 of the gradient norm at t = 0 over the one at t = T − 1, per capture, for
    norms (K, L, D, T) of the first layer and direction; an underflowed norm gives −inf."""
    with np.errstate(divide="ignore"):
        return np.log10(norms[:, 0, 0, 0]) - np.log10(norms[:, 0, 0, -1])


def _nonfinite(session: Session) -> bool:
    return session.counts.nonfinite > 0


def _vanishing(exp: Experiment, steps: int | None) -> tuple[bool, str]:
    session = train(exp.config, steps or 300)
    h = session.history
    first = float(log_ratio(h.dh_norm)[0])
    loss = float(np.mean(h.loss[-LOSS_WINDOW:])) / session.trainer.baseline
    held = first <= -10 and loss >= 0.8
    return held, (f"log10 |dL/dh_0|/|dL/dh_T-1| = {first:.1f} on step 0 (needs <= -10); "
                  f"loss {loss:.2f}x baseline after {session.steps_done} steps (needs >= 0.8)")


def _exploding(exp: Experiment, steps: int | None) -> tuple[bool, str]:
    """The unclipped run blows up: its first gradient's global norm is far above the clipping
    threshold of the clipped run (at least 30 times), and a step within the first 10 is
    non-finite. The mechanism (an identity recurrence adds up its inputs, so the first
    gradient is large whatever the seed; one SGD step with it sends the weights far off) does
    not hang on float rounding: it held for seeds 0-4, one and two threads, AVX-512, AVX2
    and plain code paths (docs/guide.md)."""
    session = train(exp.config, steps or 10, until=_nonfinite)
    h = session.history
    threshold = exp.then_config.clip_threshold if exp.then_config is not None else 1.0
    first = float(h.grad_norm[0])
    bad = np.flatnonzero(h.nonfinite)
    k = int(bad[0]) if len(bad) else None
    held = k is not None and k < 10 and first >= 30 * threshold
    return held, (f"global norm {first:.3g} on step 0 ({first / threshold:.3g}x the threshold "
                  f"{threshold:g}, needs >= 30x); first non-finite step "
                  f"{'none' if k is None else k} in {session.steps_done} (needs one before step 10)")


def _clipped(exp: Experiment, steps: int | None) -> tuple[bool, str]:
    """Clipped by norm, the same run learns: no step is non-finite, some are clipped, and the
    loss falls below half the no-memory baseline (averaged over LOSS_WINDOW steps)."""
    session = _learn(exp.config, steps or exp.config.steps, 0.5)
    counts, loss = session.counts, _mean_loss(session)
    held = counts.nonfinite == 0 and counts.clipped > 0 and loss < 0.5
    return held, (f"{counts.nonfinite} non-finite (needs 0) and {counts.clipped} clipped steps "
                  f"(needs > 0) in {session.steps_done}; loss {loss:.2f}x baseline "
                  f"(needs < 0.5)")


def _mean_loss(session: Session, rows: int = LOSS_WINDOW) -> float:
    """The loss over the last ``rows`` steps, as a multiple of the baseline."""
    return float(np.mean(session.history.loss[-rows:])) / session.trainer.baseline


def _learn(config: RunConfig, steps: int, fraction: float) -> Session:
    """Train until the mean loss falls below ``fraction`` of the baseline, or ``steps``."""
    return train(config, steps, until=lambda s: len(s.history) >= LOSS_WINDOW
                 and _mean_loss(s) < fraction)


def _learns(exp: Experiment, steps: int | None) -> tuple[bool, str]:
    """The loss falls below half the baseline."""
    session = _learn(exp.config, steps or exp.config.steps, 0.5)
    loss = _mean_loss(session)
    if loss < 0.5:
        return True, f"loss {loss:.2f}x baseline at step {session.steps_done}"
    return False, f"loss still {loss:.2f}x baseline after {session.steps_done} steps (needs < 0.5)"


def _recent_metric(session: Session, rows: int = LOSS_WINDOW) -> float:
    """The task's metric over the last ``rows`` captures (nan where it has none)."""
    metric = session.history.metric[-rows:]
    return float(np.mean(metric[np.isfinite(metric)])) if np.isfinite(metric).any() else math.nan


def _solves(exp: Experiment, steps: int | None) -> tuple[bool, str]:
    """The loss falls below half the baseline and more than half the sums are solved."""
    session = train(exp.config, steps or exp.config.steps,
                    until=lambda s: len(s.history) >= LOSS_WINDOW and _mean_loss(s) < 0.5
                    and _recent_metric(s) > 0.5)
    loss, solved = _mean_loss(session), _recent_metric(session)
    held = loss < 0.5 and solved > 0.5
    return held, (f"loss {loss:.2f}x baseline (needs < 0.5), {session.history.metric_name} "
                  f"{solved:.1%} (needs > 50%) at step {session.steps_done}")


def _long_range(exp: Experiment, steps: int | None) -> tuple[bool, str]:
    """The metric starts near chance and ends at 95% or more."""
    session = train(exp.config, steps or exp.config.steps,
                    until=lambda s: len(s.history) >= LOSS_WINDOW and _recent_metric(s) >= 0.95)
    metric = session.history.metric
    start, end = float(np.nanmean(metric[:20])), _recent_metric(session)
    held = start <= 0.7 and end >= 0.95
    return held, (f"{session.history.metric_name}: {start:.0%} over steps 0-19 (needs <= 70%), "
                  f"{end:.0%} at step {session.steps_done} (needs >= 95%)")


def _known_words(samples: list[str], text: str) -> list[str]:
    """The distinct words of the ``text`` (three letters or more) that the ``samples``
    spell."""
    known = set(re.findall(r"[A-Za-z]{3,}", text))
    return sorted(set(re.findall(r"[A-Za-z]{3,}", "\n".join(samples))) & known)


def _unigram_distance(samples: list[str], text: str, symbols: list[str]) -> tuple[float, float]:
    """Total variation distance between the samples' character frequencies and the
    text's, and that of a uniform guess over the symbols (the untrained model's)."""
    def frequencies(chars: str) -> np.ndarray:
        counts = Counter(chars)
        f = np.array([counts[c] for c in symbols], dtype=np.float64)
        return f / max(f.sum(), 1.0)
    ref = frequencies(text)
    uniform = np.full(len(symbols), 1.0 / len(symbols))
    return (0.5 * float(np.abs(frequencies("".join(samples)) - ref).sum()),
            0.5 * float(np.abs(uniform - ref).sum()))


# 200-character samples, as the text panel shows them one after another; ten, because one
# sample of a model this young can be a run of punctuation with no space in it.
SAMPLES = 10
# The claims hold for every seed tried (0-5), so that a machine whose rounding sends the
# training down another path (a vector width, a code path) still shows them: the loss
# after 6,000 steps was 1.55-2.39 nats per character (ln V = 4.56), the samples' character
# frequencies 0.11-0.28 from the text's (a uniform guess: 0.65), and they spelled 4-13
# distinct words of the text.
LOSS_FRACTION = 0.55
DISTANCE_FRACTION = 0.5
WORDS = 2


def _char_model(exp: Experiment, steps: int | None) -> tuple[bool, str]:
    """The loss per character falls from ln V to below LOSS_FRACTION of it, and the samples
    use the text's characters in about its proportions (closer than half a uniform
    guess's distance) and spell words of the text."""
    session = train(exp.config, steps or exp.config.steps)
    task = session.trainer.task
    start = math.log(task.output_size)
    end = float(np.mean(session.history.loss[-10 * LOSS_WINDOW:]))
    samples = [session.generate(200) for _ in range(SAMPLES)]
    distance, uniform = _unigram_distance(samples, task.text, task.symbols)
    words = _known_words(samples, task.text)
    held = (end < LOSS_FRACTION * start and distance < DISTANCE_FRACTION * uniform
            and len(words) >= WORDS)
    shown = ", ".join(words[:6]) + (", …" if len(words) > 6 else "")
    return held, (f"loss {end:.2f} nats per character over the last {10 * LOSS_WINDOW} of "
                  f"{session.steps_done} steps, from ln V = {start:.2f} (needs < "
                  f"{LOSS_FRACTION * start:.2f}); {SAMPLES} samples of 200 characters: "
                  f"character frequencies {distance:.2f} from the text's (needs < "
                  f"{DISTANCE_FRACTION * uniform:.2f}, half a uniform guess's), "
                  f"{len(words)} words of the text ({shown or 'none'}; needs {WORDS})")


def _stateful(exp: Experiment, steps: int | None) -> tuple[bool, str]:
    """Stateless and stateful both leave the baseline and end within 15% of each other."""
    n = steps or exp.config.steps
    rows = 4 * LOSS_WINDOW
    stateless, stateful = (_mean_loss(train(c, n), rows) for c in (exp.config, exp.then_config))
    ratio = stateful / stateless
    held = max(stateless, stateful) < 0.7 and abs(ratio - 1) < 0.15
    return held, (f"mean loss over the last {rows} of {n} steps: stateless "
                  f"{stateless:.3f}x baseline, stateful {stateful:.3f}x (both need < 0.7); "
                  f"stateful / stateless = {ratio:.2f} (needs 0.85 to 1.15)")


def _gated_not_plain(exp: Experiment, steps: int | None) -> tuple[bool, str]:
    """The gated cell leaves the baseline (below 0.9 of it); the plain RNN of the "then"
    configuration, trained as long, stays on it (above 0.95)."""
    gated = _learn(exp.config, steps or exp.config.steps, 0.9)
    plain = train(exp.then_config, gated.steps_done)
    ours, theirs = _mean_loss(gated), _mean_loss(plain)
    held = ours < 0.9 and theirs > 0.95
    return held, (f"{exp.config.cell} loss {ours:.2f}x baseline at step {gated.steps_done} "
                  f"(needs < 0.9), {exp.then_config.cell} {theirs:.2f}x after as many "
                  f"(needs > 0.95)")


def _forget_bias(exp: Experiment, steps: int | None) -> tuple[bool, str]:
    n = steps or 100
    kept, lost = (float(np.median(log_ratio(train(c, n).history.dc_norm)))
                  for c in (exp.config, exp.then_config))
    held = kept - lost >= 4
    return held, (f"median log10 |dL/dc_0|/|dL/dc_T-1| over {n} steps: "
                  f"{kept:.1f} with bias {exp.config.forget_bias:g}, "
                  f"{lost:.1f} with bias {exp.then_config.forget_bias:g} (needs >= 4 decades apart)")


def carried_per_step(h) -> float:
    """Geometric mean over t of ‖carried_t‖ / ‖∂L/∂h_{t+1}‖ on a history's first row
    (first layer and direction): the share of the gradient at the step after it that the
    recurrence carries back to h_t."""
    carried = h.carried_norm[0, 0, 0, :-1].astype(np.float64)
    after = h.dh_norm[0, 0, 0, 1:].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return geometric_mean(carried / after)


def _loss_enters(exp: Experiment, steps: int | None) -> tuple[bool, str]:
    """On the first step: the last-step loss shows the whole slope (six decades or more),
    the per-step loss a curve within a decade of flat, and its carried part keeps below
    0.7 of the gradient per step back, within 25% of the first run's factor."""
    last, every = (train(c, steps or 1).history for c in (exp.config, exp.then_config))
    slope_last, slope_every = float(log_ratio(last.dh_norm)[0]), float(log_ratio(every.dh_norm)[0])
    factor_last, factor_every = carried_per_step(last), carried_per_step(every)
    ratio = factor_every / factor_last
    T = every.dh_norm.shape[-1]
    held = (slope_last <= -6 and abs(slope_every) <= 1 and factor_every < 0.7
            and 0.8 <= ratio <= 1.25)
    return held, (f"step 0: log10 |dL/dh_0|/|dL/dh_T-1| = {slope_last:.1f} with the loss at the "
                  f"last step (needs <= -6), {slope_every:+.2f} with a loss at every step "
                  f"(needs within 1); carried per step back {factor_every:.3f} (needs < 0.7) "
                  f"against {factor_last:.3f} in the first run (ratio {ratio:.2f}, needs 0.8 "
                  f"to 1.25), so the last loss reaches h_0 about "
                  f"{-(T - 1) * math.log10(factor_every):.0f} decades down")


# Each experiment's check: (experiment, steps or None for the lesson's own) -> (held, why).
CHECKS: dict[str, Callable[[Experiment, int | None], tuple[bool, str]]] = {
    "vanishing-tanh": _vanishing,
    "exploding-relu": _exploding,
    "clipped-relu": _clipped,
    "lstm-remembers": _solves,
    "forget-bias": _forget_bias,
    "irnn-adding": _learns,
    "copy-gru": _gated_not_plain,
    "reber-lstm": _long_range,
    "min-char-rnn": _char_model,
    "stateful-series": _stateful,
    "loss-enters": _loss_enters,
    **MODERN_CHECKS,     # the modern recurrences (gradviz.experiments.lessons_modern)
}


def check_lesson(exp: Experiment, steps: int | None = None) -> Outcome:
    """Train ``exp`` headless and check its lesson; ``steps`` overrides the lesson's own
    number of steps (a smoke run)."""
    check = CHECKS.get(exp.name)
    if check is None:
        return Outcome(exp.name, False, "no lesson check for this experiment")
    started = time.perf_counter()
    held, detail = check(exp, steps)
    return Outcome(exp.name, held, detail, time.perf_counter() - started)


__all__ = ["Outcome", "CHECKS", "check_lesson", "train", "log_ratio", "LOSS_WINDOW"]
