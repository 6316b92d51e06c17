"""The Qt handle of the training process (:mod:`gradviz.engine.training.process`).

The window never touches a tensor: the process owns the model and sends back plain
snapshots, as the typed reports of :mod:`gradviz.engine.training.messages`; this object turns them
into Qt signals on the GUI thread. Commands go down a pipe, a few at most ahead of what
the process has read (it says what it has read with ``Heard``): a process busy with a long
step can then never have a full pipe, so sending never blocks the window and closing
never leaves a thread stuck in a write. Commands not yet sent wait here, and a reset drops
those it makes pointless.
"""
from __future__ import annotations

import queue
import time
from collections import deque

from PyQt6 import QtCore

from gradviz.config import RunConfig
from gradviz.engine.training import messages as m
from gradviz.engine.training.launch import TrainingProcess

# Commands in the pipe that the process has not read yet, at most: each is well under a
# kilobyte, the pipe holds 64 KB.
AHEAD = 8
# No heartbeat for this long: the process is stopped or hung (a step of the largest models
# takes ~0.5 s, and the heartbeat comes from a thread of its own every 0.25 s).
HUNG_AFTER_S = 3.0
# Before its first heartbeat a new process is importing Python modules: give it longer.
FIRST_BEAT_S = 15.0


class WorkerSignals(QtCore.QObject):
    """What a training backend tells the window, as :class:`TrainingWorker` describes each
    signal: the real process, the in-process thread (gradviz.ui.inprocess) and the
    snapshot's stand-in (gradviz.ui.offline) all emit these."""

    captures_ready = QtCore.pyqtSignal(list)
    status = QtCore.pyqtSignal(dict)
    text_ready = QtCore.pyqtSignal(str, int)
    tree_ready = QtCore.pyqtSignal(object)   # a TreeSnapshot (gradviz.engine.analysis.treereport)
    checkpointed = QtCore.pyqtSignal(object, dict)
    error = QtCore.pyqtSignal(str, str)
    state_changed = QtCore.pyqtSignal(str)
    ready = QtCore.pyqtSignal(bool)
    note = QtCore.pyqtSignal(str)
    notice = QtCore.pyqtSignal(str)       # for the status bar (e.g. the slower code path)
    diverged = QtCore.pyqtSignal(str, str)
    responding_changed = QtCore.pyqtSignal(bool)   # heartbeat lost (False) or back (True)


