"""Run every guided experiment headless and check its lesson on the captured numbers.

    python benchmarks/experiments.py              # all of them
    python benchmarks/experiments.py forget-bias  # some of them

One line per experiment, ``NAME: held (…)`` or ``NAME: failed (why)``, then ``N held, M
failed``; the exit status is 1 if any failed. Training uses one torch thread, as the app's
training process does for models this small, so the runs are those the app shows.
"""
from __future__ import annotations

import sys

from gradviz.engine.training.train import set_training_threads
from gradviz.experiments import list_experiments, load_experiment
from gradviz.experiments.lessons import check_lesson


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    names = {e.name for e in list_experiments()}
    unknown = [n for n in argv if n not in names]
    if unknown:
        print(f"experiments.py: no experiment named {', '.join(unknown)}; there are: "
              f"{', '.join(sorted(names))}", file=sys.stderr)
        return 2
    set_training_threads(1)
    experiments = [load_experiment(n) for n in argv] if argv else list_experiments()
    outcomes = []
    for exp in experiments:
        outcome = check_lesson(exp)
        print(outcome.line(), flush=True)
        outcomes.append(outcome)
    held = sum(o.held for o in outcomes)
    print(f"{held} held, {len(outcomes) - held} failed")
    return 0 if held == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
