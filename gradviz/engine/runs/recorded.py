"""Runs recorded from Python: what a run file says of a run that gradviz did not train.

A run recorded by :func:`gradviz.watch` (with or without a :func:`gradviz.trace`) is the
user's own model trained by the user's own loop. Its run.json (schema 3) holds no
``config`` (null: there is no gradviz task, clipping, initialisation or seed to name) and
a ``recorded`` object instead::

    {"source": "python", "api": "gradviz.watch", "model": "Classifier",
     "description": "Classifier(\\n  (lstm): LSTM(3, 32, num_layers=2) ...)",
     "parameters": 9345, "sizes": {"cell": "lstm", "hidden_size": 32, ...},
     "optimizer": "Adam", "lr": 0.001,
     "clipping": {"clipped_steps": 3, "captured_steps": 5, "largest_after_clipping": 1.0,
                  "read": "optimizer step pre-hook"}}

Files written before schema 3 by a watch (a ``config`` of the nearest app settings, the
watch in ``summary.source``) are read as recorded from Python too (:func:`recorded_of`),
their invented config dropped. :func:`describe` is the one line the app and the command
line show for such a run.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradviz.engine.runs.runformat import RunFileError

PYTHON = "python"
# The ``summary`` keys that a watch wrote before schema 3, taken into ``recorded``.
_OLD_KEYS = ("model", "model_repr", "parameters", "parameter_tensors", "dtype", "device",
             "optimizer", "lr", "marks", "gate_marks", "module")


def is_old_watch(summary: dict) -> bool:
    """Whether a run.json of schema 1 or 2 with this ``summary`` was written by a watch."""
    return str(summary.get("source", "")).startswith("gradviz.watch")


def recorded_of(path, doc: dict) -> dict | None:
    """The ``recorded`` object of a run.json (checked), or for a file of schema 1 or 2
    written by a watch, the same made from its summary; None for a run gradviz trained.
    RunFileError if ``recorded`` is present but not what gradviz writes."""
    version = doc.get("schema_version")
    if version in (1, 2):
        if "recorded" in doc:
            raise RunFileError(f"{path}: \"recorded\" is a key of schema 3; this file says "
                               f"schema {version}")
        summary = doc.get("summary") or {}
        if not is_old_watch(summary):
            return None
        old = {k: summary[k] for k in _OLD_KEYS if k in summary}
        if "model_repr" in old:
            old["description"] = old.pop("model_repr")
        return {"source": PYTHON, "api": str(summary["source"]), **old,
                "clipping": {"clipped_steps": summary.get("clipped_steps")}}
    recorded = doc.get("recorded")
    if recorded is None:
        if doc.get("config") is None:
            raise RunFileError(f"{path}: \"config\" is null but there is no \"recorded\" "
                               "object saying where the run came from")
        return None
    if not isinstance(recorded, dict) or recorded.get("source") != PYTHON:
        raise RunFileError(f"{path}: \"recorded\" is not an object with \"source\": "
                           f"\"{PYTHON}\"")
    if doc.get("config") is not None:
        raise RunFileError(f"{path}: a run recorded from Python has \"config\": null (it "
                           "was not trained with gradviz settings)")
    return recorded


def describe(recorded: dict) -> str:
    """"Recorded from Python (gradviz.watch): LSTM(3, 32), 9,345 parameters, Adam lr
    0.001, clipped by the user at 3 of 5 captured steps": one line, what was recorded."""
    text = f"Recorded from Python ({recorded.get('api', 'gradviz.watch')})"
    model = recorded.get("module") or recorded.get("model")
    if isinstance(recorded.get("sizes"), dict) and recorded["sizes"].get("module"):
        model = recorded["sizes"]["module"]
    if model:
        text += f": {_one_line(str(model))}"
    if isinstance(recorded.get("parameters"), int):
        text += f", {recorded['parameters']:,} parameters"
    if recorded.get("marks"):
        text += f", marks {', '.join(map(str, recorded['marks']))}"
    if recorded.get("optimizer"):
        lr = recorded.get("lr")
        text += f", {recorded['optimizer']}" + (f" lr {lr:g}" if isinstance(lr, float) else "")
    clipping = recorded.get("clipping") if isinstance(recorded.get("clipping"), dict) else {}
    clipped, captured = clipping.get("clipped_steps"), clipping.get("captured_steps")
    if isinstance(clipped, int) and clipped:
        text += f", clipped by the user at {clipped}" + \
            (f" of {captured} captured steps" if isinstance(captured, int) else " captured steps")
    elif clipped == 0 and clipping.get("read"):
        text += ", not clipped"
    return text


def _one_line(text: str, most: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= most else text[:most - 1] + "…"


def not_trainable(path, recorded: dict) -> RunFileError:
    """The error for a command that would train, continue or copy the settings of a run
    recorded from Python."""
    return RunFileError(f"{path}: recorded from Python ({recorded.get('api', 'gradviz.watch')}), "
                        "not trained by gradviz: it has no gradviz settings to train or "
                        "continue; train a new gradviz model instead, with settings of your "
                        "own (--task, --cell, ...) or --experiment NAME")


def measured_clipping(history, clipped_steps: int, read: str | None) -> dict:
    """The user's clipping as the watch measured it: at how many captured steps the
    gradient norm fell when the optimiser's step began (``read``: how it was read, None
    when it could not be), and the largest norm left after clipping at those steps (the
    threshold, for clipping by norm)."""
    out: dict[str, Any] = {"clipped_steps": int(clipped_steps),
                           "captured_steps": int(history.count.sum()) if len(history) else 0,
                           "read": read}
    if len(history) and np.any(history.clipped):
        after = np.asarray(history.grad_norm_clipped)[np.asarray(history.clipped, bool)]
        after = after[np.isfinite(after)]
        if after.size:
            out["largest_after_clipping"] = float(after.max())
    return out


__all__ = ["PYTHON", "recorded_of", "describe", "not_trainable", "measured_clipping",
           "is_old_watch"]
