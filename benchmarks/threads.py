"""Training speed of a small model with the thread count gradviz chooses and with torch's
default pool, on the machine as it is ("idle": no processes of the benchmark's own) and under added
CPU contention.

    python benchmarks/threads.py            # rnn-tanh, T 20, H 32, batch 32
    python benchmarks/threads.py --steps 400 --hidden 64

Each measurement trains in a fresh process (torch's pool size is fixed once it has run an
op), so the four rows do not disturb each other. "Contention" is one busy process per core
spinning in pure Python, as a second training run or a compile would. Prints steps/s for
each row and the ratio chosen ÷ default under contention.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time


def _spin(stop) -> None:
    while not stop.is_set():
        for _ in range(10_000):
            pass


def _train(threads: int | None, steps: int, hidden: int, out) -> None:
    import torch

    from gradviz.config import RunConfig
    from gradviz.engine.training.session import Session
    from gradviz.engine.training.train import set_training_threads, threads_for

    config = RunConfig(cell="rnn-tanh", task="adding", seq_len=20, hidden=hidden,
                       batch_size=32, seed=0)
    set_training_threads(threads if threads is not None else threads_for(config))
    session = Session(config)
    session.run(10)                         # warm-up: the first steps build caches
    started = time.perf_counter()
    session.run(steps)
    out.put((torch.get_num_threads(), steps / (time.perf_counter() - started)))


def measure(threads: int | None, steps: int, hidden: int, busy: int) -> tuple[int, float]:
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    spinners = [ctx.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
    for process in spinners:
        process.start()
    try:
        out = ctx.Queue()
        child = ctx.Process(target=_train, args=(threads, steps, hidden, out))
        child.start()
        result = out.get(timeout=600)
        child.join()
        return result
    finally:
        stop.set()
        for process in spinners:
            process.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=32)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"rnn-tanh T 20 H {args.hidden} batch 32, {args.steps} steps, {cores} cores, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    speeds = {}
    for busy in (0, cores):
        for label, threads in (("chosen", None), ("default", cores)):
            used, speed = measure(threads, args.steps, args.hidden, busy)
            speeds[label, busy] = speed
            where = "idle" if busy == 0 else f"{busy} busy processes"
            print(f"{label:8s} ({used} thread{'s' if used > 1 else ''}), {where:18s}"
                  f" {speed:8.1f} steps/s", flush=True)
    print(f"under contention, chosen / default: "
          f"{speeds['chosen', cores] / speeds['default', cores]:.1f}x")


if __name__ == "__main__":
    main()
