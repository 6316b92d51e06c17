"""A sweep folder: ``sweep.json`` (the grid) and ``sweep.csv`` (a row per finished run).

:func:`open_folder` creates the folder for a grid, or reopens one that holds the same grid
(a re-run resumes it: the runs with an ``ok`` row are skipped; failed ones are tried
again); a folder with another grid is refused. :func:`memory_refusal` says, in one line,
when the runs that would train at once do not fit in the machine's memory.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from gradviz.sweep.grid import GRID_FILE, Grid, GridError, load_grid
from gradviz.sweep.results import columns, read_rows, write_rows


def _write_json(path: Path, data: dict) -> None:
    handle, temporary = tempfile.mkstemp(prefix=".sweep-", suffix=".json.tmp", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=1)
        out.write("\n")
    os.replace(temporary, path)


class ResultsNotWritten(Exception):
    """sweep.csv could not be written; the message is one line with the fix."""


class SweepFolder:
    """The results of one grid in one folder, updated as runs finish."""

    def __init__(self, folder: Path, grid: Grid):
        self.folder, self.grid = folder, grid
        self.header = columns(grid.vary_names)
        keys = {spec.key for spec in grid.runs()}
        # Rows of this grid only, the newest per key; ok rows are final.
        rows: dict[str, dict] = {}
        for row in read_rows(folder):
            if row.get("key") in keys:
                rows[row["key"]] = row
        self.rows = rows

    def finished(self) -> set[str]:
        return {k for k, r in self.rows.items() if r.get("status") == "ok"}

    def pending(self) -> list[dict]:
        done = self.finished()
        return [spec.to_dict() for spec in self.grid.runs() if spec.key not in done]

    def add(self, row: dict) -> None:
        """Record a finished run's row and rewrite sweep.csv atomically."""
        self.rows[row["key"]] = row
        order = {spec.key: i for i, spec in enumerate(self.grid.runs())}
        try:
            write_rows(self.folder, self.header,
                       sorted(self.rows.values(), key=lambda r: order.get(r["key"], 0)))
        except OSError as exc:
            raise ResultsNotWritten(f"could not write {self.folder / 'sweep.csv'} "
                                    f"({exc.strerror or exc}); the rows written before are "
                                    "kept; fix the folder and repeat the command to "
                                    "resume") from None


def open_folder(out: str | os.PathLike, grid: Grid) -> SweepFolder:
    """The sweep folder ``out`` for ``grid``, created if needed (GridError if it holds
    another grid or cannot be written)."""
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GridError("--out", f"cannot create the folder {folder} ({exc.strerror or exc}); "
                                 "choose a folder you can write to") from None
    path = folder / GRID_FILE
    if path.exists():
        kept = load_grid(folder)
        if not kept.same_runs(grid):
            raise GridError("--out", f"{folder} holds another sweep (its {GRID_FILE} has a "
                                     "different grid or settings); choose another folder, or "
                                     "repeat that sweep's command to resume it")
    else:
        try:
            _write_json(path, grid.to_dict())
        except OSError as exc:
            raise GridError("--out", f"cannot write to {folder} ({exc.strerror or exc}); "
                                     "choose a folder you can write to") from None
    return SweepFolder(folder, grid)


def memory_refusal(grid: Grid, workers: int) -> str | None:
    """One line if ``workers`` runs of ``grid`` training at once (its largest run each:
    several seeds of it may well train together) need more memory than this machine has
    available (:mod:`gradviz.engine.training.memory`); else None."""
    from gradviz.config import RunConfig
    from gradviz.engine.training import memory

    have = memory.available_bytes()
    if have is None:
        return None
    largest = max(memory.estimate_bytes(RunConfig.from_dict(spec.config))
                  for spec in grid.runs() if spec.labels["seed"] == "0")
    if workers * largest <= have:
        return None
    fits = have // largest
    advice = f"use --workers {fits}" if fits else "lower --lengths, --hidden or --batch-size"
    return (f"{workers} runs at once need about {memory.human_bytes(workers * largest)} of "
            f"memory ({memory.human_bytes(largest)} each for the largest); this machine has "
            f"{memory.human_bytes(have)} available; {advice}")


__all__ = ["ResultsNotWritten", "SweepFolder", "open_folder", "memory_refusal"]
