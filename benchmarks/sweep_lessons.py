"""Run the sweep experiments and check their lessons on the finished sweeps.

    python benchmarks/sweep_lessons.py                      # both, into sweeps/<name>
    python benchmarks/sweep_lessons.py vanishing-curve --out /tmp/sweeps

One line per experiment, ``NAME: held (…)`` or ``NAME: failed (why)``; exit status 1 if
any failed. A sweep folder that is already (partly) done is resumed, so a second call only
checks. The runs use every core (gradviz sweep's local process pool).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gradviz.sweep.driver import run_sweep
from gradviz.sweep.experiments import SWEEP_EXPERIMENTS, check_lesson
from gradviz.sweep.grid import Grid
from gradviz.sweep.results import curves, read_rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(SWEEP_EXPERIMENTS))
    parser.add_argument("--out", default="sweeps")
    args = parser.parse_args(argv)
    failed = 0
    for name in args.names:
        experiment = SWEEP_EXPERIMENTS[name]
        spec = experiment.grid
        grid = Grid(experiment.base, tuple(spec["cells"]), tuple(spec["lengths"]),
                    spec["seeds"], tuple((n, tuple(v)) for n, v in spec.get("vary", [])))
        folder = Path(args.out) / name
        if run_sweep(grid, folder, quiet=True) != 0:
            print(f"{name}: failed (the sweep did not finish)")
            failed += 1
            continue
        held, found = check_lesson(name, curves(read_rows(folder), grid.vary_names))
        print(f"{name}: {'held' if held else 'failed'} ({found})", flush=True)
        failed += not held
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
