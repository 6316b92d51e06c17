"""A legal but huge configuration is refused before it is built, with one line that says
what it needs, what the machine has and what to lower; the estimate it rests on is held
against the peak memory of real training steps."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradviz.config import TASKS, RunConfig
from gradviz.engine.training import memory

GB = 2**30
ROOT = Path(__file__).resolve().parents[1]

# The configurations of the fault report: one fails at once with torch's allocator
# traceback, the other grows past 14 GB without a word.
HUGE = RunConfig(seq_len=5000, hidden=1024, batch_size=4096, layers=4, bidirectional=True)
BIG = RunConfig(seq_len=500, hidden=128, batch_size=1024, layers=4, bidirectional=True)

# The estimate must lie within this factor of the measured peak, either way. Measured on
# Linux x86-64 (torch 2.13, 2 cores), it was 0.90-1.05 times the peak for these sizes.
FACTOR = 1.5

# A fresh interpreter trains two steps the way `gradviz run` does and reports its peak
# resident memory (VmHWM, in KiB) and which loops the cells ran.
CHILD = """
import json, resource, sys
from gradviz.engine.training.train import prepare_training_process
prepare_training_process()
import torch
torch.set_num_threads(1)
from gradviz.config import RunConfig
from gradviz.engine import native
from gradviz.engine.training.session import Session
Session(RunConfig.from_dict(json.loads(sys.argv[1]))).run(2)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child forked from a large
# test process reported that process's size (a 0.5 ratio in the full suite only).
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"peak": hwm * 1024,
                  "compiled": native.kernels() is not None}))
