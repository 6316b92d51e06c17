"""Helpers shared by several test files (fixtures live in conftest.py)."""
from __future__ import annotations

import queue
import threading

from gradviz.engine.training import messages as msg


def kind(message) -> str:
    """A training-process report's kind as a word: Ready -> "ready"."""
    return type(message).__name__.lower()


def quit_and_drain(commands: queue.Queue, results: queue.Queue, thread: threading.Thread,
                   timeout: float) -> list:
    """Tell a training loop run in ``thread`` to quit, wait for it, and return the messages
    it left in ``results``."""
    commands.put(msg.Quit())
    thread.join(timeout)
    assert not thread.is_alive(), "the training loop did not quit"
    messages = []
    while not results.empty():
        messages.append(results.get())
    return messages


def settle(qtbot, window) -> None:
    """Wait until nothing arrives for a while and the views have drawn the last of it."""
    previous = -1
    while previous != len(window.history):
        previous = len(window.history)
        qtbot.wait(150)
    window.draw_now()


def modules_after_one_step(config: dict, out) -> None:
    """Run in a spawned child: train one step through the training process's command loop,
    then put the names of every loaded module on ``out``."""
    import sys

    from gradviz.engine.training.process import serve

    commands, results = queue.Queue(), queue.Queue()
    commands.put(msg.Step())
    commands.put(msg.Quit())
    serve(commands, results, 1, config)
    kinds = []
    while not results.empty():
        kinds.append(kind(results.get()))
    out.put((kinds, sorted(sys.modules)))
