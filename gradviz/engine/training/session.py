"""One run, owned in one place: its configuration, trainer, bounded history and keyframes,
sampled text, divergence watch and summary counts.

A :class:`Session` is what ``gradviz run``, the app's training process
(:mod:`gradviz.engine.training.process`) and a notebook all train with::

    session = Session(RunConfig(cell="gru", seq_len=100))
    session.run(200, on_capture=print)            # or: for report in session.steps(200): …
    session.history.dh_norm                       # (K, L, D, T) ‖∂L/∂h_t‖ of every capture

A saved run goes on where it stopped: ``Session.resume("runs/demo").run(100)`` trains 100
more steps exactly as the original session would have (:mod:`gradviz.engine.runs.runstate`),
and ``save`` writes the whole run, old steps and new.

Plain Python over :class:`~gradviz.engine.training.train.Trainer`: no threads, no Qt. Training stops
between two steps when ``should_stop()`` says so; a KeyboardInterrupt propagates to the
caller, with every finished step recorded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

from gradviz.config import RunConfig
from gradviz.engine.runs.capture import Capture
from gradviz.engine.training.divergence import Divergence
from gradviz.engine.runs.history import HISTORY_CAPACITY, History
from gradviz.engine.runs.keyframes import KEYFRAME_CAPACITY, Keyframes
from gradviz.engine.runs.runstate import RunState, capture_state, restore_state
from gradviz.engine.training.train import Trainer

# Sampled texts a session keeps; when full, every other one of the older half goes, so
# that they stay spread over the run.
TEXT_CAPACITY = 256


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
    capture and :class:`Keyframes` of the full ones (a caller that keeps its own, such as
    the app's training process, passes False). ``state``: continue from a
    :class:`RunState` of a run of this configuration (ValueError if it is not one).
    """

    def __init__(self, config: RunConfig, text: str | None = None, *, history: bool = True,
                 history_capacity: int = HISTORY_CAPACITY,
                 keyframe_capacity: int = KEYFRAME_CAPACITY, state: RunState | None = None):
        self.trainer = Trainer(config, text=text)
        self.history: History | None = History(history_capacity) if history else None
        self.keyframes: Keyframes | None = Keyframes(keyframe_capacity) if history else None
        self.texts: list[tuple[int, str]] = []     # (steps trained, text), oldest first
        self.counts = Counts()
        self.seconds = 0.0           # spent in training steps
        self.interrupted = False
        if state is not None:
            restore_state(self, state)

    @classmethod
    def resume(cls, folder, text: str | None = None, *,
               history_capacity: int = HISTORY_CAPACITY,
               keyframe_capacity: int = KEYFRAME_CAPACITY) -> "Session":
        """The session of a saved run, with its history, keyframes and text, ready to train
        on from its last step; RunFileError if the run cannot be read or continued, or its
        files do not fit together (:mod:`gradviz.engine.runs.runcheck`)."""
        from gradviz.engine.runs.resume import restore_run
        from gradviz.engine.runs.runfile import open_run

        run = open_run(folder, history_capacity, keyframe_capacity)
        if run.recorded is not None:
            from gradviz.engine.runs.recorded import not_trainable
            raise not_trainable(run.folder, run.recorded)
        session = cls(run.config, text, history_capacity=history_capacity,
                      keyframe_capacity=keyframe_capacity)
        restore_run(session, run)
        session.history, session.keyframes = run.history, run.keyframes
        session.texts = list(run.texts)
        return session

    def state(self) -> RunState:
        """What continuing this run needs, now (between two steps)."""
        return capture_state(self)

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
                self.keyframes.add(capture)
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
        """Text sampled from a language model (kept in :attr:`texts`); None for the other
        tasks."""
        text = self.trainer.generate(n, temperature)
        if text is not None:
            if len(self.texts) >= TEXT_CAPACITY:
                del self.texts[:TEXT_CAPACITY // 2:2]
            self.texts.append((self.steps_done, text))
        return text

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
        """Write the whole run folder (run.json, capture.npz with the keyframes and text,
        state.npz); ``extra`` joins the summary. A language model's run that has no text of
        its newest step gets one first, so that an opened run shows what the model writes."""
        from gradviz.engine.runs.runfile import save_run

        if self.history is None:
            raise ValueError("this session keeps no history (history=False): nothing to save")
        if self.is_language and self.steps_done and (not self.texts
                                                    or self.texts[-1][0] != self.steps_done):
            self.generate()
        save_run(folder, self.config, self.history, {**self.summary(), **extra},
                 keyframes=self.keyframes, texts=self.texts, state=self.state())


__all__ = ["Session", "StepReport", "Counts", "HISTORY_CAPACITY", "TEXT_CAPACITY"]
