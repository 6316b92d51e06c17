"""When a run has *solved* its task: one criterion per task, judged on a test batch.

A sweep (:mod:`gradviz.sweep`) trains many runs for a step budget and asks of each whether,
and at which step, it solved its task. The answer comes from here, defined once per task
and stated in docs/sweep.md:

* ``adding``: the test batch's mean squared error is below 5% of the no-memory baseline
  (Var(target) = 1/6), so the model explains 95% of the target's variance;
* ``adding-1997``: every test sequence's absolute error is below 0.04, Hochreiter &
  Schmidhuber's rule (1997, experiment 4);
* ``copy``: every answer symbol of every test sequence is right;
* ``recall``: every test sequence's class is right;
* ``series``: the test batch's mean squared error is below half the no-memory baseline
  (the best predictor from the last value alone);
* ``reber``: at least 95% of the closing T or P symbols whose opening one is in the
  window are predicted as the most likely symbol (a model without memory gets 50%).

The text task has no criterion (there is no "solved" for a language model of a file).
The test batch is drawn from a generator of its own (:data:`TEST_SEED` and the run's
seed), never from the training data's, by a task of its own (so that a stateful task's
stream is left where training has it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# The test batch's generator is seeded with TEST_SEED + the run's seed.
TEST_SEED = 7_777_777
TEST_BATCH = 256


@dataclass(frozen=True)
class Criterion:
    """What solving ``task`` means: ``text`` says it; ``judge(task, y, batch, loss)``
    decides it on a test batch (``y`` (P, B, O) the model's outputs at the loss positions,
    ``loss`` its mean loss there)."""
    task: str
    text: str
    judge: Callable


def _all_within(tolerance: float):
    def judge(task, y, batch, loss) -> bool:
        error = (y - batch.target.to(device=y.device, dtype=y.dtype)).abs()
        return bool((error < tolerance).all())
    return judge


def _all_right(task, y, batch, loss) -> bool:
    return bool((y.argmax(-1) == batch.target.to(y.device)).all())


def _below_baseline(fraction: float):
    def judge(task, y, batch, loss) -> bool:
        return bool(loss < fraction * task.baseline)
    return judge


def _reber(task, y, batch, loss) -> bool:
    value = task.metric(y, batch)
    return value == value and value >= 0.95     # nan (no such symbol) is not solved


CRITERIA: dict[str, Criterion] = {c.task: c for c in (
    Criterion("adding", "test MSE below 5% of the no-memory baseline (1/6)",
              _below_baseline(0.05)),
    Criterion("adding-1997", "|error| < 0.04 on every test sequence (Hochreiter & "
              "Schmidhuber 1997)", _all_within(0.04)),
    Criterion("copy", "every answer symbol of every test sequence right", _all_right),
    Criterion("recall", "every test sequence's class right", _all_right),
    Criterion("series", "test MSE below half the no-memory baseline", _below_baseline(0.5)),
    Criterion("generate", "every symbol of every test sequence's pattern right", _all_right),
    Criterion("reber", "at least 95% of the long-range closing symbols right (chance: 50%)",
              _reber),
)}


def criterion(task: str) -> Criterion:
    """The success criterion of ``task``; ValueError naming the tasks that have one."""
    try:
        return CRITERIA[task]
    except KeyError:
        raise ValueError(f"the {task} task has no success criterion; tasks with one: "
                         f"{', '.join(CRITERIA)}") from None


class SuccessTest:
    """Judges a trainer's model on a fixed test batch of its task (see module doc)."""

    def __init__(self, trainer, size: int = TEST_BATCH):
        import torch

        from gradviz.engine.tasks import make_task

        config = trainer.config
        self.criterion = criterion(config.task)
        self.trainer = trainer
        self.task = make_task(config.replace(stateful=False))
        generator = torch.Generator().manual_seed(TEST_SEED + config.seed)
        self.batch = self.task.batch(size, generator)

    def __call__(self) -> tuple[bool, float]:
        """(solved, the test batch's mean loss) for the trainer's weights now."""
        import torch

        with torch.no_grad():
            return self._judge()

    def _judge(self) -> tuple[bool, float]:
        trainer = self.trainer
        x = self.batch.x.to(trainer.device, trainer.dtype)
        out = trainer.net.run(x).output
        y = trainer.net.readout(out[self.task.loss_positions])
        target = self.batch.target.to(trainer.device)
        if target.is_floating_point():
            target = target.to(trainer.dtype)
        loss = float(self.task.loss(y, target))
        if not loss == loss or loss in (float("inf"), float("-inf")):
            return False, loss
        return self.criterion.judge(self.task, y, self.batch, loss), loss


__all__ = ["TEST_SEED", "TEST_BATCH", "Criterion", "CRITERIA", "criterion", "SuccessTest"]
