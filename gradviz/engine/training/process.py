"""The app's training process: a command loop around one :class:`Session` at a time.

The window (:class:`gradviz.ui.worker.TrainingWorker`) starts :func:`child_main` in a
"spawn" process with one torch thread, sends it commands and reads its reports, the typed
messages of :mod:`gradviz.engine.training.messages`. Nothing here imports Qt. Measured on a 2-core
machine, a process kept the window at 30 fps and training at full speed; a thread in the
GUI process did neither (the GIL).

A command is read between training steps, so it waits for the step under way (up to
~0.5 s for the largest models). While running, captures are sent every ~30 ms, all light
but the newest, which the window draws in full; only a step that will end a message
computes the per-unit arrays.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import threading
import time
import traceback
from collections import deque

from gradviz.config import RunConfig
from gradviz.engine.training import messages as m

SEND_INTERVAL_S = 0.03   # ~30 messages/s: as often as the window redraws, no more
TEXT_INTERVAL_S = 2.0
PARENT_CHECK_S = 0.5     # how often the process checks that the window still lives
HEARTBEAT_S = 0.25       # how often the process says it is alive, even inside a long step
# Data reports the window may leave unread before training waits for it: the queue between
# them then holds at most this many (~1 s of training at 30 reports/s), however long the
# window stalls (a modal dialog, a slow machine). Before, it grew ~2 MB/s without bound.
MAX_UNREAD = 32
BACKLOG_WAIT_S = 0.02
# The model a process started before its first one trains a step of (see warm_up).
WARM_UP = {"task": "adding", "seq_len": 6, "cell": "lstm", "hidden": 8, "layers": 1,
           "batch_size": 4, "steps": 1}


class PipeCommands:
    """The read end of the command pipe with a queue's ``get``/``get_nowait``."""

    def __init__(self, connection):
        self.connection = connection

    def get(self, block: bool = True, timeout: float | None = None):
        if not self.connection.poll(timeout if block else 0):
            raise queue.Empty
        try:
            return self.connection.recv()
        except EOFError:          # the window closed its end without a Quit: it is gone
            return m.Quit()

    def get_nowait(self):
        return self.get(False)


def serve(commands, results, run_id: int, config: dict | None, parent_alive=lambda: True,
          acknowledge: bool = False, window_read=None) -> None:
    """The command loop; returns on :class:`~gradviz.engine.training.messages.Quit`.
    ``config`` None: no model until the first :class:`~gradviz.engine.training.messages.Reset`
    (the app's process started before its window: :func:`warm_up` first). ``commands``
    and ``results`` need only ``get``/``get_nowait`` and ``put``: tests pass
    ``queue.Queue`` objects and run it in one process. ``acknowledge``: report every
    command read (:class:`~gradviz.engine.training.messages.Heard`), for the window's flow control.
    ``window_read``: a shared integer (``.value``) counting the Data reports the window has
    taken; while :data:`MAX_UNREAD` are waiting, training waits too."""
    loop = _Loop(results, window_read)
    if config is None:
        warm_up()
    else:
        loop.reset(m.Reset(run_id, config))
    last_check = time.monotonic()
    heard = 0
    while True:
        try:
            if loop.running and not loop.backlogged():
                command = commands.get_nowait()
            else:
                command = commands.get(timeout=BACKLOG_WAIT_S if loop.running else PARENT_CHECK_S)
        except queue.Empty:
            if loop.running and not loop.backlogged():
                loop.run_one()
            now = time.monotonic()
            if now - last_check >= PARENT_CHECK_S:
                # A window that was killed sends no Quit; do not train on for nobody.
                last_check = now
                if not parent_alive():
                    return
            continue
        heard += 1
        if acknowledge:
            loop.send(m.Heard, commands=heard)
        if isinstance(command, m.Quit):
            return
        loop.handle(command)


