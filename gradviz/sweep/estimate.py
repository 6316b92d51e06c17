"""About how long a sweep takes, for the app's dialog, before anything trains.

Every run is counted at its full step budget (runs that solve their task stop early, so a
sweep usually takes less). One step of a one-layer cell took about ``STEP_BASE`` plus
``PER_TIMESTEP`` seconds per timestep at H 32, batch 32, one thread, on a 2-core laptop
CPU (measured on the adding problem: tanh RNN T 10-50, LSTM and GRU T 50-200); the
per-timestep part is scaled by the recurrent product's size, (H/32)² · (B/32) · G · L.
"""
from __future__ import annotations

from gradviz.registry import cell_spec
from gradviz.sweep.grid import Grid

STEP_BASE = 1.5e-3
PER_TIMESTEP = 4e-5          # per timestep, one gate block, H 32, B 32
GATE_WEIGHT = {1: 1.0, 3: 1.6, 4: 1.8}


def run_seconds(config: dict) -> float:
    """About how long one run of ``config`` (a RunConfig as a dict) trains its budget."""
    blocks = len(cell_spec(config["cell"]).blocks)
    size = (config["hidden"] / 32) ** 2 * max(config["batch_size"], 8) / 32
    per_step = STEP_BASE + PER_TIMESTEP * config["seq_len"] * GATE_WEIGHT.get(blocks, 2.0) \
        * max(size, 0.25) * config["layers"] * (2 if config["bidirectional"] else 1)
    return config["steps"] * per_step


def sweep_seconds(grid: Grid, workers: int, done: set[str] = frozenset()) -> float:
    """About how long the runs of ``grid`` not in ``done`` take on ``workers`` workers,
    if none stops early."""
    total = sum(run_seconds(spec.config) for spec in grid.runs() if spec.key not in done)
    return total / max(1, workers)


__all__ = ["run_seconds", "sweep_seconds"]
