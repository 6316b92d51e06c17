"""What capturing everything costs: a gradviz training step with full capture against a
plain PyTorch training step (``torch.nn`` module + ``torch.optim``, no capture), and against
what a user would otherwise write to get per-timestep gradients.

Three steps train on the adding problem (loss at the last step), batch 32, Adam, each
drawing its batch from the same task code inside the timed step:

* plain: ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``, no capture;
* gradviz: :class:`~gradviz.engine.training.train.Trainer` with full capture on every step;
* cells: ``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell`` unrolled in a Python loop over t,
  ``retain_grad()`` on every h_t (and c_t for the LSTM), every ‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖)
  read after the backward pass.

The three are interleaved rep by rep in one process, so machine noise hits them alike; the
figures to compare are their ratios to plain. The table also gives gradviz's achieved
GFLOP/s (the matrix products of one training step, counted from the shapes, per second of
its whole step) beside the machine's peak, measured at the start as the GFLOP/s of a large
float32 ``torch.mm`` on the same number of threads.

    python benchmarks/capture_overhead.py            # the full table (a few minutes)
    python benchmarks/capture_overhead.py --quick    # a subset, under a minute
    python benchmarks/capture_overhead.py --smoke    # one tiny size per cell, seconds

The last line is ``geomean ratio: X`` (gradviz time / plain time; < 1 means faster).
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from gradviz.config import RunConfig
from gradviz.engine import native
from gradviz.registry import cell_spec
from gradviz.engine.tasks import make_task
from gradviz.engine.training.train import Trainer, prepare_training_process, set_training_threads

TORCH_CELLS = {"rnn-tanh": lambda i, h: torch.nn.RNN(i, h, nonlinearity="tanh"),
               "lstm": lambda i, h: torch.nn.LSTM(i, h),
               "gru": lambda i, h: torch.nn.GRU(i, h)}

UNROLLED_CELLS = {"rnn-tanh": lambda i, h: torch.nn.RNNCell(i, h, nonlinearity="tanh"),
                  "lstm": lambda i, h: torch.nn.LSTMCell(i, h),
                  "gru": lambda i, h: torch.nn.GRUCell(i, h)}

# The /proc/cpuinfo flags worth naming: what the compiled loops can be built for.
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512vl", "avx512bw",
                "avx512_vnni", "avx512_bf16", "amx_tile", "asimd", "sve", "sve2")

PEAK_N, PEAK_REPS = 1024, 10


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """"MODEL; vector extensions: ..." from /proc/cpuinfo; "unknown" where it is missing."""
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        return "unknown; vector extensions: unknown"
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    model = fields.get("model name") or fields.get("hardware") or "unknown"
    # x86 names them "flags", ARM "features".
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    if not flags:
        return f"{model}; vector extensions: unknown"
    present = [f for f in VECTOR_FLAGS if f in flags]
    if "avx2" in flags and "avx512f" not in flags:
        present.append("(no AVX-512)")
    return f"{model}; vector extensions: {' '.join(present) or 'none of ' + ' '.join(VECTOR_FLAGS)}"


def peak_gflops(n: int = PEAK_N, reps: int = PEAK_REPS) -> float:
    """GFLOP/s of an n × n float32 ``torch.mm`` on the current torch threads, best of
    ``reps`` (the best, since a peak is what the machine can do when noise leaves it alone)."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up: first-touch pages, kernel selection
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def step_flops(cfg: RunConfig, input_size: int) -> int:
    """Floating-point operations in the matrix products of one training step of a one-layer,
    one-direction network, 2 per multiply-add, counted for the B training sequences.

    With G gate blocks (rnn 1, gru 3, lstm 4), T steps, batch B, input I, hidden H:
      forward   input products  x_t W_ih^T      T·B·I·G·H
                recurrent       h_{t-1} W_hh^T  T·B·H·G·H
      backward  ∂L/∂h_{t-1}     dz_t W_hh       T·B·G·H·H
                ∂L/∂W_hh        Σ_t dz_t^T h    T·B·G·H·H
                ∂L/∂W_ih        Σ_t dz_t^T x_t  T·B·G·H·I
      multiply-adds = T·B·G·H·(3H + 2I)
    Not counted, being of lower order: the gates' elementwise work (O(T·B·G·H)), the
    readout at the loss positions, the optimiser, and gradviz's extra probe row.
    """
    G = len(cell_spec(cfg.cell).blocks)
    T, B, H, I = cfg.seq_len, cfg.batch_size, cfg.hidden, input_size
    return 2 * T * B * G * H * (3 * H + 2 * I)