def warm_up() -> None:
    """What a process started before its first model does meanwhile: import what every model
    needs (PyTorch),
    load the compiled loops (building and self-checking them where needed) and train one
    step of a tiny model of its own (:data:`WARM_UP`), so that the first real model trains
    at once. Every model seeds its own generators, so this one changes none of their
    numbers. Whatever fails here fails again when the first model is made, and is reported
    then."""
    try:
        from gradviz.engine import native
        from gradviz.engine.training.session import Session

        session = Session(RunConfig.from_dict(WARM_UP), history=False)
        native.kernels()
        session.step(full=True)
    except Exception:  # noqa: BLE001, S110 - reported when the first model meets it
        pass


class _Loop:
    """The training process's state between commands."""

    def __init__(self, results, window_read=None):
        self.results = results
        self.window_read = window_read
        self.data_sent = 0
        self.session = None
        self.run_id = 0
        self.running = False
        self.pending: list = []          # captures not yet sent
        self.noticed: set[str] = set()   # notices already sent by this process
        self.last_send = time.monotonic()
        self.last_text = 0.0
        self.tree_settings = None        # what the window last asked the tree for
        self.recent: deque = deque()     # (time, steps done) of the last ~second, for steps/s
        self.step_seconds = 0.0          # running mean of a step's duration

    def send(self, kind: type, **fields) -> None:
        self.results.put(kind(run_id=self.run_id, **fields))

    def fail(self, exc: BaseException) -> None:
        # The session may be half-updated: drop it, and wait for a reset.
        self.session = None
        self.running = False
        self.pending.clear()
        # A bad setting or file (ValueError, OSError) is the user's to fix and gets a plain
        # message; anything else is a bug, and its traceback goes along for the report.
        user_error = isinstance(exc, (ValueError, OSError))
        self.send(m.Error, message=str(exc) if user_error else f"{type(exc).__name__}: {exc}",
                  traceback="" if user_error else "".join(traceback.format_exception(exc)))
        self.send(m.State, state="error")

    def reset(self, command: m.Reset) -> None:
        from gradviz.engine.training.session import Session

        self.run_id = command.run_id
        self.running = False
        self.pending.clear()
        self.recent.clear()
        self.session = None
        try:
            session = Session(RunConfig.from_dict(command.config), history=False)
            if command.resume is not None:
                from gradviz.engine.runs.resume import restore_run

                restore_run(session, command.resume)
            self.session = session
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the user
            self.fail(exc)
            return
        self.send(m.Ready, language=self.session.is_language)
        if self.session.data_note:
            self.send(m.Note, text=self.session.data_note)
        # Builds the compiled loops now, while the window waits anyway, not on the first step;
        # says once per process when they cannot be had.
        from gradviz.engine import native
        notice = native.fallback_notice(self.session.trainer.device.type)
        if notice and notice not in self.noticed:
            self.noticed.add(notice)
            self.send(m.Notice, text=notice)
        self.send(m.State, state="paused")

    def handle(self, command) -> None:
        if isinstance(command, m.Reset):
            self.reset(command)
            return
        if isinstance(command, m.Checkpoint):
            if self.session is not None and self.pending:
                self.flush()     # the window then has every capture up to the state's step
            self.send(m.Checkpointed, state=None if self.session is None else self.session.state(),
                      summary={} if self.session is None else self.session.summary())
            return
        if self.session is None:
            return  # after an error only a reset means anything
        try:
            if isinstance(command, m.Start):
                self.running = True
                self.last_text = time.monotonic()
                self.send(m.State, state="running")
            elif isinstance(command, m.Pause):
                self.running = False
                self.flush()
                self.send_tree()    # the tree of the model as it stays
                self.send(m.State, state="paused")
            elif isinstance(command, m.Step):
                if self.running:
                    self.running = False
                    self.send(m.State, state="paused")
                if self.run_one():
                    self.flush()
                    self.maybe_generate(force=True)
            elif isinstance(command, m.Live):
                self.session.set_live(**command.changes)
            elif isinstance(command, m.AskTree):
                self.tree_settings = command.settings
                self.send_tree()
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception as exc:  # noqa: BLE001
            self.fail(exc)

    def run_one(self) -> bool:
        """One training step; False if it failed (and was reported)."""
        try:
            started = time.monotonic()
            due = started + self.step_seconds - self.last_send >= SEND_INTERVAL_S
            # The step that may pause a diverged run is drawn, so it comes in full.
            report = self.session.step(full=due or not self.running
                                       or self.session.trips_if_next_fails())
            now = time.monotonic()
            self.step_seconds += 0.2 * ((now - started) - self.step_seconds)
            self.recent.append((now, self.session.steps_done))
            while now - self.recent[0][0] > 1.0 and len(self.recent) > 2:
                self.recent.popleft()
            if report.capture is not None:
                self.pending.append(report.capture)
            if report.divergence is not None:
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
        """Report the divergence found on the last step, and stop running: without a change
        of settings every later step would fail too."""
        from gradviz.engine.training.divergence import advice

        was_running = self.running
        self.running = False
        self.flush()
        found = self.session.trainer.divergence
        self.send(m.Diverged, message=found.message(), advice=advice(self.session.config),
                  step=found.step)
        if was_running:
            self.send(m.State, state="paused")

    def backlogged(self) -> bool:
        """Whether the window has left MAX_UNREAD Data reports unread."""
        return (self.window_read is not None
                and self.data_sent - self.window_read.value >= MAX_UNREAD)

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
        self.send(m.Data, captures=captures, step=self.session.steps_done,
                  steps_per_s=self.steps_per_s(), loss=self.session.last_loss)
        self.data_sent += 1

    def maybe_generate(self, force: bool = False) -> None:
        if not self.session.is_language:
            return
        now = time.monotonic()
        if force or now - self.last_text >= TEXT_INTERVAL_S:
            self.last_text = now
            text = self.session.generate()
            if text is not None:
                self.send(m.Text, text=text, step=self.session.steps_done)
                self.send_tree()

    def send_tree(self) -> None:
        """The prediction tree for the settings the window asked, if it asked and the
        model is a language model."""
        if self.tree_settings is not None and self.session.is_language:
            from gradviz.engine.analysis.treereport import tree_snapshot
            self.send(m.Tree, tree=tree_snapshot(self.session.trainer, self.tree_settings))


