"""``gradviz run`` under signals and beside other writers.

SIGTERM (what ``kill``, a job scheduler or a closing terminal session sends) stops
``gradviz run`` as Ctrl+C does, and what was done is saved: before training it raises
:class:`Terminated`, a KeyboardInterrupt (:func:`terminate_as_interrupt`); during training
it stops the run between two steps, and during the save it waits for the save to finish
(:func:`deferred`). The folder
written is locked for the whole command (:func:`lock_out`), so that a second ``gradviz run``
on the same ``--out`` is refused in one line instead of mixing its files with this one's.
"""
from __future__ import annotations

import signal
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from gradviz.cliprep import UsageError

EXIT_TERMINATED = 128 + signal.SIGTERM   # the shell's convention for a command ended by it


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as for Ctrl+C."""


class _Signals:
    terminated = False


received = _Signals()


@contextmanager
def _on_sigterm(handler) -> Iterator[None]:
    """``handler`` answers SIGTERM while inside, then the previous one again. Off the main
    thread signals are not ours to handle, and nothing changes."""
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (and sets ``received.terminated``)."""
    def handler(_signum, _frame) -> None:
        received.terminated = True
        raise Terminated()

    received.terminated = False
    with _on_sigterm(handler):
        yield


@contextmanager
def deferred() -> Iterator[None]:
    """While inside, SIGTERM only sets ``received.terminated``: training stops between two
    steps (a step is never cut in half), a save finishes first."""
    def handler(_signum, _frame) -> None:
        received.terminated = True

    with _on_sigterm(handler):
        yield


def lock_out(stack: ExitStack, folder: str | Path, option: str) -> None:
    """Hold ``folder``'s lock until ``stack`` closes; a UsageError naming ``option`` if
    another process is writing it."""
    from gradviz.engine.runs.runsave import RunFolderBusy, folder_lock

    try:
        stack.enter_context(folder_lock(folder))
    except RunFolderBusy as exc:
        raise UsageError(f"{option}: {folder}: {exc.strerror}") from None
    except OSError:
        pass                       # not a folder we can open: the save will say why


__all__ = ["Terminated", "EXIT_TERMINATED", "received", "terminate_as_interrupt", "deferred",
           "lock_out"]
