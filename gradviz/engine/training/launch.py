"""Starting the app's training process (:func:`~gradviz.engine.training.process.child_main`),
with or without its first model.

:class:`TrainingProcess` is one "spawn" process with the pipe the window sends commands
down, the queue it reads reports from and the two shared counters (heartbeat, reports
read). Nothing here imports Qt or PyTorch, so the app can start the process as its very
first step (:func:`prestart`, with no model yet): the process imports PyTorch, loads the
compiled loops and warms up while the window is built, and its first command is the real
model's settings (:class:`~gradviz.ui.worker.TrainingWorker` adopts it). On a loaded
2-core machine the window then came in ~0.55× the time and the first gradient curves in
0.7–0.8× (docs/performance.md, "Start-up").
"""
from __future__ import annotations

import multiprocessing


def _child_main(*args) -> None:
    """The process's entry point, importing its module there: the window's process then
    starts it before importing the messages' modules (numpy among them)."""
    from gradviz.engine.training.process import child_main

    child_main(*args)


class TrainingProcess:
    """A started training process (:func:`~gradviz.engine.training.process.child_main`):
    ``process``, ``commands`` (this side of the command pipe), ``results`` (the report
    queue), ``heartbeat`` and ``window_read`` (see ``child_main``). ``config`` None: the process
    warms up and waits for a :class:`~gradviz.engine.training.messages.Reset`."""

    def __init__(self, run_id: int, config: dict | None):
        ctx = multiprocessing.get_context("spawn")
        reader, self.commands = ctx.Pipe(duplex=False)
        self.results = ctx.Queue()
        self.heartbeat = ctx.Value("q", 0, lock=False)
        self.window_read = ctx.Value("q", 0, lock=False)
        self.process = ctx.Process(
            target=_child_main, name="gradviz-training", daemon=True,
            args=(reader, self.results, run_id, config, self.heartbeat, self.window_read))
        self.process.start()
        # The process has its own copy; with this one closed, a send to a process that
        # died fails at once instead of filling the pipe.
        reader.close()

    def close(self) -> None:
        """Stop a process no window took over (the app failed to open): ask, wait 0.5 s,
        terminate, kill; then close this side of the pipe and queue."""
        from gradviz.engine.training import messages as m

        if self.process.is_alive():
            try:
                self.commands.send(m.Quit())
            except (OSError, ValueError):
                pass
            self.process.join(0.5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(0.2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(0.5)
        self.commands.close()
        self.results.close()
        self.results.cancel_join_thread()


def prestart() -> TrainingProcess:
    """A training process with no model yet, warming up until its first command."""
    return TrainingProcess(0, None)


__all__ = ["TrainingProcess", "prestart"]
