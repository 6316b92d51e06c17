"""A training backend inside the window's process, for tests and tools that need captures
to arrive but not a process of their own.

:class:`InProcessWorker` is a :class:`~gradviz.ui.worker.TrainingWorker` whose "process" is
a thread running the same command loop (:func:`gradviz.engine.training.process.serve`) with
the same messages (:mod:`gradviz.engine.training.messages`) over ``queue.Queue`` objects:
what the window sees (signals, states, run ids, flow control, checkpoints, errors) is what
the process gives it, without the seconds a new process takes to start and import torch.
It shares the GIL with the window, which is why the app itself trains in a process
(DESIGN.md, rule 2); there is no heartbeat to lose, and a thread cannot be killed, so
:meth:`close` asks it to quit and waits for the step under way.
"""
from __future__ import annotations

import queue
import threading

from PyQt6 import QtCore

from gradviz.config import RunConfig
from gradviz.engine.training import messages as m
from gradviz.engine.training.process import serve
from gradviz.ui.worker import TrainingWorker

# How long close() waits for the thread to finish the step under way.
JOIN_S = 5.0


class _Counter:
    """A shared integer, as ``multiprocessing.Value`` gives the process (``.value``)."""

    def __init__(self) -> None:
        self.value = 0


class _Commands:
    """The sending end, with a pipe connection's ``send`` and ``close``."""

    def __init__(self, box: queue.Queue):
        self.box = box
        self.closed = False

    def send(self, command) -> None:
        if self.closed:
            raise ValueError("the command queue is closed")
        self.box.put(command)

    def close(self) -> None:
        self.closed = True


class _Results(queue.Queue):
    """The reports, with the ``close``/``cancel_join_thread`` of a multiprocessing queue."""

    def close(self) -> None:
        pass

    def cancel_join_thread(self) -> None:
        pass


class _Thread:
    """The training thread, with the parts of ``multiprocessing.Process`` the worker uses."""

    pid = None

    def __init__(self, target, args, kwargs):
        self._failed = False

        def run() -> None:
            try:
                import torch
                torch.set_flush_denormal(True)   # per thread, as the process does it
                target(*args, **kwargs)
            except BaseException:
                self._failed = True
                raise

        self._thread = threading.Thread(target=run, name="gradviz-training", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def exitcode(self) -> int | None:
        if self._thread.is_alive() or self._thread.ident is None:
            return None
        return 1 if self._failed else 0

    def terminate(self) -> None:
        """A thread cannot be stopped from outside: it has been asked to quit."""

    kill = terminate


class InProcessWorker(TrainingWorker):
    """A :class:`TrainingWorker` that trains on a thread of this process."""

    def __init__(self, config: RunConfig, parent: QtCore.QObject | None = None):
        super().__init__(config, parent)

    def _spawn(self, config: RunConfig) -> None:
        self._run_id += 1
        self._outbox.clear()
        self._sent = self._heard = 0
        box: queue.Queue = queue.Queue()
        self._commands = _Commands(box)
        self._results = _Results()
        self._heartbeat = _Counter()
        self._window_read = _Counter()
        self._beat_seen = (-1, 0.0)
        self._set_responding(True)
        self._process = _Thread(serve, (box, self._results, self._run_id, config.to_dict()),
                                {"acknowledge": True, "window_read": self._window_read})
        self._process.start()
        self._set_state("starting")

    def _check_heartbeat(self) -> None:
        """No heartbeat: a thread that is alive is taken as responding."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        if self._process.is_alive():
            try:
                self._commands.send(m.Quit())
            except ValueError:
                pass
            self._process.join(JOIN_S)
        self._release()
        self._set_state("stopped")


__all__ = ["InProcessWorker"]