def plain_step_fn(cfg: RunConfig):
    """A conventional PyTorch training step for the same task and sizes."""
    task = make_task(cfg)
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


def unrolled_step_fn(cfg: RunConfig):
    """The per-timestep gradients the way a PyTorch user gets them without gradviz: a
    Python loop over a cell module, ``retain_grad`` on every state, the norms read after
    ``backward``. Returns ‖∂L/∂h_t‖ (T,) and, for the LSTM, ‖∂L/∂c_t‖ (T,)."""
    task = make_task(cfg)
    cell = UNROLLED_CELLS[cfg.cell](task.input_size, cfg.hidden)
    readout = torch.nn.Linear(cfg.hidden, task.output_size)
    params = list(cell.parameters()) + list(readout.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(1)
    B, H, has_c = cfg.batch_size, cfg.hidden, cfg.cell == "lstm"

    def step():
        batch = task.batch(B, gen)
        opt.zero_grad(set_to_none=True)
        h = torch.zeros(B, H)
        c = torch.zeros(B, H)
        hs, cs = [], []
        for x_t in batch.x:
            if has_c:
                h, c = cell(x_t, (h, c))
                c.retain_grad()
                cs.append(c)
            else:
                h = cell(x_t, h)
            h.retain_grad()
            hs.append(h)
        loss = task.loss(readout(torch.stack(hs)[task.loss_positions]), batch.target)
        loss.backward()
        norms = [torch.stack([s.grad for s in states]).flatten(1).norm(dim=1).tolist()
                 for states in (hs, cs) if states]
        opt.step()
        return norms
    return step


class PlainModern(torch.nn.Module):
    """A modern cell as a PyTorch user would write it with nothing of gradviz's: the input
    products for all t at once, the recurrence a Python loop, autograd for the gradients.
    The orthogonal RNN is ``nn.RNN`` with ``parametrizations.orthogonal`` on W_hh (fused)."""

    def __init__(self, cell: str, i: int, h: int):
        super().__init__()
        self.cell = cell
        if cell == "rnn-orthogonal":
            self.rnn = torch.nn.utils.parametrizations.orthogonal(
                torch.nn.RNN(i, h), "weight_hh_l0", orthogonal_map="matrix_exp")
            return
        n = h // 2 if cell == "lru" else h
        blocks = {"mingru": 2, "minlstm": 3, "indrnn": 1, "lru": 2}[cell]
        self.proj = torch.nn.Linear(i, blocks * n, bias=cell != "lru")
        if cell == "indrnn":
            self.u = torch.nn.Parameter(torch.rand(h))
        if cell == "lru":
            r = torch.sqrt(torch.rand(n) * (0.999 ** 2 - 0.9 ** 2) + 0.9 ** 2)
            self.nu_log = torch.nn.Parameter(torch.log(-torch.log(r)))
            self.theta_log = torch.nn.Parameter(torch.log(torch.rand(n) * 0.314))

    def forward(self, x):
        if self.cell == "rnn-orthogonal":
            return self.rnn(x)[0]
        T, B, _ = x.shape
        z = self.proj(x)
        out, h = [], None
        if self.cell == "mingru":
            a, c = z.chunk(2, -1)
            g = torch.sigmoid(a)
            keep, new = 1 - g, g * c
        elif self.cell == "minlstm":
            f, i, c = z.chunk(3, -1)
            f, i = torch.sigmoid(f), torch.sigmoid(i)
            keep, new = f / (f + i), i / (f + i) * c
        elif self.cell == "lru":
            lam = torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))
            gamma = torch.sqrt(1 - lam.abs() ** 2)
            re, im = z.chunk(2, -1)
            keep, new = lam, gamma * torch.complex(re, im)
        for t in range(T):
            if self.cell == "indrnn":
                h = torch.relu(z[t] + (self.u * h if h is not None else 0))
            else:
                h = new[t] if len(out) == 0 else (keep if keep.dim() == 1 else keep[t]) * out[-1] + new[t]
            out.append(h)
        y = torch.stack(out)
        return torch.cat([y.real, y.imag], -1) if self.cell == "lru" else y


