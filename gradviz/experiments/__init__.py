"""The guided experiments: presets that reproduce a classic result and say what to watch.

Each experiment is one JSON file in this package, named after the experiment::

    {"name": "vanishing-tanh",            # = the file's stem
     "title": "…", "theme": "…",          # the menu shows titles grouped by theme
     "watch": "…",                        # one paragraph: what to watch, why, how long to wait
     "expected": "…",                     # the outcome, in one sentence
     "source": "…",                       # the paper(s) it reproduces
     "config": {…},                       # a RunConfig (RunConfig.from_dict)
     "then": {"label": "…", "config": {…}},   # optional: "now change this", as changes
     "focus": ["gradnorm", "loss"]}       # optional: the one or two views the lesson is
                                          # about (FOCUS_VIEWS), laid out large

The files are read with :mod:`importlib.resources`, so they are found in a wheel as in a
checkout. :func:`list_experiments` and :func:`load_experiment` are the public API; a file
that is wrong raises :class:`ExperimentError` (a ValueError) naming the file and the field.
The check of each experiment's lesson on the captured numbers is in
:mod:`gradviz.experiments.lessons`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gradviz.config import ConfigError, RunConfig

TEXT_FIELDS = ("name", "title", "theme", "watch", "expected", "source")
KNOWN_FIELDS = frozenset(TEXT_FIELDS + ("config", "then", "focus"))
# The views an experiment may name as its focus (the window's view keys; tests check that
# the window has each), and how many it may name.
FOCUS_VIEWS = ("gradflow", "gradtime", "gates", "states", "loss", "gradnorm", "spectrum",
               "decay", "saturation", "cell", "cliff")
MAX_FOCUS = 2


class ExperimentError(ValueError):
    """An experiment file is wrong. ``file`` names it; ``field`` names the offending field
    (``config.lr``, ``then.label``), or is None when the file is not JSON at all."""

    def __init__(self, file: str, field: str | None, message: str):
        where = file if field is None else f"{file}: {field}"
        super().__init__(f"{where}: {message}")
        self.file = file
        self.field = field


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    theme: str
    watch: str
    expected: str
    source: str
    config: RunConfig
    then_label: str | None = None        # "now change this": what the second config does
    then_config: RunConfig | None = None  # ``config`` with the "then" changes applied
    focus: tuple[str, ...] = ()          # the views the lesson is about (FOCUS_VIEWS)


def _text(data: dict, key: str, file: str, prefix: str = "") -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ExperimentError(file, prefix + key, f"must be a non-empty string, got {value!r}")
    return value.strip()


def _config(data: Any, file: str, prefix: str) -> RunConfig:
    try:
        return RunConfig.from_dict(data)
    except ConfigError as error:
        field = prefix if error.field == "config" else f"{prefix}.{error.field}"
        raise ExperimentError(file, field, str(error).split(": ", 1)[1]) from None


def parse_experiment(text: str, name: str, file: str | None = None) -> Experiment:
    """The experiment ``name`` from the JSON ``text``; ``file`` names it in errors
    (default ``name + ".json"``)."""
    file = file or f"{name}.json"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ExperimentError(file, None, f"not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ExperimentError(file, None, f"expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - KNOWN_FIELDS)
    if unknown:
        raise ExperimentError(file, unknown[0],
                              f"unknown field; known: {', '.join(sorted(KNOWN_FIELDS))}")
    texts = {key: _text(data, key, file) for key in TEXT_FIELDS}
    if texts["name"] != name:
        raise ExperimentError(file, "name", f"{texts['name']!r} must be the file's name, {name!r}")
    if "config" not in data:
        raise ExperimentError(file, "config", "missing; an experiment needs a RunConfig")
    config = _config(data["config"], file, "config")
    then_label = then_config = None
    if "then" in data:
        then = data["then"]
        if not isinstance(then, dict) or set(then) != {"label", "config"}:
            raise ExperimentError(file, "then", 'must be {"label": ..., "config": {...changes...}}')
        then_label = _text(then, "label", file, "then.")
        if not isinstance(then["config"], dict) or not then["config"]:
            raise ExperimentError(file, "then.config", "must be a non-empty object of changes")
        then_config = _config({**config.to_dict(), **then["config"]}, file, "then.config")
    return Experiment(config=config, then_label=then_label, then_config=then_config,
                      focus=_focus(data.get("focus", []), file), **texts)


def _focus(value: Any, file: str) -> tuple[str, ...]:
    if (not isinstance(value, list) or len(value) > MAX_FOCUS
            or any(not isinstance(key, str) or key not in FOCUS_VIEWS for key in value)
            or len(set(value)) != len(value)):
        raise ExperimentError(file, "focus", f"must be a list of at most {MAX_FOCUS} different "
                              f"views among {', '.join(FOCUS_VIEWS)}; got {value!r}")
    return tuple(value)


def read_experiment(path: str | Path) -> Experiment:
    """An experiment from a file anywhere (its stem is its name)."""
    path = Path(path)
    return parse_experiment(path.read_text(encoding="utf-8"), path.stem, str(path))


def _files() -> dict[str, Any]:
    """The package's experiment files, by name."""
    return {entry.name[:-len(".json")]: entry for entry in resources.files(__name__).iterdir()
            if entry.name.endswith(".json")}


def experiment_names() -> list[str]:
    return sorted(_files())


def load_experiment(name: str) -> Experiment:
    """The experiment ``name``; a ValueError lists the known names if there is none."""
    files = _files()
    if name not in files:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(sorted(files))}")
    return parse_experiment(files[name].read_text(encoding="utf-8"), name,
                            f"gradviz/experiments/{name}.json")


def list_experiments() -> list[Experiment]:
    """Every experiment, sorted by theme, then title."""
    return sorted((load_experiment(name) for name in _files()), key=lambda e: (e.theme, e.title))


__all__ = ["Experiment", "ExperimentError", "FOCUS_VIEWS", "list_experiments", "load_experiment",
           "experiment_names", "parse_experiment", "read_experiment"]
