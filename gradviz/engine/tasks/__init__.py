"""The training problems, each with a seeded batch generator, its loss and the loss a
model with no memory would reach (its baseline).

* :mod:`~gradviz.engine.tasks.base` — what a task is (:class:`Task`, :class:`Batch`);
  :class:`TaskInputError`, the error that names what the user gave and how to fix it, is
  :mod:`gradviz.engine.tasks.texts`'s, where the texts are read;
* :mod:`~gradviz.engine.tasks.synthetic` — the adding (two versions), copy, recall and
  series problems;
* :mod:`~gradviz.engine.tasks.generate` — the one-to-many task (a pattern from a seed);
* :mod:`~gradviz.engine.tasks.language` — the character models (a text, the Reber
  grammar); :func:`load_text` reads a user's text file.

:func:`make_task` builds the task a :class:`~gradviz.config.RunConfig` names; which tasks
there are, and which of them are language models, is the registry's
(:mod:`gradviz.registry`).

The package imports its task classes (and with them PyTorch) only when one of them is
first asked for: the window reads :mod:`~gradviz.engine.tasks.texts` to check a text file,
and importing PyTorch there took ~1 s of the app's start-up on a 2-core machine.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from gradviz.config import RunConfig
from gradviz.registry import task_spec

if TYPE_CHECKING:
    from .base import Task

# Where each of the package's names is defined; imported on first use (PEP 562).
_HOMES = {"PROBE_SEED": "base", "Batch": "base", "Task": "base", "TaskInputError": "base",
          "ReberTask": "language", "TextTask": "language", "load_text": "language",
          "GenerateTask": "generate", "Adding1997Task": "synthetic", "AddingTask": "synthetic",
          "CopyTask": "synthetic", "RecallTask": "synthetic", "SeriesTask": "synthetic"}
_CLASSES = ("AddingTask", "Adding1997Task", "CopyTask", "RecallTask", "SeriesTask",
            "GenerateTask", "TextTask", "ReberTask")


def __getattr__(name: str):
    if name == "TASK_CLASSES":
        # The implementation of each registered task.
        value = {cls.name: cls for cls in (__getattr__(n) for n in _CLASSES)}
    elif name in _HOMES:
        value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def make_task(config: RunConfig, text: str | None = None) -> "Task":
    """The task ``config.task`` for ``config.seq_len`` steps.

    ``text``: the already-loaded text of the text task; when None, it is read
    (:func:`gradviz.engine.tasks.texts.read_text`).
    """
    try:
        spec = task_spec(config.task)
    except ValueError as error:
        raise __getattr__("TaskInputError")(f"{error}.", field="task") from None
    return __getattr__("TASK_CLASSES")[spec.name].from_config(config, text)


__all__ = ["Batch", "Task", "TaskInputError", "AddingTask", "Adding1997Task", "CopyTask",
           "RecallTask", "SeriesTask", "GenerateTask", "TextTask", "ReberTask", "TASK_CLASSES", "load_text",
           "make_task", "PROBE_SEED"]
