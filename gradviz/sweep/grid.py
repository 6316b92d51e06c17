"""The grid of a sweep: cells × lengths T × seeds × any varied RunConfig fields, around
one base configuration, and the runs it expands to.

A run is named by its *key*, e.g. ``lstm|T=50|clip=norm|seed=3``: the CSV of results is
keyed by it, so a sweep that is run again skips the runs whose key has a result. The grid
is kept in the sweep folder's ``sweep.json``; a folder holding another grid is refused.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from gradviz.config import ConfigError, RunConfig, settings
from gradviz.engine.tasks.success import criterion

# Fields that are axes of their own, that say how long to train, or that the sweep sets
# (a run captures its gradients when it tests for success).
NOT_VARIED = ("cell", "seq_len", "seed", "steps", "capture_every")
GRID_FILE = "sweep.json"
FORMAT = 1


class GridError(ValueError):
    """A grid that cannot be swept; ``option`` names the command-line option."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its key, the values of the axes (as text, for the CSV and the
    figure) and its whole configuration."""
    key: str
    labels: dict
    config: dict
    check_every: int

    def to_dict(self) -> dict:
        return {"key": self.key, "labels": self.labels, "config": self.config,
                "check_every": self.check_every}


def text_of(value) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)


def parse_value(name: str, text: str):
    """``text`` as a value of the RunConfig field ``name`` (GridError if it is not one)."""
    setting = dict(settings()).get(name)
    if setting is None or name in NOT_VARIED:
        allowed = ", ".join(n for n, _ in settings() if n not in NOT_VARIED)
        why = ("is set by the sweep (--check-every)" if name == "capture_every" else
               "is an axis of its own (--cells, --lengths, --seeds, --steps)"
               if name in NOT_VARIED else "is not a setting")
        raise GridError("--vary", f"{name!r} {why}; fields that can vary: {allowed}")
    text = text.strip()
    if setting.optional and text.lower() == "none":
        return None
    try:
        if setting.value_type is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        if setting.value_type is int:
            return int(text)
        if setting.value_type is float:
            return float(text)
    except ValueError:
        raise GridError("--vary", f"{name}={text!r} is not a {setting.value_type.__name__} "
                        f"value; {setting.allowed}") from None
    return text


@dataclass(frozen=True)
class Grid:
    base: RunConfig
    cells: tuple[str, ...]
    lengths: tuple[int, ...]
    seeds: int
    vary: tuple[tuple[str, tuple], ...] = ()
    check_every: int = 0          # 0: steps // 40, at least 1
    created_by: str = field(default="", compare=False)

    def __post_init__(self):
        if not self.cells:
            raise GridError("--cells", "name at least one cell")
        if not self.lengths:
            raise GridError("--lengths", "name at least one sequence length")
        if self.seeds < 1:
            raise GridError("--seeds", f"{self.seeds} seeds: give at least 1")
        try:
            criterion(self.base.task)
        except ValueError as exc:
            raise GridError("--task", str(exc)) from None
        for name, values in self.vary:
            if not values:
                raise GridError("--vary", f"{name}: give at least one value, e.g. "
                                          f"--vary clip=none,norm")
        for spec in self._configs():   # every run's configuration is valid, or say which
            pass

    @property
    def every(self) -> int:
        return self.check_every or max(1, self.base.steps // 40)

    @property
    def vary_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.vary)

    def _combos(self) -> list[tuple[tuple[str, object], ...]]:
        combos: list[tuple] = [()]
        for name, values in self.vary:
            combos = [c + ((name, v),) for c in combos for v in values]
        return combos

    def _configs(self):
        for seed in range(self.seeds):
            for cell in self.cells:
                for combo in self._combos():
                    for T in self.lengths:
                        changes = {"cell": cell, "seq_len": T, "seed": seed, **dict(combo)}
                        try:
                            config = self.base.replace(**changes)
                        except ConfigError as exc:
                            option = {"cell": "--cells", "seq_len": "--lengths",
                                      "seed": "--seeds"}.get(exc.field, "--vary"
                                                             if exc.field in changes
                                                             else "--" + exc.field.replace("_", "-"))
                            raise GridError(option, str(exc)) from None
                        yield cell, T, seed, combo, config

    def runs(self) -> list[RunSpec]:
        """Every run, seed by seed (so that each seed's curve is whole before the next
        starts), then cell, varied values and length."""
        out = []
        for cell, T, seed, combo, config in self._configs():
            labels = {"cell": cell, "seq_len": str(T)}
            labels.update({name: text_of(v) for name, v in combo})
            labels["seed"] = str(seed)
            key = "|".join([cell, f"T={T}"] + [f"{n}={text_of(v)}" for n, v in combo]
                           + [f"seed={seed}"])
            out.append(RunSpec(key, labels, config.to_dict(), self.every))
        return out

    # -- sweep.json ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "kind": "gradviz sweep", "base": self.base.to_dict(),
                "cells": list(self.cells), "lengths": list(self.lengths),
                "seeds": self.seeds, "vary": [[n, list(v)] for n, v in self.vary],
                "check_every": self.every, "criterion": criterion(self.base.task).text,
                "created_by": self.created_by}

    @classmethod
    def from_dict(cls, data: dict) -> "Grid":
        try:
            return cls(RunConfig.from_dict(data["base"]), tuple(data["cells"]),
                       tuple(int(t) for t in data["lengths"]), int(data["seeds"]),
                       tuple((n, tuple(v)) for n, v in data.get("vary", [])),
                       int(data.get("check_every", 0)), data.get("created_by", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise GridError("sweep.json", f"not a gradviz sweep grid ({exc})") from None

    def same_runs(self, other: "Grid") -> bool:
        return self.to_dict() | {"created_by": ""} == other.to_dict() | {"created_by": ""}


def load_grid(folder: str | Path) -> Grid:
    """The grid kept in ``folder``/sweep.json (GridError if it is missing or wrong)."""
    path = Path(folder) / GRID_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GridError("sweep", f"{folder} holds no {GRID_FILE}; is it a sweep folder?") \
            from None
    except (OSError, ValueError) as exc:
        raise GridError("sweep", f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise GridError("sweep", f"{path} is not a gradviz sweep grid")
    return Grid.from_dict(data)


def total_runs(grid: Grid) -> int:
    return len(grid.cells) * len(grid.lengths) * grid.seeds * math.prod(
        len(v) for _, v in grid.vary)


__all__ = ["Grid", "GridError", "RunSpec", "GRID_FILE", "NOT_VARIED", "load_grid",
           "parse_value", "text_of", "total_runs"]