"""

# From about the base to several hundred MB: LSTM and GRU, 1 and 2 layers, one
# bidirectional, float32 and float64, the compiled loops and PyTorch's (the GRU's
# PyTorch forward pass keeps and leaves the most). Each trains in a few seconds.
MEASURED = [
    ({}, {}),
    ({"seq_len": 200, "batch_size": 250, "hidden": 48, "dtype": "float64"}, {}),
    ({"cell": "gru", "layers": 2, "bidirectional": True, "seq_len": 100, "batch_size": 300,
      "hidden": 64}, {}),
    ({"cell": "gru", "seq_len": 200, "batch_size": 300, "hidden": 48}, {"GRADVIZ_NATIVE": "0"}),
]


def on_a_machine_with(monkeypatch, gigabytes: float) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: int(gigabytes * GB))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="the base and ru_maxrss's unit are Linux's")
def test_the_estimate_is_within_a_factor_of_the_measured_peak():
    from gradviz.engine import native

    # The compiled library is built (if a test before this one emptied the cache) here, not
    # in the children: what they measure is training, not a build and its self-check.
    native.kernels()
    children = []
    for fields, env in MEASURED:
        child_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        children.append(subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(fields)], cwd=ROOT, env=child_env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    ratios = {}
    for (fields, env), child in zip(MEASURED, children):
        out, err = child.communicate(timeout=600)
        assert child.returncode == 0, err
        report = json.loads(out.strip().splitlines()[-1])
        estimate = memory.estimate_bytes(RunConfig(**fields), compiled=report["compiled"])
        ratios[json.dumps({**fields, **env})] = round(estimate / report["peak"], 2)
    assert all(1 / FACTOR <= r <= FACTOR for r in ratios.values()), ratios


def test_the_configurations_of_the_fault_report_are_refused_in_one_line(monkeypatch):
    on_a_machine_with(monkeypatch, 24)
    for config in (HUGE, BIG):
        need = memory.estimate_bytes(config)
        assert need > 24 * GB
        message = memory.check(config)
        assert message is not None and "\n" not in message
        assert message.startswith(f"needs about {memory.human_bytes(need)}")
        assert "this machine has 24 GB available" in message
        assert "batch size" in message and "sequence length" in message
        assert memory.warning(config) is None       # refused, not warned about


def test_what_the_refusal_suggests_fits(monkeypatch):
    on_a_machine_with(monkeypatch, 24)
    message = memory.check(BIG)
    batch = int(message.split("batch size to ")[1].split()[0])
    seq_len = int(message.split("sequence length to ")[1].split()[0])
    assert 1 <= batch < BIG.batch_size and 1 <= seq_len < BIG.seq_len
    for smaller in (BIG.replace(batch_size=batch), BIG.replace(seq_len=seq_len)):
        assert memory.check(smaller) is None and memory.warning(smaller) is None
    # One more row or timestep is over the comfortable share again.
    assert memory.estimate_bytes(BIG.replace(batch_size=batch + 1)) > memory.NEAR_FRACTION * 24 * GB


def test_the_default_configuration_passes(monkeypatch):
    on_a_machine_with(monkeypatch, 24)
    assert memory.check(RunConfig()) is None
    assert memory.warning(RunConfig()) is None
    # About the base: the interpreter and torch, a few MB of training.
    assert memory.BASE_BYTES <= memory.estimate_bytes(RunConfig()) < memory.BASE_BYTES + 50 * 2**20


def test_near_the_limit_is_a_one_line_warning(monkeypatch):
    config = BIG.replace(batch_size=500)
    need = memory.estimate_bytes(config)
    on_a_machine_with(monkeypatch, need / GB / 0.8)            # 80% of what is there
    assert memory.check(config) is None
    message = memory.warning(config)
    assert message is not None and "\n" not in message
    assert "80%" in message and memory.human_bytes(need) in message
    on_a_machine_with(monkeypatch, need / GB / 0.5)            # 50%: nothing to say
    assert memory.check(config) is None and memory.warning(config) is None


def test_an_unknown_amount_of_memory_or_a_gpu_refuses_nothing(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    assert memory.check(HUGE) is None and memory.warning(HUGE) is None
    on_a_machine_with(monkeypatch, 24)
    assert memory.check(HUGE.replace(device="cuda")) is None


def test_the_estimate_grows_with_every_size():
    base = RunConfig(seq_len=100, hidden=64, batch_size=64, layers=2)
    low = memory.estimate_bytes(base)
    for change in ({"seq_len": 200}, {"hidden": 128}, {"batch_size": 128}, {"layers": 3},
                   {"bidirectional": True}, {"dtype": "float64"}):
        assert memory.estimate_bytes(base.replace(**change)) > low, change
    # The rows dominate a big run: twice the batch, about twice the memory above the base.
    big = RunConfig(seq_len=500, hidden=128, batch_size=512)
    above = memory.estimate_bytes(big) - memory.BASE_BYTES
    twice = memory.estimate_bytes(big.replace(batch_size=1024)) - memory.BASE_BYTES
    assert 1.9 < twice / above < 2.1


def test_the_pytorch_loops_are_estimated_as_the_environment_chooses(monkeypatch):
    gru = RunConfig(cell="gru", seq_len=200, batch_size=300, hidden=48)
    compiled = memory.estimate_bytes(gru, compiled=True)
    pytorch = memory.estimate_bytes(gru, compiled=False)
    assert pytorch > compiled
    monkeypatch.setenv("GRADVIZ_NATIVE", "0")
    assert memory.estimate_bytes(gru) == pytorch
    monkeypatch.delenv("GRADVIZ_NATIVE")
    assert memory.estimate_bytes(gru) == compiled


def test_the_task_sizes_are_the_tasks_own():
    from gradviz.engine.tasks import make_task

    text = "the quick brown fox jumps over the lazy dog. " * 20
    for task in TASKS:
        for seq_len in (4, 50):
            config = RunConfig(task=task, seq_len=seq_len,
                               text_file="x.txt" if task == "text" else None)
            made = make_task(config, text if task == "text" else None)
            positions = len(range(seq_len)[made.loss_positions])
            assert memory.task_sizes(config, text) == (made.input_size, made.output_size,
                                                       positions), (task, seq_len)


def test_a_large_vocabulary_is_counted():
    config = RunConfig(task="text", text_file="x.txt", seq_len=200, batch_size=256)
    latin = "abcdefghij" * 100
    chinese = "".join(chr(0x4E00 + i) for i in range(3000))
    assert memory.estimate_bytes(config, chinese) > memory.estimate_bytes(config, latin) + GB


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="no /proc/meminfo")
def test_available_memory_is_read_from_the_system():
    have = memory.available_bytes()
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert have is not None and 0 < have <= physical


def test_sizes_are_said_as_people_say_them():
    assert memory.human_bytes(850 * 2**20) == "850 MB"
    assert memory.human_bytes(3.24 * GB) == "3.2 GB"
    assert memory.human_bytes(31.4 * GB) == "31 GB"
    assert memory.human_bytes(12 * 2**40) == "12 TB"
    assert memory.human_bytes(512) == "512 bytes"


def test_asking_imports_no_torch():
    # The window asks before a training process exists, and the window has no torch.
    code = ("import sys; from gradviz.config import RunConfig; from gradviz.engine.training import memory; "
            "memory.check(RunConfig()); memory.warning(RunConfig()); "
            "print(sorted(m for m in ('torch', 'PyQt6', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"
