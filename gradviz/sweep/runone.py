"""One run of a sweep, as a worker executes it: train for the step budget, test the model
every ``check_every`` steps against its task's success criterion
(:mod:`gradviz.engine.tasks.success`) and stop at the first success.

:func:`run_one` takes and returns plain data (a :class:`~gradviz.sweep.grid.RunSpec` as a
dict; a result row), so that any ``concurrent.futures`` executor can carry it: a local
process pool or a Dask cluster. It sets up its process or thread as the app's training
process does (denormals flushed, one torch thread), so that a run's numbers depend only
on its configuration: every executor gives the same row, bit for bit.

The row: ``success`` (0/1); ``success_step``, the steps trained when the test batch was
first solved (empty if never); ``steps_done``; ``final_loss``, the training loss of the
last step; ``test_loss``, the test batch's at the last test; ``decades_init`` and
``decades_end``, log10 of ‖∂L/∂h_{T-1}‖ / ‖∂L/∂h_0‖ (first layer, forward direction) at
the first step and at the last captured one (a gradient below 1e-38 counts as 1e-38).
"""
from __future__ import annotations

import math
import time

# ‖∂L/∂h_0‖ below this (float32's smallest normal; flushing turns less into 0) counts as it.
FLOOR = 1e-38


def decades(dh_norm) -> float:
    """log10(‖∂L/∂h_{T-1}‖ / ‖∂L/∂h_0‖) of the first layer's forward direction, from a
    capture's ``dh_norm`` (L, D, T)."""
    first, last = float(dh_norm[0, 0, 0]), float(dh_norm[0, 0, -1])
    if not (math.isfinite(first) and math.isfinite(last)):
        return math.nan
    return math.log10(max(last, FLOOR)) - math.log10(max(first, FLOOR))


def setup_worker() -> None:
    """The training process's setup, for the calling process and thread: denormals
    flushed (a per-thread setting, so every run asks again), one torch thread."""
    from gradviz.engine.training.train import prepare_training_process, set_training_threads

    prepare_training_process()
    set_training_threads(1)


def run_one(spec: dict) -> dict:
    """Train the run ``spec`` (:meth:`RunSpec.to_dict`) and return its result row (see the
    module doc). An exception propagates: the sweep records the run as failed."""
    setup_worker()
    from gradviz.config import RunConfig
    from gradviz.engine.tasks.success import SuccessTest
    from gradviz.engine.training.session import Session

    started = time.perf_counter()
    config = RunConfig.from_dict(spec["config"])
    every = min(max(1, int(spec["check_every"])), 100_000)   # capture_every's limit
    session = Session(config, history=False)
    session.set_live(capture_every=every)
    test = SuccessTest(session.trainer)
    steps = config.steps
    success_step = None
    decades_init = decades_end = math.nan
    test_loss = math.nan
    for done in range(1, steps + 1):
        if done == steps:
            session.set_live(capture_every=1)          # the last step is always captured
        report = session.step(full=False)
        if report.capture is None:
            continue
        decades_end = decades(report.capture.dh_norm)
        if done == 1:
            decades_init = decades_end
        solved, test_loss = test()
        if solved:
            success_step = done
            break
    return {"key": spec["key"], **spec["labels"], "status": "ok",
            "success": int(success_step is not None),
            "success_step": success_step, "steps_done": session.steps_done,
            "final_loss": session.last_loss, "test_loss": test_loss,
            "baseline": float(session.trainer.baseline),
            "decades_init": decades_init, "decades_end": decades_end,
            "seconds": round(time.perf_counter() - started, 3), "reason": ""}


__all__ = ["run_one", "setup_worker", "decades", "FLOOR"]
