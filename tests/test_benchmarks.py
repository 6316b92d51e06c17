"""benchmarks/capture_overhead.py: its smallest mode runs and prints a complete table; its
CPU description and its FLOP count are right."""
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch.utils.flop_counter import FlopCounterMode

from gradviz.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "capture_overhead.py"
COLUMNS = ["cell", "T", "H", "plain", "ms", "gradviz", "ms", "ratio", "cells", "ms", "cells",
           "ratio", "speed-up", "GFLOP/s", "%", "peak"]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("capture_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rounding(top: float, bottom: float) -> float:
    """How far a printed ratio may lie from top / bottom recomputed from the printed
    milliseconds: each is rounded to 0.01 ms (±0.005), the ratio itself to 0.01; at the
    smoke run's sizes a step takes well under a millisecond, so that is several percent."""
    q = top / bottom
    return q * (0.005 / top + 0.005 / bottom) + 0.005 + 1e-9


@pytest.mark.slow
def test_smoke_run_prints_every_column_with_finite_numbers():
    # A process of its own: the benchmark tunes the process (denormals, threads, malloc).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                                     os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("loops: ")
    assert any(ln.startswith("cpu: ") and "vector extensions: " in ln for ln in lines)
    peak = next(ln for ln in lines if ln.startswith("peak: "))
    assert float(peak.split()[1]) > 0
    head = next(i for i, ln in enumerate(lines) if ln.startswith("cell "))
    assert lines[head].split() == COLUMNS
    rows = [ln.split() for ln in lines[head + 1:head + 4]]
    assert [r[0] for r in rows] == ["rnn-tanh", "lstm", "gru"]
    for row in rows:
        assert len(row) == 11
        T, H, plain, ours, ratio, cells, cells_ratio, speedup, gflops, percent = map(float, row[1:])
        assert (T, H) == (10, 8)
        assert all(math.isfinite(v) and v > 0 for v in (plain, ours, ratio, cells, cells_ratio,
                                                         gflops, percent))
        assert ratio == pytest.approx(ours / plain, abs=rounding(ours, plain))
        assert cells_ratio == pytest.approx(cells / plain, abs=rounding(cells, plain))
        assert speedup == pytest.approx(cells / ours, abs=rounding(cells, ours))
        assert percent < 100
    assert lines[head + 4].startswith("cells geomean ratio: ")
    assert any(ln.startswith("gradviz at H 8, LSTM and GRU: ") for ln in lines)
    again = next(ln for ln in lines if ln.startswith("peak again: "))
    assert float(again.split()[2]) >= float(peak.split()[1])
    assert lines[-2].startswith("max ratio: ")
    assert lines[-1].startswith("geomean ratio: ")
    assert math.isfinite(float(lines[-1].split()[-1]))


@pytest.mark.parametrize("text, expected", [
    ("model name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx avx2 fma\n",
     "AMD EPYC; vector extensions: sse4_2 avx avx2 fma (no AVX-512)"),
    ("model name\t: Intel Xeon\nflags\t\t: sse4_2 avx avx2 fma avx512f avx512vl\n"
     "model name\t: Intel Xeon\nflags\t\t: sse4_2 avx avx2 fma avx512f avx512vl\n",
     "Intel Xeon; vector extensions: sse4_2 avx avx2 fma avx512f avx512vl"),
    ("processor\t: 0\nFeatures\t: fp asimd sve\n", "unknown; vector extensions: asimd sve"),
    ("model name\t: Something\n", "Something; vector extensions: unknown"),
])
def test_cpu_description_reads_the_model_and_vector_flags(tmp_path, text, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    assert load_benchmark().cpu_description(cpuinfo) == expected


def test_cpu_description_without_cpuinfo_says_unknown(tmp_path):
    assert load_benchmark().cpu_description(tmp_path / "absent") == \
        "unknown; vector extensions: unknown"


@pytest.mark.parametrize("cell, G", [("rnn-tanh", 1), ("lstm", 4), ("gru", 3)])
def test_flop_formula_matches_torchs_count_of_the_unrolled_step(cell, G):
    bench = load_benchmark()
    T, B, H = 12, 32, 8
    cfg = RunConfig(task="adding", cell=cell, seq_len=T, hidden=H, batch_size=B,
                    optimizer="adam", lr=1e-3, capture_every=1)
    step = bench.unrolled_step_fn(cfg)
    with FlopCounterMode(display=False) as counter:
        step()
    I, O = 2, 1
    # What the formula leaves out: ∂L/∂h_0 (h_0 needs no gradient) and the readout
    # (forward, its weight gradient and ∂L/∂h_T).
    expected = bench.step_flops(cfg, I) - 2 * B * G * H * H + 3 * 2 * B * H * O
    assert counter.get_total_flops() == expected
