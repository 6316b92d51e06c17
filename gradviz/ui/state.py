"""The app model: what the window shows, held in one place and announced with signals.

:class:`AppState` holds the runs on screen (``runs[0]`` is the live one, the model the
training process trains; comparison runs, read-only, follow it), the settings of the live
model, whether training runs, and the training step the per-step views show. The window,
the views' redraw scheduler and the status bar react to its signals; nothing else keeps
that state. No training happens here: captures arrive from the worker and are recorded.
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass

from PyQt6 import QtCore

from gradviz.config import RunConfig, differences, structural_change
from gradviz.engine.runs.capture import Capture
from gradviz.engine.runs.history import HISTORY_CAPACITY, History
from gradviz.engine.runs.keyframes import Keyframes
from gradviz.ui.treerecord import TreeRecord



# Comparison runs kept besides the live one; a fifth pushes the oldest out. Each holds at
# most a History (max_bytes, 256 MiB) and Keyframes (KEYFRAME_MAX_BYTES, 256 MiB) and its
# text samples (TEXT_SAMPLES strings), so the runs on screen hold at most
# (1 + MAX_COMPARISONS) x 512 MiB however long they trained; small models far less.
MAX_COMPARISONS = 4
# Text samples a run keeps (one every ~2 s while a language model trains).
TEXT_SAMPLES = 256



class ShownRun:
    """One run on screen: its settings, bounded history, keyframes (full captures at steps
    spread over the run), newest full capture and sampled texts. ``source`` is the folder it
    was opened from, None for a run trained here; ``hidden``: a comparison run not drawn.
    ``recorded``: of a run recorded from Python (gradviz.watch), what was recorded
    (:mod:`gradviz.engine.runs.recorded`); its ``config`` then only lays out the views
    (:func:`gradviz.ui.recordedrun.layout_config`) and is never shown or trained."""

    def __init__(self, config: RunConfig, history: History | None = None,
                 source: str | None = None, keyframes: Keyframes | None = None):
        self.config = config
        self.history = history if history is not None else History(HISTORY_CAPACITY)
        self.latest: Capture | None = self.history.latest
        self.keyframes = keyframes if keyframes is not None else Keyframes()
        if not len(self.keyframes) and self.latest is not None:
            self.keyframes.add(self.latest)
        self.texts: list[tuple[int, str]] = []   # (steps trained when sampled, text)
        self.trees = TreeRecord()                 # prediction trees (gradviz.ui.treerecord)
        self.source = source
        self.recorded: dict | None = None
        self.hidden = False
        self.number = 0    # given by the AppState that shows it
        # Of an opened run: its saved colour scales (view key: (low, high)), its summary,
        # and whether it has the state to be continued.
        self.scales: dict[str, tuple[float, float]] = {}
        self.summary: dict = {}
        self.can_continue = False
        # Whether a setting changed while it trained (its config is the newest settings):
        # then it is not the run a fresh model with those settings would train.
        self.changed_live = False

    @property
    def name(self) -> str:
        """What the title bar and legends call it: the folder's name for an opened run."""
        if self.source:
            return os.path.basename(os.path.normpath(self.source))
        c = self.config
        return f"{c.cell}, {c.task}, T {c.seq_len}"

    @property
    def task_label(self) -> str:
        """Its task, or for a run recorded from Python, that: it has no gradviz task."""
        return "recorded from Python" if self.recorded is not None else self.config.task

    @property
    def text(self) -> str | None:
        """The newest sampled text."""
        return self.texts[-1][1] if self.texts else None

    @property
    def newest_step(self) -> int | None:
        return int(self.history.step[-1]) if len(self.history) else None

    def append(self, captures: list[Capture]) -> None:
        for capture in captures:
            self.history.append(capture)
            if not capture.is_light:
                self.latest = capture
                self.keyframes.add(capture)

    def add_text(self, text: str, steps_done: int | None = None) -> None:
        """A text sampled after ``steps_done`` steps (default: those recorded)."""
        if steps_done is None:
            steps_done = 0 if self.newest_step is None else self.newest_step + 1
        self.texts.append((int(steps_done), text))
        # Thinned like the keyframes: every other old sample goes, the newest stays.
        if len(self.texts) > TEXT_SAMPLES:
            self.texts = self.texts[:-1:2] + self.texts[-1:]

    def capture_at(self, step: int | None) -> Capture | None:
        """The full capture the per-step views show at ``step``: the keyframe nearest to
        it, or for None (follow the newest) the newest full capture."""
        if step is None or not len(self.keyframes):
            return self.latest
        return self.keyframes.nearest(step)

    def text_at(self, step: int | None) -> str | None:
        """The newest text sampled by the end of training step ``step`` (None: the newest
        of all); step k is done when k + 1 steps are."""
        if step is None:
            return self.text
        index = bisect.bisect_right([s for s, _ in self.texts], step + 1)
        return self.texts[index - 1][1] if index else None

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays this run holds (history rows in use, keyframes)."""
        history = sum(a.nbytes for a in getattr(self.history, "_a", {}).values())
        return history + self.keyframes.nbytes + sum(len(t) for _, t in self.texts)


@dataclass(frozen=True)
class Comparison:
    """A comparison run as the views draw it: its ``label`` (what differs from the live
    run), ``history``, the full ``capture`` at the step shown (or its newest) and its
    place ``index`` among the comparisons shown (its colour)."""
    label: str
    history: History
    capture: Capture | None
    index: int


class AppState(QtCore.QObject):
    """Signals: ``runs_changed()`` when the live run is replaced (views start afresh);
    ``comparisons_changed()`` when a comparison run is added, hidden, shown or removed;
    ``data_changed()`` when the live run's record grew; ``text_changed(str)``;
    ``running_changed(bool)``; ``config_changed(RunConfig)``; ``step_selected(object)``
    (a training step, or None for the newest); ``runs_set_aside(str)`` when runs leave the
    screen for the Runs menu's "set aside" list, with a line saying which and why.

    Comparison runs share the live run's axes: a run of another task or sequence length
    (another loss, another time axis) is set aside, not drawn, when the live run changes
    to one; so are all of them when an experiment is chosen (:meth:`set_aside_all`). Set
    aside runs can be brought back (:meth:`bring_back`)."""

    runs_changed = QtCore.pyqtSignal()
    comparisons_changed = QtCore.pyqtSignal()
    data_changed = QtCore.pyqtSignal()
    text_changed = QtCore.pyqtSignal(str)
    running_changed = QtCore.pyqtSignal(bool)
    config_changed = QtCore.pyqtSignal(object)
    step_selected = QtCore.pyqtSignal(object)
    runs_set_aside = QtCore.pyqtSignal(str)

    def __init__(self, config: RunConfig, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self._config = config
        self._made = 0
        self._runs: list[ShownRun] = [self._number(ShownRun(config))]
        self._aside: list[ShownRun] = []
        self._recent = 0     # runs the last new live run set aside
        self._running = False
        self._selected_step: int | None = None

    def _number(self, run: ShownRun) -> ShownRun:
        """Runs are numbered as they come, so that two with the same settings have
        different labels."""
        self._made += 1
        run.number = self._made
        return run

    # -- reading ------------------------------------------------------------------------
    @property
    def runs(self) -> tuple[ShownRun, ...]:
        """The live run, then the comparison runs, newest first."""
        return tuple(self._runs)

    @property
    def live(self) -> ShownRun:
        return self._runs[0]

    @property
    def comparisons(self) -> tuple[ShownRun, ...]:
        return tuple(self._runs[1:])

    @property
    def config(self) -> RunConfig:
        """The settings of the live model (what the controls show)."""
        return self._config

    @property
    def running(self) -> bool:
        """What the user asked for; follows the training process's reports."""
        return self._running

    @property
    def viewing_saved_run(self) -> bool:
        return self.live.source is not None

    @property
    def selected_step(self) -> int | None:
        return self._selected_step

    @property
    def set_aside(self) -> tuple[ShownRun, ...]:
        """Runs taken off the screen because they cannot share its axes, newest first."""
        return tuple(self._aside)

    def label(self, run: ShownRun) -> str:
        """What the legends call ``run``. A comparison run: the settings in which it differs
        from the live run ("no clipping", "forget-gate bias 0"), the opened folder's name
        first, its number where two shown read alike. The live run: its own values of the
        settings in which the shown comparison runs differ from it ("clip by norm at 2").
        Computed from the configurations each time, so never stale."""
        live = self.live
        if run is live:
            others = [r.config for r in self._runs[1:] if not r.hidden and not r.recorded]
            text = ", ".join(differences(run.config, others)) or "same settings"
            if run.recorded is not None:
                text = run.task_label
            return f"{run.name}: {text}" if run.source else text
        text = self._plain_label(run)
        alike = [r for r in self._runs[1:] if r is not run and not r.hidden
                 and self._plain_label(r) == text]
        return f"{text} (run {run.number})" if alike else text

    def _plain_label(self, run: ShownRun) -> str:
        if run.recorded is not None or self.live.recorded is not None:
            text = run.task_label if run.recorded is not None else \
                f"{run.config.cell}, {run.config.task}"
        else:
            text = ", ".join(differences(run.config, [self.live.config])) or "same settings"
        return f"{run.name}: {text}" if run.source else text

    def shown_comparisons(self) -> tuple[Comparison, ...]:
        """The comparison runs not hidden, as the views draw them: each at the step the
        timeline shows (its nearest keyframe), or its newest while the timeline follows."""
        shown = [run for run in self._runs[1:] if not run.hidden and len(run.history)]
        return tuple(Comparison(self.label(run), run.history,
                                run.capture_at(self._selected_step), index)
                     for index, run in enumerate(shown))

    # -- changing -----------------------------------------------------------------------
    def set_config(self, config: RunConfig, fresh: bool = False) -> None:
        """The live model's settings. A live change (clipping, learning rate) is part of
        the run that goes on; unless ``fresh`` (a new model follows at once, whose run
        will have them), the run on screen takes it."""
        if config != self._config:
            if not fresh and self.live.recorded is None \
                    and not structural_change(self.live.config, config):
                self.live.config = config
                self.live.changed_live = self.live.changed_live or len(self.live.history) > 0
            self._config = config
            self.config_changed.emit(config)

    def new_live_run(self, run: ShownRun | None = None) -> ShownRun:
        """The live run starts afresh (a new model) or is ``run`` (an opened one). The
        run it replaces stays on screen as a comparison if it recorded anything, unless it
        was trained here with the very settings of the new one (a Reset without a change:
        the same seed trains the same run again; one whose settings changed while it
        trained is kept), and a comparison trained with the same settings as it is
        replaced by it. Comparison runs of another task or sequence
        length are set aside."""
        old = self.live
        self._recent = 0
        new = self._number(run if run is not None else ShownRun(self._config))
        self._runs[0] = new
        if len(old.history) and not (old.source is None and new.source is None
                                     and old.config == new.config and not old.changed_live):
            if old.source is None and not old.changed_live:
                self._runs[1:] = [r for r in self._runs[1:] if r.source is not None
                                  or r.changed_live or r.config != old.config]
            self._runs.insert(1, old)
            del self._runs[1 + MAX_COMPARISONS:]
        self._set_aside([r for r in self._runs[1:] if not self.compatible(r)],
                        f"another task or sequence length than {new.task_label}, "
                        f"T {new.config.seq_len}")
        self._selected_step = None
        self.runs_changed.emit()
        self.comparisons_changed.emit()
        if len(self.live.history):
            self.data_changed.emit()
        return self.live

    def compatible(self, run: ShownRun) -> bool:
        """Whether ``run`` can share the live run's plots: the same task (the loss's units
        and baseline; runs recorded from Python go with each other only) and sequence
        length (the time axis)."""
        a, b = run, self.live
        return (a.task_label, a.config.seq_len) == (b.task_label, b.config.seq_len)

    def set_aside_all(self, why: str) -> None:
        """Take every comparison run off the screen (to the Runs menu), saying ``why``;
        the line counts those the last new live run set aside too."""
        self._set_aside(list(self._runs[1:]), why, self._recent)
        self._recent = 0
        self.comparisons_changed.emit()

    def _set_aside(self, runs: list[ShownRun], why: str, before: int = 0) -> None:
        if not runs and not before:
            return
        for run in runs:
            self._runs.remove(run)
        self._aside[:0] = runs
        del self._aside[MAX_COMPARISONS:]
        self._recent = before + len(runs)
        runs = [None] * self._recent
        count = f"{len(runs)} comparison run{'s' * (len(runs) != 1)}"
        self.runs_set_aside.emit(f"{count} set aside ({why}): Runs ▸ Set aside brings "
                                 f"{'them' if len(runs) > 1 else 'it'} back.")

    def bring_back(self, run: ShownRun) -> None:
        """Show a set-aside run again as a comparison."""
        if run in self._aside:
            self._recent = 0
            self._aside.remove(run)
            self._runs.insert(1, run)
            for extra in self._runs[1 + MAX_COMPARISONS:]:
                self._aside.insert(0, extra)
            del self._runs[1 + MAX_COMPARISONS:]
            del self._aside[MAX_COMPARISONS:]
            self.comparisons_changed.emit()

    def continue_live(self) -> None:
        """The opened run on screen is trained on: it is no longer a saved run's view."""
        self.live.source = None
        self.live.can_continue = False
        self.runs_changed.emit()
        self.data_changed.emit()

    def add_comparison(self, run: ShownRun) -> None:
        """Show ``run`` (an opened one) beside the live run, the newest comparison."""
        self._runs.insert(1, self._number(run))
        del self._runs[1 + MAX_COMPARISONS:]
        self.comparisons_changed.emit()

    def remove_run(self, run: ShownRun) -> None:
        """Take a comparison run off the screen; its memory goes with it."""
        if run in self._runs[1:]:
            self._runs.remove(run)
            self.comparisons_changed.emit()

    def set_hidden(self, run: ShownRun, hidden: bool) -> None:
        if run in self._runs[1:] and run.hidden != hidden:
            run.hidden = hidden
            self.comparisons_changed.emit()

    def add_captures(self, captures: list[Capture]) -> None:
        self.live.append(captures)
        self.data_changed.emit()

    def set_text(self, text: str, steps_done: int | None = None) -> None:
        self.live.add_text(text, steps_done)
        self.text_changed.emit(text)

    def set_running(self, running: bool) -> None:
        if running != self._running:
            self._running = running
            self.running_changed.emit(running)

    def select_step(self, step: int | None) -> None:
        """Show training step ``step`` in the per-step views (None: follow the newest)."""
        if step != self._selected_step:
            self._selected_step = step
            self.step_selected.emit(step)


__all__ = ["AppState", "ShownRun", "Comparison", "HISTORY_CAPACITY", "MAX_COMPARISONS",
           "TEXT_SAMPLES"]
