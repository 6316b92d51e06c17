"""Saved runs from Python: :func:`load_run` gives a
:class:`~gradviz.engine.runs.runfile.SavedRun` (what is on disk); :func:`save_run` writes a
:class:`~gradviz.engine.training.session.Session`, a :class:`~gradviz.api.watch.Watch`, a
SavedRun or a :class:`~gradviz.engine.runs.history.History` (with its ``config``) as the
run folder that ``gradviz run`` writes and the app opens (:mod:`gradviz.engine.runs.runfile`).
"""
from __future__ import annotations

import os
from pathlib import Path

from gradviz.config import RunConfig
from gradviz.engine.runs import runfile
from gradviz.engine.runs.history import History
from gradviz.engine.runs.runfile import SavedRun


def load_run(path: str | os.PathLike) -> SavedRun:
    """The run in the folder ``path`` (or its run.json): ``.config``, ``.history``,
    ``.summary``, ``.keyframes``; a :class:`~gradviz.engine.runs.runformat.RunFileError`
    naming the problem otherwise."""
    return runfile.open_run(path)


def run_parts(obj, config: RunConfig | None = None
              ) -> tuple[RunConfig | None, History, dict, dict | None]:
    """The configuration, history, summary and ``recorded`` of ``obj`` (a Session, Watch,
    SavedRun, or a History with ``config``). A run recorded from Python (a Watch, or a
    SavedRun of one) has no configuration and says what was recorded
    (:mod:`gradviz.engine.runs.recorded`); any other has no ``recorded``.

    A Session, a Watch and a SavedRun are read through what they share, ``config`` and
    ``history`` (and a summary), so this module needs none of their modules (the watch saves
    through it)."""
    if isinstance(obj, History):
        if config is None:
            raise ValueError("a History alone does not say which model made it: pass "
                             "config=RunConfig(...), or the Session or Watch it came from")
        return config, obj, {}, None
    recorded = getattr(obj, "recorded", None)
    if callable(recorded):                              # a watch
        return None, obj.history, dict(obj.summary()), recorded()
    if isinstance(recorded, dict):                      # a SavedRun recorded from Python
        return None, obj.history, dict(obj.summary or {}), recorded
    if isinstance(getattr(obj, "config", None), RunConfig) and hasattr(obj, "history"):
        if obj.history is None:
            raise ValueError("this session keeps no history (history=False): nothing to save")
        summary = obj.summary() if callable(getattr(obj, "summary", None)) else obj.summary
        return obj.config, obj.history, dict(summary or {}), None
    raise TypeError(f"expected a Session, Watch, SavedRun or History; got {type(obj).__name__}")


def save_run(session_or_history, path: str | os.PathLike, *,
             config: RunConfig | None = None) -> Path:
    """Write ``session_or_history`` (a Session, Watch, SavedRun, or a History with
    ``config``) to the run folder ``path``, atomically; returns the folder."""
    config, history, summary, recorded = run_parts(session_or_history, config)
    runfile.save_run(path, config, history, summary, recorded=recorded)
    return Path(path)


__all__ = ["SavedRun", "load_run", "save_run", "run_parts"]
