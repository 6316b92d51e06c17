"""Saved runs from Python: :func:`load_run` gives a :class:`Run`; :func:`save_run` writes a
:class:`~gradviz.engine.training.session.Session`, a :class:`~gradviz.api.watch.Watch`, a
:class:`Run` or a :class:`~gradviz.engine.runs.history.History` (with its ``config``) as the run
folder that ``gradviz run`` writes and the app opens (:mod:`gradviz.engine.runs.runfile`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from gradviz.config import RunConfig
from gradviz.engine.runs import runfile
from gradviz.engine.runs.history import History


@dataclass
class Run:
    """A run as a run folder holds it: its settings, its history and its summary."""
    config: RunConfig
    history: History
    summary: dict = field(default_factory=dict)


def load_run(path: str | os.PathLike) -> Run:
    """The run in the folder ``path`` (or its run.json); a
    :class:`~gradviz.engine.runs.runformat.RunFileError` naming the problem otherwise."""
    config, history, summary = runfile.load_run(path)
    return Run(config, history, summary)


def as_run(obj, config: RunConfig | None = None) -> Run:
    """``obj`` (a Session, Watch, Run, or a History with ``config``) as a :class:`Run`.

    A Session and a Watch are both read through what they share, ``config``, ``history``
    and ``summary()``, so this module needs neither (the watch saves through it)."""
    if isinstance(obj, Run):
        return obj
    if isinstance(obj, History):
        if config is None:
            raise ValueError("a History alone does not say which model made it: pass "
                             "config=RunConfig(...), or the Session or Watch it came from")
        return Run(config, obj)
    if isinstance(getattr(obj, "config", None), RunConfig) and hasattr(obj, "history") \
            and callable(getattr(obj, "summary", None)):
        if obj.history is None:
            raise ValueError("this session keeps no history (history=False): nothing to save")
        return Run(obj.config, obj.history, obj.summary())
    raise TypeError(f"expected a Session, Watch, Run or History; got {type(obj).__name__}")


def save_run(session_or_history, path: str | os.PathLike, *,
             config: RunConfig | None = None) -> Path:
    """Write ``session_or_history`` (a Session, Watch, Run, or a History with ``config``)
    to the run folder ``path``, atomically; returns the folder."""
    run = as_run(session_or_history, config)
    runfile.save_run(path, run.config, run.history, run.summary)
    return Path(path)


__all__ = ["Run", "load_run", "save_run", "as_run"]
