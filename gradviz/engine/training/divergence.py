"""The rule that says a run has diverged, and what to tell the user when it has.

A step whose loss or gradient is not finite is never applied, and an update that would
make a weight non-finite is undone (:meth:`Trainer.step <gradviz.engine.training.train.Trainer.step>`),
so the weights stay finite whatever happens. One such step costs only a batch. Many of
them mean the weights have grown until the forward or backward pass overflows; skipped
steps leave the weights as they are, so such a run fails on every later step, forever.

The rule: **a run has diverged when at least** :data:`LIMIT` **(10) of its last**
:data:`WINDOW` **(20) steps were not finite.** A run that fails on every step is caught on
its 10th failing step; one odd step, or a few scattered ones, never trip it. Once it has
tripped, the window starts empty again: a run that carries on unchanged trips it again
after another 10 failing steps, not on every step.

Plain Python, no torch: the trainer feeds it one step at a time, and the app's worker
and the headless command read what it found.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from gradviz.config import RunConfig

WINDOW = 20
LIMIT = 10
# What went wrong on a failed step, as Trainer.step reports it.
FAULTS = ("loss", "gradient", "update")
_WHAT = {"loss": "the loss", "gradient": "the gradient",
         "update": "an update that made weights non-finite (undone)"}


@dataclass(frozen=True)
class Divergence:
    """What the rule saw when it tripped."""

    step: int                  # the step on which it tripped (0-based)
    first_step: int            # the first failed step among those counted
    failed: int                # failed steps among the last ``seen``
    seen: int                  # steps looked at: WINDOW, or fewer early in a run
    in_a_row: bool             # the failed steps were the last ``failed`` steps
    faults: tuple[tuple[str, int], ...]   # (fault, how many) in FAULTS order, counts > 0

    def message(self) -> str:
        """What happened, in a sentence or two."""
        kinds = [kind for kind, _ in self.faults]
        if kinds == ["update"]:
            what = "updates made weights non-finite (each was undone)"
        else:
            named = [_WHAT[k] for k in kinds if k != "update"]
            what = " or ".join(named) + " was not finite"
            if "update" in kinds:
                what += ", or an update made weights non-finite"
        if self.in_a_row:
            where = f"on {self.failed} steps in a row (steps {self.first_step}–{self.step})"
        else:
            where = (f"on {self.failed} of the last {self.seen} steps "
                     f"(the first at step {self.first_step}, the last at step {self.step})")
        return (f"Training diverged: {what} {where}. Those steps were skipped, so the weights "
                "are still finite, but the model is not learning.")


def advice(config: RunConfig) -> str:
    """What to try against a divergence, given the run's settings."""
    tips = []
    if config.clip == "norm":
        tips.append(f"a lower clipping threshold (now {config.clip_threshold:g})")
    else:
        tips.append("gradient clipping by norm (threshold 1 is a good start)")
    tips.append(f"a lower learning rate (now {config.lr:g})")
    if config.rho is not None and config.rho > 1.0:
        tips.append(f"smaller recurrent weights: ρ at most 1 (now {config.rho:g})")
    elif config.init == "identity":
        tips.append("smaller recurrent weights: ρ below 1, or another initialisation")
    else:
        tips.append("a shorter sequence")
    return "What to try: " + "; ".join(tips) + "."


class DivergenceWatch:
    """Applies the rule to one run, a step at a time."""

    def __init__(self, window: int = WINDOW, limit: int = LIMIT):
        if not 1 <= limit <= window:
            raise ValueError(f"need 1 <= limit <= window, got limit {limit}, window {window}")
        self.window = window
        self.limit = limit
        self._recent: deque[tuple[int, str | None]] = deque(maxlen=window)
        self.tripped = 0               # how often the rule has tripped in this run
        self.first: Divergence | None = None   # the first time it tripped

    def trips_if_next_fails(self) -> bool:
        """Whether the rule would trip if the next step failed (so that a caller can capture
        that step in full: it is the one the user will be shown)."""
        failed = sum(f is not None for _, f in self._recent)
        if len(self._recent) == self.window and self._recent[0][1] is not None:
            failed -= 1   # the oldest step leaves the window
        return failed + 1 >= self.limit

    def record(self, step: int, fault: str | None) -> Divergence | None:
        """Note step ``step``: ``fault`` is None if it was applied, else one of FAULTS.
        Returns a :class:`Divergence` if the rule trips on this step, else None."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; allowed: None, {', '.join(FAULTS)}")
        self._recent.append((step, fault))
        failed = [(s, f) for s, f in self._recent if f is not None]
        if fault is None or len(failed) < self.limit:
            return None
        counts = tuple((kind, n) for kind in FAULTS
                       if (n := sum(f == kind for _, f in failed)))
        # Failed steps are in a row when the newest of them are the newest steps.
        in_a_row = all(f is not None for _, f in list(self._recent)[-len(failed):])
        found = Divergence(step=step, first_step=failed[0][0], failed=len(failed),
                           seen=len(self._recent), in_a_row=in_a_row, faults=counts)
        self._recent.clear()
        self.tripped += 1
        if self.first is None:
            self.first = found
        return found
