"""Helpers shared by several test files (fixtures live in conftest.py)."""
from __future__ import annotations

import queue
import threading


def quit_and_drain(commands: queue.Queue, results: queue.Queue, thread: threading.Thread,
                   timeout: float) -> list[dict]:
    """Tell a training loop run in ``thread`` to quit, wait for it, and return the messages
    it left in ``results``."""
    commands.put(("quit",))
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