MODERN = ("mingru", "minlstm", "indrnn", "lru", "rnn-orthogonal")


def plain_modern_step_fn(cfg: RunConfig):
    task = make_task(cfg)
    rnn = PlainModern(cfg.cell, task.input_size, cfg.hidden)
    readout = torch.nn.Linear(cfg.hidden, task.output_size)
    opt = torch.optim.Adam(list(rnn.parameters()) + list(readout.parameters()), lr=cfg.lr)
    gen = torch.Generator().manual_seed(1)

    def step():
        batch = task.batch(cfg.batch_size, gen)
        opt.zero_grad(set_to_none=True)
        loss = task.loss(readout(rnn(batch.x)[task.loss_positions]), batch.target)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def modern_flops(cfg: RunConfig, input_size: int) -> int:
    """The matrix products of one step of a modern cell, as :func:`step_flops` counts them:
    the diagonal cells have only the input products (forward x_t W^T, backward Σ dz^T x),
    2·T·B·G·H·I multiply-adds with G·H their input rows; the orthogonal RNN is the tanh
    RNN's count (its W_hh's matrix exponential, O(H³) once per step, not counted)."""
    if cfg.cell == "rnn-orthogonal":
        return step_flops(cfg.replace(cell="rnn-tanh"), input_size)
    rows = {"mingru": 2, "minlstm": 3, "indrnn": 1, "lru": 1}[cfg.cell] * cfg.hidden
    return 2 * 2 * cfg.seq_len * cfg.batch_size * rows * input_size


