"""What the exact norms cost (issue 20): a full-capture training step with gradviz's norms
(exact to the float32 floor: gradviz.engine.analysis.norms) against the same step with the
plain float norms it used before (torch.linalg.vector_norm, torch._foreach_norm), which
read 0 below elements of ~1e-19.

Two trainers of each configuration step in turn, in one process, the order alternating,
so machine noise hits both alike; the figures to compare are the ratios (exact / plain).
The configurations are the adding problem with its loss at the last step, where most
timesteps' gradients vanish (the norms' slow path in PyTorch, their usual one compiled).

    python benchmarks/norm_floor.py            # nine configurations, a minute or two
    python benchmarks/norm_floor.py --quick    # three

The last line is ``geomean ratio: X``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from gradviz.config import RunConfig
from gradviz.engine import native
from gradviz.engine.analysis import paths
from gradviz.engine.training import train

EXACT = (train.norm_over, train.each_norm, train.total_norm, paths.refine)
PLAIN = (lambda x, dims: torch.linalg.vector_norm(x, dim=dims),
         lambda tensors: torch.stack(torch._foreach_norm(tensors)),
         lambda norms: torch.linalg.vector_norm(norms).item(),
         lambda x, norms, dims: norms)


def use(fns) -> None:
    train.norm_over, train.each_norm, train.total_norm, paths.refine = fns


def compare(config: RunConfig, reps: int) -> tuple[float, float]:
    """Median seconds of a full-capture step: (exact norms, plain norms)."""
    trainers = {"exact": train.Trainer(config), "plain": train.Trainer(config)}
    times: dict[str, list[float]] = {"exact": [], "plain": []}
    for r in range(reps + 2):
        order = (("exact", EXACT), ("plain", PLAIN))
        for name, fns in order if r % 2 else order[::-1]:
            use(fns)
            started = time.perf_counter()
            trainers[name].step(full=True)
            if r >= 2:
                times[name].append(time.perf_counter() - started)
    use(EXACT)
    return statistics.median(times["exact"]), statistics.median(times["plain"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=30)
    ns = parser.parse_args()
    train.prepare_training_process()
    train.set_training_threads(1)
    print(f"loops: {native.status()}")
    sizes = ((100, 32),) if ns.quick else ((50, 32), (100, 32), (200, 64))
    ratios = []
    for cell in ("rnn-tanh", "lstm", "gru"):
        for T, H in sizes:
            config = RunConfig(cell=cell, seq_len=T, hidden=H, batch_size=32,
                               task="adding").validate()
            exact, plain = compare(config, ns.reps)
            ratios.append(exact / plain)
            print(f"{cell:9s} T {T:4d} H {H:4d}  plain {plain * 1e3:7.2f} ms  "
                  f"exact {exact * 1e3:7.2f} ms  ratio {exact / plain:.3f}", flush=True)
    print(f"geomean ratio: {statistics.geometric_mean(ratios):.3f}")


if __name__ == "__main__":
    main()
