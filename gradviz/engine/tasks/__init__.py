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
"""
from __future__ import annotations

from gradviz.config import RunConfig
from gradviz.registry import task_spec

from .base import PROBE_SEED, Batch, Task, TaskInputError
from .language import ReberTask, TextTask, load_text
from .generate import GenerateTask
from .synthetic import Adding1997Task, AddingTask, CopyTask, RecallTask, SeriesTask

# The implementation of each registered task.
TASK_CLASSES: dict[str, type[Task]] = {cls.name: cls for cls in (
    AddingTask, Adding1997Task, CopyTask, RecallTask, SeriesTask, GenerateTask, TextTask, ReberTask)}


def make_task(config: RunConfig, text: str | None = None) -> Task:
    """The task ``config.task`` for ``config.seq_len`` steps.

    ``text``: the already-loaded text of the text task; when None, it is read
    (:func:`gradviz.engine.tasks.texts.read_text`).
    """
    try:
        spec = task_spec(config.task)
    except ValueError as error:
        raise TaskInputError(f"{error}.", field="task") from None
    return TASK_CLASSES[spec.name].from_config(config, text)


__all__ = ["Batch", "Task", "TaskInputError", "AddingTask", "Adding1997Task", "CopyTask",
           "RecallTask", "SeriesTask", "GenerateTask", "TextTask", "ReberTask", "TASK_CLASSES", "load_text",
           "make_task", "PROBE_SEED"]
