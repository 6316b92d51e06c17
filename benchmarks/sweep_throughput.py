"""Runs per minute of a sweep on 1, 2 and all cores (the local process pool).

    python benchmarks/sweep_throughput.py              # 16 runs of 300 steps each time
    python benchmarks/sweep_throughput.py --runs 32 --steps 500

The grid is the same each time: tanh RNN and GRU on the adding problem, T 20 and 50,
H 32, tested only at the first and last step (so no run stops early and every run trains
its full budget). The time includes starting the pool's processes (torch's import, ~2 s
each), as a real sweep's does. One line per pool size, then the speed-up over one core.
On a machine shared with other work the numbers move; compare them within one run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time

from gradviz.config import RunConfig
from gradviz.sweep import executors
from gradviz.sweep.driver import run_specs
from gradviz.sweep.folder import open_folder
from gradviz.sweep.grid import Grid


def measure(workers: int, runs: int, steps: int) -> float:
    """Runs per minute with ``workers`` pool processes."""
    seeds = max(1, runs // 4)
    grid = Grid(RunConfig(task="adding", hidden=32, lr=0.01, steps=steps),
                ("rnn-tanh", "gru"), (20, 50), seeds, check_every=steps)
    with tempfile.TemporaryDirectory() as out:
        folder = open_folder(out, grid)
        specs = folder.pending()
        start = time.perf_counter()
        run_specs(folder, specs, workers, lambda: executors.local_pool(workers))
        seconds = time.perf_counter() - start
    return len(specs) / seconds * 60


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    sizes = sorted({1, min(2, executors.cores()), executors.cores()})
    rates = {}
    for workers in sizes:
        rates[workers] = measure(workers, args.runs, args.steps)
        print(f"{workers} core{'s' * (workers > 1)}: {rates[workers]:.1f} runs/min "
              f"({args.runs} runs of {args.steps} steps)", flush=True)
    print("speed-up over 1 core: " + ", ".join(f"{w}: {rates[w] / rates[1]:.2f}x"
                                                for w in sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
