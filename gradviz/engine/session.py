"""One run, owned in one place: its configuration, trainer, bounded history, divergence
watch and summary counts.

A :class:`Session` is what ``gradviz run``, the app's training process
(:mod:`gradviz.engine.process`) and a notebook all train with::

    session = Session(RunConfig(cell="gru", seq_len=100))
    session.run(200, on_capture=print)            # or: for report in session.steps(200): …
    session.history.dh_norm                       # (K, L, D, T) ‖∂L/∂h_t‖ of every capture

Plain Python over :class:`~gradviz.engine.train.Trainer`: no threads, no Qt. Training stops
between two steps when ``should_stop()`` says so; a KeyboardInterrupt propagates to the
caller, with every finished step recorded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

from gradviz.config import RunConfig
from gradviz.engine.capture import Capture
from gradviz.engine.divergence import Divergence
from gradviz.engine.history import HISTORY_CAPACITY, History
from gradviz.engine.train import Trainer



@dataclass(frozen=True)
class StepReport:
    """What one step did. ``capture`` is None on steps that ``capture_every`` skips;
    ``divergence`` is set on the step where the divergence rule tripped."""
    step: int                        # index of the step (0-based)
    capture: Capture | None
    divergence: Divergence | None
    loss: float


@dataclass
class Counts:
    """Counted over captured steps (every step when capture_every is 1)."""
    captured: int = 0
    nonfinite: int = 0
    clipped: int = 0


class Session:
    """Trains one model and keeps its record.

    ``text``: the already-read contents of the text task's file (read from
    ``config.text_file`` when None). ``history``: keep a bounded :class:`History` of every
    capture (a caller that keeps its own, such as the app's training process, passes False).
    """

    def __init__(self, config: RunConfig, text: str | None = None, *, history: bool = True,
                 history_capacity: int = HISTORY_CAPACITY):
        self.trainer = Trainer(config, text=text)
        self.history: History | None = History(history_capacity) if history else None
        self.counts = Counts()
        self.seconds = 0.0           # spent in training steps
        self.interrupted = False

    # -- what it is ---------------------------------------------------------------------
    @property
    def config(self) -> RunConfig:
        return self.trainer.config

    @property
    def steps_done(self) -> int:
        return self.trainer.step_index

    @property
    def last_loss(self) -> float:
        return self.trainer.last_loss

    @property
    def is_language(self) -> bool:
        return bool(getattr(self.trainer.task, "is_language", False))

    @property
    def data_note(self) -> str | None:
        """A remark about the task's data (e.g. a text file read in part), or None."""
        return getattr(self.trainer.task, "note", None)

    @property
    def first_divergence(self) -> Divergence | None:
        return self.trainer.watch.first

    @property
    def times_diverged(self) -> int:
        return self.trainer.watch.tripped

    def trips_if_next_fails(self) -> bool:
        """Whether one more failed step would trip the divergence rule."""
        return self.trainer.watch.trips_if_next_fails()

    # -- training -----------------------------------------------------------------------
    def set_live(self, **changes) -> None:
        """Clipping, learning rate, momentum or capture interval, from the next step on."""
        self.trainer.set_live(**changes)

    def step(self, full: bool = True) -> StepReport:
        """Train one batch. ``full=False`` asks for a light capture (no per-unit arrays)."""
        started = time.perf_counter()
        index = self.trainer.step_index
        capture = self.trainer.step(full=full)
        self.seconds += time.perf_counter() - started
        if capture is not None:
            self.counts.captured += 1
            self.counts.nonfinite += capture.nonfinite
            self.counts.clipped += capture.clipped
            if self.history is not None:
                self.history.append(capture)
        return StepReport(index, capture, self.trainer.divergence, self.trainer.last_loss)

    def steps(self, n: int | None = None, full: bool = True) -> Iterator[StepReport]:
        """Train ``n`` steps (for ever if None), yielding a report after each."""
        done = 0
        while n is None or done < n:
            yield self.step(full)
            done += 1

    def run(self, steps: int | None = None, *,
            on_capture: Callable[[Capture], None] | None = None,
            on_step: Callable[[StepReport], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> int:
        """Train ``steps`` steps (default ``config.steps``); returns how many were trained.

        ``on_capture`` gets every capture, ``on_step`` every report; ``should_stop`` is
        asked before each step. A KeyboardInterrupt stops training, marks the session
        interrupted and propagates."""
        total = self.config.steps if steps is None else steps
        done = 0
        try:
            while done < total and not (should_stop is not None and should_stop()):
                report = self.step()
                done += 1
                if on_capture is not None and report.capture is not None:
                    on_capture(report.capture)
                if on_step is not None:
                    on_step(report)
        except KeyboardInterrupt:
            self.interrupted = True
            raise
        return done

    def generate(self, n: int = 200, temperature: float = 1.0) -> str | None:
        """Text sampled from a language model; None for the other tasks."""
        return self.trainer.generate(n, temperature)

    # -- record -------------------------------------------------------------------------
    def summary(self) -> dict:
        """The run's summary, as the run file keeps it (docs/run-format.md)."""
        done = self.steps_done
        first = self.first_divergence
        return {
            "steps_done": done,
            "seconds": round(self.seconds, 3),
            "steps_per_second": done / self.seconds if self.seconds > 0 else None,
            "final_loss": self.last_loss if done else None,
            "baseline": float(self.trainer.baseline),
            "nonfinite_steps": self.counts.nonfinite,
            "clipped_steps": self.counts.clipped,
            "captured_steps": self.counts.captured,
            "interrupted": self.interrupted,
            "diverged_at_step": None if first is None else first.step,
        }

    def save(self, folder, **extra) -> None:
        """Write the run folder (run.json + capture.npz); ``extra`` joins the summary."""
        from gradviz.engine.record import save_run

        if self.history is None:
            raise ValueError("this session keeps no history (history=False): nothing to save")
        save_run(folder, self.config, self.history, {**self.summary(), **extra})


__all__ = ["Session", "StepReport", "Counts", "HISTORY_CAPACITY"]