class TrainingWorker(WorkerSignals):
    """GUI-side handle of the training process; all methods are called on the GUI thread.

    Signals carry plain data: ``captures_ready(list[Capture])`` (oldest first, the last one
    full), ``status(dict)`` with step, steps_per_s and loss, ``text_ready(str, int)`` (a
    sample and the steps trained then), ``tree_ready(TreeSnapshot)`` (the prediction tree
    last asked for with :meth:`ask_tree`), ``checkpointed(object, dict)`` (the answer to
    :meth:`checkpoint`: a RunState or None, and the summary; every capture up to the
    state's step was emitted before it),
    ``error(str, str)`` (message, traceback), ``state_changed(str)`` (starting, paused,
    running, error, stopped), ``ready(bool)`` (a new model exists; True for language
    tasks), ``note(str)`` (a remark about the new model's data, after ``ready``) and
    ``diverged(str, str)`` (what happened, what to try: the run paused itself).
    """


    POLL_MS = 15

    def __init__(self, config: RunConfig, parent: QtCore.QObject | None = None, *,
                 process: TrainingProcess | None = None):
        """``process``: one started with no model (:func:`~gradviz.engine.training.launch.prestart`,
        as the app does before it builds its window), which this takes over, its first
        command ``config``'s model; if it has died already, a new one is started."""
        super().__init__(parent)
        self._run_id = 0
        self._state = "starting"
        self._closed = False
        self._outbox: deque = deque()   # commands not yet in the pipe
        self._responding = True
        if process is not None and process.process.is_alive():
            self._adopt(process, 1)
            self._send(m.Reset(self._run_id, config.to_dict()))
        else:
            if process is not None:
                process.close()
            self._spawn(config)
        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self.poll)
        self._timer.start(self.POLL_MS)

    def _spawn(self, config: RunConfig) -> None:
        """A new training process, with a fresh pipe and queue (a killed process may leave
        a queue broken)."""
        self._adopt(TrainingProcess(self._run_id + 1, config.to_dict()), self._run_id + 1)

    def _adopt(self, started: TrainingProcess, run_id: int) -> None:
        """Talk to ``started`` from now on, its model ``run_id``."""
        self._run_id = run_id
        self._outbox.clear()
        self._sent = self._heard = 0
        self._commands, self._results = started.commands, started.results
        self._heartbeat, self._window_read = started.heartbeat, started.window_read
        self._process = started.process
        self._beat_seen = (-1, time.monotonic())   # (value, when it last changed)
        self._set_responding(True)
        self._set_state("starting")

    @property
    def state(self) -> str:
        return self._state

    @property
    def run_id(self) -> int:
        """Which model the results taken now come from: one more after every reset."""
        return self._run_id

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def exitcode(self) -> int | None:
        """The training process's exit status once it has ended, else None."""
        return self._process.exitcode

    def is_alive(self) -> bool:
        return self._process.is_alive()

    @property
    def responding(self) -> bool:
        """False while the process lives but its heartbeat has stopped (it was stopped, or
        hangs); Reset then replaces it."""
        return self._responding

    # -- commands ---------------------------------------------------------------------
    def start(self) -> None:
        self._send(m.Start())

    def pause(self) -> None:
        self._send(m.Pause())

    def step(self) -> None:
        self._send(m.Step())

    def set_live(self, changes: dict) -> None:
        self._send(m.Live(dict(changes)))

    def reset(self, config: RunConfig, resume: str | None = None) -> None:
        """A new model from ``config``, or with ``resume`` (a saved run's folder) the model
        of that run continued; results of the previous one still in flight are dropped.
        Starts a new process if the last one died."""
        if self._closed:
            return
        if not self._responding:
            self._end_process()   # killed: a new process whether or not it is gone yet
        if not self._responding or not self._process.is_alive():
            self._release()
            self._spawn(config)
            if resume is None:
                return
        self._run_id += 1
        self._outbox.clear()   # what was waiting was meant for the model now replaced
        self._send(m.Reset(self._run_id, config.to_dict(), resume))
        self._set_state("starting")

    def checkpoint(self) -> None:
        """Ask for the model's state; ``checkpointed`` answers."""
        self._send(m.Checkpoint())

    def ask_tree(self, settings) -> None:
        """Ask for the prediction tree of ``settings`` (a TreeSettings) now and as the
        model trains; ``tree_ready`` answers."""
        self._send(m.AskTree(settings))

    def _send(self, command) -> None:
        if self._closed or not self._process.is_alive():
            return
        self._outbox.append(command)
        self._pump()

    def _pump(self) -> None:
        """Move waiting commands into the pipe while the process is few enough behind."""
        while self._outbox and self._sent - self._heard < AHEAD:
            try:
                self._commands.send(self._outbox[0])
            except (OSError, ValueError):   # the process has ended; poll() will say so
                self._outbox.clear()
                return
            self._outbox.popleft()
            self._sent += 1

    # -- results ----------------------------------------------------------------------
    def poll(self) -> None:
        """Drain the result queue without blocking, and emit what arrived."""
        captures: list = []
        status = None
        while True:
            try:
                report = self._results.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            if isinstance(report, m.Heard):   # about the process, whichever model
                self._heard = report.commands
                continue
            if isinstance(report, m.Data):
                self._window_read.value += 1      # whoever's: the process waits on the count
            if report.run_id != self._run_id:
                continue  # from a model that has since been reset
            if isinstance(report, m.Data):
                captures.extend(report.captures)
                status = {"step": report.step, "steps_per_s": report.steps_per_s,
                          "loss": report.loss}
            elif isinstance(report, m.State):
                self._set_state(report.state)
            elif isinstance(report, m.Ready):
                self.ready.emit(report.language)
            elif isinstance(report, m.Note):
                self.note.emit(report.text)
            elif isinstance(report, m.Notice):
                self.notice.emit(report.text)
            elif isinstance(report, m.Text):
                self.text_ready.emit(report.text, report.step)
            elif isinstance(report, m.Tree):
                self.tree_ready.emit(report.tree)
            elif isinstance(report, m.Checkpointed):
                if captures:      # the state's step is that of the last capture before it
                    self.captures_ready.emit(captures)
                    captures = []
                self.checkpointed.emit(report.state, report.summary)
            elif isinstance(report, m.Error):
                self.error.emit(report.message, report.traceback)
            elif isinstance(report, m.Diverged):
                self.diverged.emit(report.message, report.advice)
        self._pump()
        self._check_heartbeat()
        if captures:
            self.captures_ready.emit(captures)
        if status is not None:
            self.status.emit(status)
        if self._state != "stopped" and not self._process.is_alive():
            self._set_state("stopped")
            self.error.emit("The training process ended unexpectedly "
                            f"(exit code {self._process.exitcode}).", "")

    def _check_heartbeat(self) -> None:
        beat, since = self._beat_seen
        now = time.monotonic()
        if self._heartbeat.value != beat:
            self._beat_seen = (self._heartbeat.value, now)
            responding = True
        else:
            limit = FIRST_BEAT_S if beat <= 0 else HUNG_AFTER_S
            responding = now - since < limit or not self._process.is_alive()
        self._set_responding(responding)

    def _set_responding(self, responding: bool) -> None:
        if responding != self._responding:
            self._responding = responding
            self.responding_changed.emit(responding)

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state)

    def close(self) -> None:
        """Stop the process: ask, wait 0.5 s, then terminate, then kill. Returns in < 1 s."""
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        if self._process.is_alive() and self._responding:
            try:
                # Past the outbox: at most AHEAD commands are ahead of it in the pipe.
                self._commands.send(m.Quit())
            except (OSError, ValueError):
                pass
            self._process.join(0.5)
        self._end_process()
        self._release()
        self._set_state("stopped")

    def _end_process(self) -> None:
        """Terminate the process, then kill it (a stopped process only dies of SIGKILL)."""
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(0.2)
        if self._process.is_alive():
            self._process.kill()
            # A stopped process dies of SIGKILL alone, but not at once on a loaded machine.
            self._process.join(0.1 if self._responding else 0.5)

    def _release(self) -> None:
        """Close this side of the pipe and queue of a process that has ended."""
        self._outbox.clear()
        self._commands.close()
        # The window only reads the queue, so it has no feeder thread to wait for.
        self._results.close()
        self._results.cancel_join_thread()
