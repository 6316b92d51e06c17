"""Training in a separate process, and the Qt object that talks to it.

The GUI never touches a tensor: a child process (multiprocessing "spawn", one torch
thread) owns the :class:`~gradviz.engine.train.Trainer` and sends plain snapshots back.
Measured on a 2-core machine, a process kept the window at 30 fps and training at full
speed; a thread in the GUI process did neither (the GIL).

Commands, GUI -> child, on the command queue (tuples):
    ("start",) ("pause",) ("step",)         run freely / stop / run one batch and stop
    ("reset", run_id, config_dict)          new Trainer; later messages carry ``run_id``
    ("live", changes_dict)                  Trainer.set_live(**changes), used by the next step
    ("quit",)

Messages, child -> GUI, on the result queue (dicts with "kind" and "run_id"):
    ready    {"language": bool}             a new Trainer exists (after reset)
    note     {"text": str}                  a remark about the task's data (a text file read
                                            in part), right after ready
    data     {"captures": [...], "step", "steps_per_s", "loss"}
             captures since the last message, oldest first; all light but the last, which
             is full. Sent every ~30 ms while running, so the pipe is not flooded, and at
             once after a single step or a pause (whose last capture may be light).
    text     {"text": str}                  generated text of a language task, every ~2 s
    state    {"state": "paused" | "running" | "error"}
    diverged {"message": str, "advice": str, "step": int}   the run was found diverged
             (gradviz.engine.divergence: 10 of the last 20 steps not finite) on ``step``:
             the data so far is sent first, and a running loop pauses itself (a "state"
             paused follows); a single step that trips the rule sends it too
    error    {"message": str, "traceback": str}   the child then waits for a reset;
             the traceback is "" for a bad setting or file (ValueError, OSError)

A command is read between training steps, so it waits for the step under way (up to
~0.5 s for the largest models).
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import time
import traceback
from collections import deque
from typing import Any

from PyQt6 import QtCore

from gradviz.config import RunConfig

SEND_INTERVAL_S = 0.03   # ~30 messages/s: as often as the window redraws, no more
TEXT_INTERVAL_S = 2.0
PARENT_CHECK_S = 0.5     # how often the child checks that the GUI still lives


def serve(commands, results, run_id: int, config: dict, parent_alive=lambda: True) -> None:
    """The child's command loop; returns on ``quit``. Plain function: tests call it with
    ``queue.Queue`` objects in one process."""
    loop = _Loop(results)
    loop.reset(run_id, config)
    last_check = time.monotonic()
    while True:
        try:
            if loop.running:
                command = commands.get_nowait()
            else:
                command = commands.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if loop.running:
                loop.run_one()
            now = time.monotonic()
            if now - last_check >= PARENT_CHECK_S:
                # A GUI that was killed sends no quit; do not train on for nobody.
                last_check = now
                if not parent_alive():
                    return
            continue
        if command[0] == "quit":
            return
        loop.handle(command)


class _Loop:
    """State of the training process between commands."""

    def __init__(self, results):
        self.results = results
        self.trainer = None
        self.run_id = 0
        self.running = False
        self.pending: list = []          # captures not yet sent
        self.noticed: set[str] = set()   # notices already sent by this process
        self.last_send = time.monotonic()
        self.last_text = 0.0
        self.recent: deque = deque()     # (time, step_index) of the last ~second, for steps/s
        self.step_seconds = 0.0          # running mean of a step's duration
        self.last_loss = float("nan")

    def send(self, kind: str, **payload: Any) -> None:
        self.results.put({"kind": kind, "run_id": self.run_id, **payload})

    def fail(self, exc: BaseException) -> None:
        # The trainer may be half-updated: drop it, and wait for a reset.
        self.trainer = None
        self.running = False
        self.pending.clear()
        # A bad setting or file (ValueError, OSError) is the user's to fix and gets a plain
        # message; anything else is a bug, and its traceback goes along for the report.
        user_error = isinstance(exc, (ValueError, OSError))
        self.send("error", message=str(exc) if user_error else f"{type(exc).__name__}: {exc}",
                  traceback="" if user_error else "".join(traceback.format_exception(exc)))
        self.send("state", state="error")

    def reset(self, run_id: int, config: dict) -> None:
        from gradviz.engine.train import Trainer

        self.run_id = run_id
        self.running = False
        self.pending.clear()
        self.recent.clear()
        self.last_loss = float("nan")
        self.trainer = None
        try:
            self.trainer = Trainer(RunConfig.from_dict(config))
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the user
            self.fail(exc)
            return
        self.send("ready", language=bool(getattr(self.trainer.task, "is_language", False)))
        if getattr(self.trainer.task, "note", None):
            self.send("note", text=self.trainer.task.note)
        # Builds the compiled loops now, while the window waits anyway, not on the first step;
        # says once per process when they cannot be had.
        from gradviz.engine import native
        notice = native.fallback_notice(self.trainer.device.type)
        if notice and notice not in self.noticed:
            self.noticed.add(notice)
            self.send("notice", text=notice)
        self.send("state", state="paused")

    def handle(self, command: tuple) -> None:
        name = command[0]
        if name == "reset":
            self.reset(command[1], command[2])
            return
        if self.trainer is None:
            return  # after an error only a reset means anything
        try:
            if name == "start":
                self.running = True
                self.last_text = time.monotonic()
                self.send("state", state="running")
            elif name == "pause":
                self.running = False
                self.flush()
                self.send("state", state="paused")
            elif name == "step":
                if self.running:
                    self.running = False
                    self.send("state", state="paused")
                if self.run_one():
                    self.flush()
                    self.maybe_generate(force=True)
            elif name == "live":
                self.trainer.set_live(**command[1])
            else:
                raise ValueError(f"unknown command {name!r}")
        except Exception as exc:  # noqa: BLE001
            self.fail(exc)

    def run_one(self) -> bool:
        """One training step; False if it failed (and was reported).

        Only the newest capture of a message is drawn in full, so only a step that will
        end a message computes the per-unit arrays (``full``); the others come light.
        """
        try:
            started = time.monotonic()
            due = started + self.step_seconds - self.last_send >= SEND_INTERVAL_S
            # The step that may pause a diverged run is drawn, so it comes in full.
            capture = self.trainer.step(full=due or not self.running
                                        or self.trainer.watch.trips_if_next_fails())
            now = time.monotonic()
            self.step_seconds += 0.2 * ((now - started) - self.step_seconds)
            self.recent.append((now, self.trainer.step_index))
            while now - self.recent[0][0] > 1.0 and len(self.recent) > 2:
                self.recent.popleft()
            if capture is not None:
                self.pending.append(capture)
                self.last_loss = capture.loss
            if self.trainer.divergence is not None:
                self.diverged()
                return True
            if self.running:
                # Wait for a full capture to end the message: the window draws it.
                newest_full = not self.pending or not self.pending[-1].is_light
                if now - self.last_send >= SEND_INTERVAL_S and newest_full:
                    self.flush()
                self.maybe_generate()
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the user
            self.fail(exc)
            return False
        return True

    def diverged(self) -> None:
        """Report the divergence the trainer found on its last step, and stop running:
        without a change of settings every later step would fail too."""
        from gradviz.engine.divergence import advice

        was_running = self.running
        self.running = False
        self.flush()
        self.send("diverged", message=self.trainer.divergence.message(),
                  advice=advice(self.trainer.config), step=self.trainer.divergence.step)
        if was_running:
            self.send("state", state="paused")

    def steps_per_s(self) -> float:
        if len(self.recent) < 2:
            return 0.0
        (t0, s0), (t1, s1) = self.recent[0], self.recent[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    def flush(self) -> None:
        """Send pending captures (all light but the newest) and the status."""
        self.last_send = time.monotonic()
        captures = [c.light() for c in self.pending[:-1]] + self.pending[-1:]
        self.pending = []
        self.send("data", captures=captures, step=self.trainer.step_index,
                  steps_per_s=self.steps_per_s(), loss=self.last_loss)

    def maybe_generate(self, force: bool = False) -> None:
        if not getattr(self.trainer.task, "is_language", False):
            return
        now = time.monotonic()
        if force or now - self.last_text >= TEXT_INTERVAL_S:
            self.last_text = now
            text = self.trainer.generate()
            if text is not None:
                self.send("text", text=text)


def _child_main(commands, results, run_id: int, config: dict) -> None:
    """Entry point of the training process."""
    # Both must come before torch starts its worker threads (DESIGN.md: denormals).
    from gradviz.engine.train import prepare_training_process
    prepare_training_process()
    import torch
    torch.set_num_threads(1)

    parent = multiprocessing.parent_process()
    try:
        serve(commands, results, run_id, config,
              parent_alive=lambda: parent is None or parent.is_alive())
    finally:
        # Do not wait for the GUI to drain the pipe before exiting.
        results.cancel_join_thread()
    # Nothing here needs tearing down, and the interpreter's teardown with torch loaded
    # took 1.3-1.8 s on a 2-core machine: the window's close() outwaited it and had to
    # terminate the process every time.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class TrainingWorker(QtCore.QObject):
    """GUI-side handle of the training process; all methods are called on the GUI thread.

    Signals carry plain data: ``captures_ready(list[Capture])`` (oldest first, the last one
    full), ``status(dict)`` with step, steps_per_s and loss, ``text_ready(str)``,
    ``error(str, str)`` (message, traceback), ``state_changed(str)`` (starting, paused,
    running, error, stopped), ``ready(bool)`` (a new model exists; True for language
    tasks), ``note(str)`` (a remark about the new model's data, after ``ready``) and
    ``diverged(str, str)`` (what happened, what to try: the run paused itself).
    """

    captures_ready = QtCore.pyqtSignal(list)
    status = QtCore.pyqtSignal(dict)
    text_ready = QtCore.pyqtSignal(str)
    error = QtCore.pyqtSignal(str, str)
    state_changed = QtCore.pyqtSignal(str)
    ready = QtCore.pyqtSignal(bool)
    note = QtCore.pyqtSignal(str)
    notice = QtCore.pyqtSignal(str)       # for the status bar (e.g. the slower code path)
    diverged = QtCore.pyqtSignal(str, str)

    POLL_MS = 15

    def __init__(self, config: RunConfig, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self._ctx = multiprocessing.get_context("spawn")
        self._run_id = 0
        self._state = "starting"
        self._closed = False
        self._spawn(config)
        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self.poll)
        self._timer.start(self.POLL_MS)

    def _spawn(self, config: RunConfig) -> None:
        """A new training process (fresh queues: a killed child may leave a queue broken)."""
        self._run_id += 1
        self._commands = self._ctx.Queue()
        # Read when the thread that feeds the pipe starts; see _release_queues.
        self._commands._ignore_epipe = True
        self._results = self._ctx.Queue()
        self._process = self._ctx.Process(
            target=_child_main, name="gradviz-training", daemon=True,
            args=(self._commands, self._results, self._run_id, config.to_dict()))
        self._process.start()
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

    def is_alive(self) -> bool:
        return self._process.is_alive()

    # -- commands ---------------------------------------------------------------------
    def start(self) -> None:
        self._send("start")

    def pause(self) -> None:
        self._send("pause")

    def step(self) -> None:
        self._send("step")

    def set_live(self, changes: dict) -> None:
        self._send("live", dict(changes))

    def reset(self, config: RunConfig) -> None:
        """A new model from ``config``; results of the previous one still in flight are
        dropped. Starts a new process if the last one died."""
        if self._closed:
            return
        if not self._process.is_alive():
            self._release_queues()
            self._spawn(config)
            return
        self._run_id += 1
        self._send("reset", self._run_id, config.to_dict())
        self._set_state("starting")

    def _send(self, *command) -> None:
        if self._process.is_alive():
            self._commands.put(command)

    # -- results ----------------------------------------------------------------------
    def poll(self) -> None:
        """Drain the result queue without blocking, and emit what arrived."""
        captures: list = []
        status = None
        while True:
            try:
                message = self._results.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            if message["run_id"] != self._run_id:
                continue  # from a model that has since been reset
            kind = message["kind"]
            if kind == "data":
                captures.extend(message["captures"])
                status = {k: message[k] for k in ("step", "steps_per_s", "loss")}
            elif kind == "state":
                self._set_state(message["state"])
            elif kind == "ready":
                self.ready.emit(message["language"])
            elif kind == "note":
                self.note.emit(message["text"])
            elif kind == "notice":
                self.notice.emit(message["text"])
            elif kind == "text":
                self.text_ready.emit(message["text"])
            elif kind == "error":
                self.error.emit(message["message"], message["traceback"])
            elif kind == "diverged":
                self.diverged.emit(message["message"], message["advice"])
        if captures:
            self.captures_ready.emit(captures)
        if status is not None:
            self.status.emit(status)
        if self._state != "stopped" and not self._process.is_alive():
            self._set_state("stopped")
            self.error.emit("The training process ended unexpectedly "
                            f"(exit code {self._process.exitcode}).", "")

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
        if self._process.is_alive():
            try:
                self._commands.put(("quit",))
            except (OSError, ValueError):
                pass
            self._process.join(0.5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(0.2)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(0.1)
        self._release_queues()
        self._set_state("stopped")

    def _release_queues(self) -> None:
        # Commands the ended child never read (a burst of them behind a long step) can
        # fill the pipe and hold the feeder thread in a write for ever: a thread leaked
        # per process. With this, the last read end, closed, the write fails (EPIPE) and
        # the thread, told to take that quietly, ends. (Both are CPython's private API.)
        # Before close(): after it, the feeder thread closes the reader itself.
        self._commands._reader.close()
        # Nobody reads them any more: do not let their feeder threads hold up the exit.
        for q in (self._commands, self._results):
            q.cancel_join_thread()
            q.close()