def _beat(heartbeat) -> None:
    while True:
        heartbeat.value += 1
        time.sleep(HEARTBEAT_S)


def child_main(commands, results, run_id: int, config: dict | None, heartbeat,
               window_read) -> None:
    """Entry point of the training process (:mod:`gradviz.engine.training.launch` starts
    it; ``config`` None: with no model until the first Reset): ``commands`` is the read end of a pipe,
    ``results`` a multiprocessing queue, ``heartbeat`` and ``window_read`` shared
    integers: the first counts up while this process lives and runs (a thread of its own
    keeps it going inside a long step; a stopped or hung process lets it stand still),
    the second is the window's count of Data reports read (see :func:`serve`)."""
    threading.Thread(target=_beat, args=(heartbeat,), name="heartbeat", daemon=True).start()
    # Both must come before torch starts its worker threads (DESIGN.md: denormals).
    from gradviz.engine.training.train import prepare_training_process, set_training_threads
    prepare_training_process()
    set_training_threads(1)

    parent = multiprocessing.parent_process()
    try:
        serve(PipeCommands(commands), results, run_id, config,
              parent_alive=lambda: parent is None or parent.is_alive(), acknowledge=True,
              window_read=window_read)
    finally:
        # Do not wait for the window to drain the pipe before exiting.
        results.cancel_join_thread()
    # Nothing here needs tearing down, and the interpreter's teardown with torch loaded
    # took 1.3-1.8 s on a 2-core machine: the window's close() outwaited it and had to
    # terminate the process every time.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


__all__ = ["serve", "warm_up", "child_main", "PipeCommands", "WARM_UP", "SEND_INTERVAL_S", "TEXT_INTERVAL_S",
           "HEARTBEAT_S", "MAX_UNREAD"]
