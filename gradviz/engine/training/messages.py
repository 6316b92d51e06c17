"""What the window and the training process say to each other: small typed dataclasses.

Commands go from the window to the training process (:mod:`gradviz.engine.training.process`);
reports come back. Every report carries the ``run_id`` of the model it is about: the
window drops reports of a model it has since replaced. Plain data only (numbers, strings,
:class:`~gradviz.engine.runs.capture.Capture` snapshots and
:class:`~gradviz.engine.runs.runstate.RunState` of numpy arrays): no tensors, no Qt.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradviz.engine.analysis.treereport import TreeSettings, TreeSnapshot
from gradviz.engine.runs.capture import Capture
from gradviz.engine.runs.runstate import RunState


# -- commands: window -> training process ----------------------------------------------
@dataclass(frozen=True)
class Start:
    """Train freely until paused."""


@dataclass(frozen=True)
class Pause:
    """Stop after the step under way; pending captures are sent."""


@dataclass(frozen=True)
class Step:
    """Train one batch and stay paused."""


@dataclass(frozen=True)
class Reset:
    """A new model from ``config`` (a RunConfig as a dict); later reports carry ``run_id``.
    ``resume``: a saved run's folder, whose weights, optimiser state and data position the
    model starts from, so that it continues that run (``config`` is the run's); a run that
    cannot be continued is an Error, like a bad setting."""
    run_id: int
    config: dict[str, Any]
    resume: str | None = None


@dataclass(frozen=True)
class Checkpoint:
    """Send the model's state (a :class:`Checkpointed` report), to save the run whole."""


@dataclass(frozen=True)
class Live:
    """Live settings (clipping, learning rate, …) for the next step of the same model."""
    changes: dict[str, Any]


@dataclass(frozen=True)
class AskTree:
    """Send the prediction tree for ``settings`` now (a :class:`Tree` report), and again
    each time a language model's text is sampled, until asked for other settings."""
    settings: TreeSettings


@dataclass(frozen=True)
class Quit:
    """End the training process."""


Command = Start | Pause | Step | Reset | Checkpoint | Live | AskTree | Quit


# -- reports: training process -> window -----------------------------------------------
@dataclass(frozen=True)
class Report:
    run_id: int


@dataclass(frozen=True)
class Ready(Report):
    """A new model exists (after a reset); ``language``: it can sample text."""
    language: bool


@dataclass(frozen=True)
class Note(Report):
    """A remark about the new model's data (a text file read in part), right after Ready."""
    text: str


@dataclass(frozen=True)
class Notice(Report):
    """A remark for the status bar, once per process (e.g. the slower code path)."""
    text: str


@dataclass(frozen=True)
class Data(Report):
    """Captures since the last Data, oldest first; all light but the last, which is full.
    Sent every ~30 ms while running, and at once after a single step or a pause."""
    captures: list[Capture] = field(default_factory=list)
    step: int = 0               # steps trained so far
    steps_per_s: float = 0.0
    loss: float = float("nan")  # of the newest captured step


@dataclass(frozen=True)
class Text(Report):
    """Text sampled from a language model, every ~2 s while running, after ``step``
    steps."""
    text: str
    step: int = 0


@dataclass(frozen=True)
class Tree(Report):
    """The prediction tree (:class:`~gradviz.engine.analysis.treereport.TreeSnapshot`) of
    the model after ``tree.steps_done`` steps, for the settings last asked."""
    tree: TreeSnapshot


@dataclass(frozen=True)
class Checkpointed(Report):
    """The answer to :class:`Checkpoint`: what continuing the run needs (a
    :class:`~gradviz.engine.runs.runstate.RunState` of numpy arrays) and its summary (as
    :meth:`Session.summary <gradviz.engine.training.session.Session.summary>` gives it), taken
    between two steps. ``state`` is None if there is no model (after an error)."""
    state: RunState | None
    summary: dict[str, Any]


@dataclass(frozen=True)
class State(Report):
    """The process is ``paused``, ``running`` or in ``error`` (waiting for a reset)."""
    state: str


@dataclass(frozen=True)
class Diverged(Report):
    """The run was found diverged (gradviz.engine.training.divergence) on ``step``; the data so far
    came first, and a running loop paused itself (a State "paused" follows)."""
    message: str
    advice: str
    step: int


@dataclass(frozen=True)
class Error(Report):
    """Training failed; the process waits for a reset. ``traceback`` is "" for a bad
    setting or file (the user's to fix), the full traceback for a bug."""
    message: str
    traceback: str = ""


@dataclass(frozen=True)
class Heard(Report):
    """How many commands the process has read so far: the window sends no more than a few
    ahead of it, so that a process busy with a long step never has a full pipe."""
    commands: int


__all__ = ["Start", "Pause", "Step", "Reset", "Checkpoint", "Live", "AskTree", "Quit", "Command", "Report",
           "Ready", "Note", "Notice", "Data", "Text", "Tree", "Checkpointed", "State", "Diverged",
           "Error", "Heard"]
