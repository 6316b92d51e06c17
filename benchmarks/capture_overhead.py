"""What capturing everything costs: a gradviz training step with full capture against a
plain PyTorch training step (``torch.nn`` module + ``torch.optim``, no capture).

Both train on the adding problem (loss at the last step), batch 32, Adam, and both draw
their batch from the same task code inside the timed step. The two are interleaved
rep by rep in one process, so machine noise hits both alike; the figure is their ratio.

    python benchmarks/capture_overhead.py            # the full table (a few minutes)
    python benchmarks/capture_overhead.py --quick    # a subset, under a minute

The last line is ``geomean ratio: X`` (gradviz time / plain time; < 1 means faster).
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from gradviz.config import RunConfig
from gradviz.engine import native
from gradviz.engine.train import Trainer, prepare_training_process

TORCH_CELLS = {"rnn-tanh": lambda i, h: torch.nn.RNN(i, h, nonlinearity="tanh"),
               "lstm": lambda i, h: torch.nn.LSTM(i, h),
               "gru": lambda i, h: torch.nn.GRU(i, h)}


def plain_step_fn(cfg: RunConfig):
    """A conventional PyTorch training step for the same task and sizes."""
    trainer = Trainer(cfg)  # only for its task and seeded data generator
    task = trainer.task
    rnn = TORCH_CELLS[cfg.cell](task.input_size, cfg.hidden)
    readout = torch.nn.Linear(cfg.hidden, task.output_size)
    params = list(rnn.parameters()) + list(readout.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(1)

    def step():
        batch = task.batch(cfg.batch_size, gen)
        opt.zero_grad(set_to_none=True)
        out, _ = rnn(batch.x)
        loss = task.loss(readout(out[task.loss_positions]), batch.target)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def time_pair(cfg: RunConfig, min_reps: int, budget_s: float) -> tuple[float, float]:
    plain = plain_step_fn(cfg)
    trainer = Trainer(cfg)
    ours = trainer.step
    plain(), ours()  # warm-up
    tp, to = [], []
    start = time.perf_counter()
    while len(tp) < min_reps or (time.perf_counter() - start < budget_s and len(tp) < 200):
        t0 = time.perf_counter()
        plain()
        t1 = time.perf_counter()
        cap = ours()
        t2 = time.perf_counter()
        assert cap is not None  # every step captured
        tp.append(t1 - t0)
        to.append(t2 - t1)
    return statistics.median(tp), statistics.median(to)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a subset that runs in under a minute")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the app's worker uses 1)")
    ap.add_argument("--cells", nargs="+", default=list(TORCH_CELLS), choices=list(TORCH_CELLS))
    args = ap.parse_args(argv)
    prepare_training_process()
    torch.set_num_threads(args.threads)
    if args.quick:
        seq_lens, hiddens, min_reps, budget = (50, 200), (32,), 5, 1.5
    else:
        seq_lens, hiddens, min_reps, budget = (50, 200, 1000), (32, 128), 5, 4.0
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch 32, Adam, adding problem, "
          f"full capture every step")
    print(f"loops: {native.status()}")
    print(f"{'cell':<9}{'T':>6}{'H':>6}{'plain ms':>11}{'gradviz ms':>12}{'ratio':>8}")
    ratios = []
    for cell in args.cells:
        for T in seq_lens:
            for H in hiddens:
                cfg = RunConfig(task="adding", cell=cell, seq_len=T, hidden=H, batch_size=32,
                                optimizer="adam", lr=1e-3, capture_every=1)
                tp, to = time_pair(cfg, min_reps, budget)
                ratios.append(to / tp)
                print(f"{cell:<9}{T:>6}{H:>6}{tp * 1e3:>11.2f}{to * 1e3:>12.2f}{to / tp:>8.2f}", flush=True)
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"max ratio: {max(ratios):.2f}")
    print(f"geomean ratio: {geomean:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