def time_three(cfg: RunConfig, min_reps: int, budget_s: float) -> tuple[float, float, float]:
    """Median seconds of one step: plain, gradviz, unrolled cells, interleaved rep by rep.
    For a modern cell "plain" is :class:`PlainModern` and there is no unrolled column (nan)."""
    modern = cfg.cell in MODERN
    plain = plain_modern_step_fn(cfg) if modern else plain_step_fn(cfg)
    ours = Trainer(cfg).step
    unrolled = (lambda: [[0.0] * cfg.seq_len]) if modern else unrolled_step_fn(cfg)
    plain(), ours(), unrolled()  # warm-up
    tp, to, tc = [], [], []
    start = time.perf_counter()
    while len(tp) < min_reps or (time.perf_counter() - start < budget_s and len(tp) < 200):
        t0 = time.perf_counter()
        plain()
        t1 = time.perf_counter()
        cap = ours()
        t2 = time.perf_counter()
        norms = unrolled()
        t3 = time.perf_counter()
        assert cap is not None  # every step captured
        assert len(norms[0]) == cfg.seq_len  # every h_t's gradient read
        tp.append(t1 - t0)
        to.append(t2 - t1)
        tc.append(t3 - t2)
    return statistics.median(tp), statistics.median(to), math.nan if modern else statistics.median(tc)


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes = ap.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="a subset that runs in under a minute")
    sizes.add_argument("--smoke", action="store_true",
                       help="one tiny size per cell, two repetitions: checks that it runs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the app's worker uses 1)")
    ap.add_argument("--cells", nargs="+", default=list(TORCH_CELLS),
                    choices=list(TORCH_CELLS) + list(MODERN))
    ap.add_argument("--modern", action="store_true",
                    help="the modern cells (minGRU, minLSTM, IndRNN, LRU, orthogonal RNN) "
                         "against the same cell in plain PyTorch with autograd")
    args = ap.parse_args(argv)
    if args.modern:
        args.cells = list(MODERN)
    prepare_training_process()
    set_training_threads(args.threads)
    if args.smoke:
        seq_lens, hiddens, min_reps, budget = (10,), (8,), 2, 0.0
    elif args.quick:
        seq_lens, hiddens, min_reps, budget = (50, 200), (32,), 5, 1.5
    else:
        seq_lens, hiddens, min_reps, budget = (50, 200, 1000), (32, 128), 5, 4.0
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch 32, Adam, adding problem, "
          f"full capture every step")
    print(f"loops: {native.status()}")
    print(f"cpu: {cpu_description()}")
    peak = peak_gflops()
    print(f"peak: {peak:.1f} GFLOP/s ({PEAK_N}×{PEAK_N} float32 torch.mm, {args.threads} thread(s), "
          f"best of {PEAK_REPS})")
    print("cells: nn.RNNCell/LSTMCell/GRUCell unrolled in Python, retain_grad on every h_t "
          "(and c_t); ratios are to plain; speed-up is cells ms / gradviz ms; GFLOP/s and "
          "% peak are gradviz's")
    width = max(9, max(len(c) for c in args.cells) + 1)
    print(f"{'cell':<{width}}{'T':>6}{'H':>6}{'plain ms':>11}{'gradviz ms':>12}{'ratio':>8}"
          f"{'cells ms':>11}{'cells ratio':>13}{'speed-up':>10}{'GFLOP/s':>10}{'% peak':>8}")
    ratios, cell_ratios, speedups, rates, big = [], [], [], [], []
    for cell in args.cells:
        for T in seq_lens:
            for H in hiddens:
                cfg = RunConfig(task="adding", cell=cell, seq_len=T, hidden=H, batch_size=32,
                                optimizer="adam", lr=1e-3, capture_every=1)
                tp, to, tc = time_three(cfg, min_reps, budget)
                count = modern_flops if cell in MODERN else step_flops
                gflops = count(cfg, make_task(cfg).input_size) / to / 1e9
                ratios.append(to / tp)
                if not math.isnan(tc):
                    cell_ratios.append(tc / tp)
                    speedups.append(tc / to)
                rates.append(gflops)
                if cell in ("lstm", "gru") and H == max(hiddens):
                    big.append(gflops)
                print(f"{cell:<{width}}{T:>6}{H:>6}{tp * 1e3:>11.2f}{to * 1e3:>12.2f}{to / tp:>8.2f}"
                      f"{tc * 1e3:>11.2f}{tc / tp:>13.2f}{tc / to:>10.2f}{gflops:>10.3g}"
                      f"{100 * gflops / peak:>8.3g}",
                      flush=True)
    if cell_ratios:
        print(f"cells geomean ratio: {geomean(cell_ratios):.2f} "
              f"(cells time / gradviz time: {geomean(speedups):.2f}, geomean)")
    if any(c in MODERN for c in args.cells):
        print("modern cells: plain = the same cell in plain PyTorch with autograd (input "
              "products at once, a Python loop over t; the orthogonal RNN: nn.RNN with "
              "parametrizations.orthogonal); no unrolled column")
    # Measured again: on a loaded machine one measurement can fall well below the peak,
    # and the fractions below are of the higher of the two (the rows' of the first).
    peak = max(peak, peak_gflops())
    print(f"peak again: {peak:.1f} GFLOP/s, the higher of the two measurements")
    print(f"gradviz: {100 * max(rates) / peak:.1f}% of peak at best, "
          f"{100 * geomean(rates) / peak:.1f}% geomean")
    if big:
        print(f"gradviz at H {max(hiddens)}, LSTM and GRU: {100 * min(big) / peak:.1f}% of "
              f"peak at worst, {100 * geomean(big) / peak:.1f}% geomean")
    print(f"max ratio: {max(ratios):.2f}")
    print(f"geomean ratio: {geomean(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
