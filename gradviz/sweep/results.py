"""A sweep's results: ``sweep.csv``, one row per finished run, rewritten atomically (a
temporary file renamed over it) each time a run finishes, so that a sweep killed at any
moment leaves a whole file of whole rows; and the curve they make: the success rate over
seeds at each T, with its 95% Wilson interval and the median step of success.

Numbers are written with Python's ``repr``, which reads back to the same float: two
sweeps whose runs agree bit for bit have equal rows (all but the ``seconds`` column).
"""
from __future__ import annotations

import csv
import io
import math
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

RESULTS_FILE = "sweep.csv"
# Before the axes' columns: the key; after them, what the run measured.
MEASURED = ("status", "success", "success_step", "steps_done", "final_loss", "test_loss",
            "baseline", "decades_init", "decades_end", "seconds", "reason")
Z95 = 1.959963984540054     # the normal quantile of 97.5%


def columns(vary_names: tuple[str, ...]) -> list[str]:
    return ["key", "cell", "seq_len", *vary_names, "seed", *MEASURED]


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def failed_row(spec: dict, reason: str) -> dict:
    """The row of a run that raised or whose worker died; ``reason`` on one line."""
    return {"key": spec["key"], **spec["labels"], "status": "failed", "success": 0,
            "reason": " ".join(str(reason).split())[:500]}


def read_rows(folder: str | Path) -> list[dict]:
    """The rows of ``folder``/sweep.csv as text (empty if there is none yet)."""
    path = Path(folder) / RESULTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return list(csv.DictReader(io.StringIO(text)))


def write_rows(folder: str | Path, header: list[str], rows: list[dict]) -> None:
    """Replace ``folder``/sweep.csv by ``rows``, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _text(row.get(k)) for k in header})
    folder = Path(folder)
    handle, temporary = tempfile.mkstemp(prefix=".sweep-", suffix=".csv.tmp", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(buffer.getvalue())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, folder / RESULTS_FILE)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


# -- the curve ---------------------------------------------------------------------------
def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion, (low, high); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Point:
    """One point of a curve: at length ``seq_len``, ``successes`` of ``n`` finished runs
    (failed runs are not counted), with its Wilson interval and the median step of
    success (nan if none succeeded)."""
    seq_len: int
    n: int
    successes: int
    failed: int
    rate: float
    low: float
    high: float
    median_step: float


def curve_name(row: dict, vary_names: tuple[str, ...]) -> str:
    """The curve a row belongs to: its cell, and its varied values if any."""
    return " ".join([row["cell"]] + [f"{n}={row.get(n, '')}" for n in vary_names])


def curves(rows: list[dict], vary_names: tuple[str, ...]) -> dict[str, list[Point]]:
    """The success curve of each cell (and varied value), its points by increasing T."""
    groups: dict[str, dict[int, list[dict]]] = {}
    for row in rows:
        name = curve_name(row, vary_names)
        groups.setdefault(name, {}).setdefault(int(row["seq_len"]), []).append(row)
    out = {}
    for name, by_length in groups.items():
        points = []
        for T in sorted(by_length):
            finished = [r for r in by_length[T] if r.get("status") == "ok"]
            wins = [r for r in finished if str(r.get("success")) == "1"]
            steps = [float(r["success_step"]) for r in wins if r.get("success_step")]
            n, k = len(finished), len(wins)
            low, high = wilson(k, n)
            points.append(Point(T, n, k, len(by_length[T]) - n, k / n if n else math.nan,
                                low, high, statistics.median(steps) if steps else math.nan))
        out[name] = points
    return out


__all__ = ["RESULTS_FILE", "MEASURED", "columns", "failed_row", "read_rows", "write_rows",
           "wilson", "Point", "curves", "curve_name"]
