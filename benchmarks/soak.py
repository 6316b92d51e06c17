"""Does memory stay flat over a long run? Resident memory (RSS) of a long training run.

Two parts, each in a fresh process of its own so neither inherits the other's memory:

  * headless: the engine as the app's training process uses it (one torch thread, the
    process tuned by ``prepare_training_process``), a :class:`Trainer` whose captures go
    into a :class:`History` of the window's capacity; a full capture every ~30 ms, light
    ones between, as the worker asks for them. RSS is read every 10% of the steps.
  * window: the real main window (offscreen) with its real training process, training
    for ``--gui-minutes``; RSS of both processes at the start, after a warm-up that
    fills the window's history, every minute, and at the end.

    python benchmarks/soak.py                  # 100,000 steps, then 10 minutes of the window
    python benchmarks/soak.py --quick          # 10,000 steps and 1 minute: a check that it runs
    python benchmarks/soak.py --gui-minutes 0  # the headless part only

The last line is ``rss growth MB: X``: the headless RSS at the end of the run minus the
RSS after the first 10% of its steps.
"""
from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL_EVERY_S = 0.03   # as often as the worker ends a message with a full capture


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process in MB (VmRSS); the peak of this process where there
    is no /proc."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    if pid != "self":
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0


def headless(config_dict: dict, steps: int, results) -> None:
    """Child process: train ``steps`` steps; report (step, RSS) every 10% of them."""
    from gradviz.engine.training.train import Trainer, prepare_training_process, set_training_threads
    prepare_training_process()
    set_training_threads(1)
    from gradviz.config import RunConfig
    from gradviz.engine.runs.history import History
    from gradviz.ui.state import HISTORY_CAPACITY  # Qt is loaded before the first reading

    trainer = Trainer(RunConfig.from_dict(config_dict))
    history = History(HISTORY_CAPACITY)
    latest = None
    every = max(1, steps // 10)
    last_full = 0.0
    started = time.monotonic()
    results.put(("row", 0, rss_mb(), 0, 0.0))
    for step in range(1, steps + 1):
        now = time.monotonic()
        full = now - last_full >= FULL_EVERY_S
        capture = trainer.step(full=full)
        if capture is not None:
            history.append(capture)
            if full:
                latest, last_full = capture, now
        if step % every == 0:
            gc.collect()
            results.put(("row", step, rss_mb(), len(history),
                         step / (time.monotonic() - started)))
    assert latest is not None and history.latest is latest
    results.put(("done",))


def window(config_dict: dict, minutes: float, warmup_s: float, results) -> None:
    """Child process: the main window training for ``minutes``; report RSS rows."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6 import QtCore, QtWidgets

    from gradviz.config import RunConfig
    from gradviz.ui.prefs import Prefs
    from gradviz.ui.window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    settings = tempfile.mkdtemp(prefix="gradviz-soak-")
    win = MainWindow(RunConfig.from_dict(config_dict), Prefs(os.path.join(settings, "s.ini")))
    win.resize(1600, 1000)
    win.show()
    status: dict = {"step": 0}
    win.worker.status.connect(status.update)
    phase = {"name": "starting", "t0": 0.0, "next_row": 0.0}

    def row(label: str) -> None:
        elapsed = time.monotonic() - phase["t0"] if phase["t0"] else 0.0
        results.put(("row", label, elapsed, status["step"], len(win.history), rss_mb(),
                     rss_mb(win.worker.pid), len(gc.get_objects())))

    def tick() -> None:
        now = time.monotonic()
        if phase["name"] == "starting":
            if win.worker.state == "paused":
                gc.collect()
                row("start")
                phase.update(name="warm-up", t0=now)
                win.toggle_running()
        elif phase["name"] == "warm-up":
            if now - phase["t0"] >= warmup_s:
                gc.collect()
                row("warmed up")
                phase.update(name="training", next_row=now + 60.0)
        elif now - phase["t0"] >= warmup_s + minutes * 60.0:
            gc.collect()
            row("end")
            timer.stop()
            if win.worker.state != "running":
                results.put(("error", f"the training process is {win.worker.state}"))
            started = time.monotonic()
            win.close()
            results.put(("closed", time.monotonic() - started, win.worker.is_alive()))
            app.quit()
        elif now >= phase["next_row"]:
            row("")
            phase["next_row"] += 60.0

    timer = QtCore.QTimer()
    timer.timeout.connect(tick)
    timer.start(200)
    app.exec()
    shutil.rmtree(settings, ignore_errors=True)
    results.put(("done",))


def print_headless_row(step: int, rss: float, kept: int, speed: float) -> None:
    print(f"{step:>9}{rss:>10.1f}{kept:>8}{speed:>9.0f}", flush=True)


def print_window_row(label: str, elapsed: float, step: int, kept: int, gui: float,
                     worker: float, objects: int) -> None:
    print(f"{label:<10}{elapsed:>8.0f}{step:>10}{kept:>8}{gui:>10.1f}{worker:>11.1f}"
          f"{objects:>10}", flush=True)


def run_child(target, args: tuple, show) -> list[tuple]:
    """Run ``target(*args, results)`` in a spawned process; show and return its rows."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, results))
    process.start()
    rows = []
    while True:
        message = results.get()
        if message[0] == "done":
            break
        if message[0] == "error":
            raise RuntimeError(message[1])
        if message[0] == "closed":
            print(f"window closed in {message[1] * 1000:.0f} ms; training process "
                  f"{'still alive' if message[2] else 'gone'}", flush=True)
            continue
        rows.append(message[1:])
        show(*message[1:])
    process.join(30)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="10,000 steps and 1 minute of the window (about 2 minutes)")
    parser.add_argument("--steps", type=int, default=100_000, help="headless training steps")
    parser.add_argument("--gui-minutes", type=float, default=10.0,
                        help="minutes of training in the window (0: skip; default 10)")
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--seq-len", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    steps, minutes, warmup_s = args.steps, args.gui_minutes, 60.0
    if args.quick:
        steps, minutes, warmup_s = min(steps, 10_000), min(minutes, 1.0), 20.0

    from gradviz.config import RunConfig
    config = RunConfig(task="adding", cell=args.cell, seq_len=args.seq_len,
                       hidden=args.hidden, batch_size=args.batch_size)
    print(f"{config.cell}, T {config.seq_len}, hidden {config.hidden}, batch "
          f"{config.batch_size}, adding problem; {os.cpu_count()} CPUs; RSS in MB")

    print(f"\nheadless: {steps} steps")
    print(f"{'step':>9}{'RSS':>10}{'rows':>8}{'steps/s':>9}")
    rows = run_child(headless, (config.to_dict(), steps), print_headless_row)
    early = next(r for r in rows if r[0] >= steps // 10)
    last = rows[-1]

    gui = []
    if minutes > 0:
        print(f"\nwindow: {warmup_s:g} s warm-up, then {minutes:g} min of training")
        print(f"{'':<10}{'s':>8}{'step':>10}{'rows':>8}{'GUI RSS':>10}{'worker RSS':>11}"
              f"{'objects':>10}")
        gui = run_child(window, (config.to_dict(), minutes, warmup_s), print_window_row)

    print()
    print(f"headless RSS at step {early[0]}: {early[1]:.1f} MB")
    print(f"headless RSS at step {last[0]}: {last[1]:.1f} MB")
    if gui:
        warm = next(r for r in gui if r[0] == "warmed up")
        end = gui[-1]
        print(f"window RSS after warm-up / at the end: GUI {warm[4]:.1f} / {end[4]:.1f} MB, "
              f"worker {warm[5]:.1f} / {end[5]:.1f} MB over {end[1]:.0f} s, "
              f"{end[2] - warm[2]} steps")
        print(f"window rss growth MB: GUI {end[4] - warm[4]:.1f}, worker {end[5] - warm[5]:.1f}")
    print(f"rss growth MB: {last[1] - early[1]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
