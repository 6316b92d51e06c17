"""How the window holds up while the largest preset trains.

Measures, with the real window on the offscreen platform:
  * event-loop latency: a 10 ms timer notes how late each of its ticks fires (p50, p99);
  * training speed with the window open, divided by the speed of the same configuration
    trained headless in a child process with one torch thread, for the same duration;
  * the median time to redraw every view from a synthetic history of 2000 captured rows
    of 1000 timesteps.

    python benchmarks/gui_latency.py [--seconds 20] [--comparisons 4]

With ``--comparisons N`` the window shows N comparison runs behind the live one while it
trains (each a record of 2000 steps of the preset's shape with 256 keyframes, as a run
kept from an earlier model holds), with the gradient-flow and gate heatmaps stacking the
newest of them.

The last line printed is exactly ``p99 latency ms: X``.
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The largest demo model (the preset file it was read from went with the Presets menu).
LARGEST = {"task": "adding", "seq_len": 200, "cell": "lstm", "hidden": 128, "layers": 2,
           "batch_size": 32, "forget_bias": 1.0}
WARMUP_S = 3.0


def headless_steps_per_s(config_dict: dict, seconds: float, results) -> None:
    """Child process: train headless with one thread; put steps/s after a warm-up."""
    from gradviz.engine.training.train import Trainer, prepare_training_process, set_training_threads
    prepare_training_process()
    set_training_threads(1)
    from gradviz.config import RunConfig

    trainer = Trainer(RunConfig.from_dict(config_dict))
    started = time.monotonic()
    while time.monotonic() - started < WARMUP_S:
        trainer.step()
    first, started = trainer.step_index, time.monotonic()
    while time.monotonic() - started < seconds:
        trainer.step()
    results.put((trainer.step_index - first) / (time.monotonic() - started))


def measure_headless(config_dict: dict, seconds: float) -> float:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=headless_steps_per_s, args=(config_dict, seconds, results))
    process.start()
    value = results.get(timeout=seconds + WARMUP_S + 120)
    process.join(10)
    return value


def comparison_runs(config, count: int, rows: int = 2000, seed: int = 0) -> list:
    """``count`` runs with ``rows`` recorded steps of ``config``'s shape, full captures at
    their last 256 steps (kept as keyframes), the losses and norms varied."""
    from gradviz.engine.training.train import Trainer
    from gradviz.ui.state import ShownRun

    template = Trainer(config).step()
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(count):
        run = ShownRun(config)
        for step in range(rows):
            scale = rng.lognormal(0.0, 1.0, size=template.dh_norm.shape).astype(np.float32)
            capture = dataclasses.replace(template, step=step, loss=float(rng.random()),
                                          grad_norm=float(rng.lognormal()),
                                          dh_norm=template.dh_norm * scale)
            run.append([capture if step >= rows - 256 else capture.light()])
        runs.append(run)
    return runs


def measure_window(config_dict: dict, seconds: float,
                   comparisons: int = 0) -> tuple[np.ndarray, float]:
    """Latencies (ms) of a 10 ms timer and training steps/s while the preset trains, with
    ``comparisons`` comparison runs on screen."""
    from PyQt6 import QtCore, QtWidgets

    from gradviz.config import RunConfig
    from gradviz.ui.prefs import Prefs
    from gradviz.ui.window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    settings = tempfile.mkdtemp(prefix="gradviz-bench-")
    window = MainWindow(RunConfig.from_dict(config_dict), Prefs(os.path.join(settings, "s.ini")))
    window.resize(1600, 1000)
    window.show()
    for run in comparison_runs(RunConfig.from_dict(config_dict), comparisons):
        window.state.add_comparison(run)
    if comparisons:
        for key in ("gradflow", "gates"):
            window.views[key].compare_box.setChecked(True)

    def wait(predicate, timeout_s: float) -> None:
        """Run the event loop (as the app's exec() would, no busy polling) until
        ``predicate()`` holds."""
        loop = QtCore.QEventLoop()
        check = QtCore.QTimer()
        check.timeout.connect(lambda: predicate() and loop.quit())
        check.start(50)
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError("the training process did not start")
            loop.exec()
        check.stop()

    wait(lambda: window.worker.state == "paused", 120)
    status: dict = {}
    window.worker.status.connect(status.update)
    window.toggle_running()
    wait(lambda: status.get("step", 0) > 0, 60)
    end_warmup = time.monotonic() + WARMUP_S
    wait(lambda: time.monotonic() > end_warmup, WARMUP_S + 5)

    lateness: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        lateness.append((now - last[0]) * 1000.0 - 10.0)
        last[0] = now

    timer = QtCore.QTimer()
    timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
    timer.timeout.connect(tick)
    first_step, started = status["step"], time.monotonic()
    last[0] = time.perf_counter()
    timer.start(10)
    wait(lambda: time.monotonic() - started > seconds, seconds + 5)
    timer.stop()
    steps_per_s = (status["step"] - first_step) / (time.monotonic() - started)
    window.close()
    return np.maximum(np.array(lateness), 0.0), steps_per_s


def synthetic_redraw_ms(rows: int = 2000, seq_len: int = 1000, repeats: int = 25) -> float:
    """Median time (ms) to redraw and paint every view after one new capture, with
    ``rows`` captured rows of ``seq_len`` timesteps in the history."""
    from PyQt6 import QtWidgets

    from gradviz.config import RunConfig
    from gradviz.engine.runs.history import History
    from gradviz.engine.training.train import Trainer
    from gradviz.ui.views import make_views

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    trainer = Trainer(RunConfig(task="adding", seq_len=seq_len, cell="lstm", hidden=32,
                                batch_size=8))
    template = trainer.step()
    rng = np.random.default_rng(0)
    history = History(4096)

    def row(step: int, full: bool):
        scale = rng.lognormal(0.0, 1.0, size=template.dh_norm.shape).astype(np.float32)
        capture = dataclasses.replace(template, step=step, loss=float(rng.random()),
                                      dh_norm=template.dh_norm * scale)
        return capture if full else capture.light()

    for step in range(rows - 1):
        history.append(row(step, False))
    history.append(row(rows - 1, True))

    board = QtWidgets.QWidget()
    grid = QtWidgets.QGridLayout(board)
    views = [v for k, v in make_views().items() if k != "text"]
    for i, view in enumerate(views):
        grid.addWidget(view, i // 3, i % 3)
    board.resize(1600, 1000)
    board.show()
    app.processEvents()
    times = []
    for i in range(repeats):
        latest = row(rows + i, True)
        history.append(latest)
        started = time.perf_counter()
        for view in views:
            view.set_data(history, latest)
        board.repaint()
        times.append(time.perf_counter() - started)
    board.close()
    return statistics.median(times) * 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="how long each measurement runs (default 20)")
    parser.add_argument("--comparisons", type=int, default=0,
                        help="comparison runs on screen while the preset trains (default 0)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from gradviz.config import RunConfig
    config = RunConfig(**LARGEST).to_dict()

    headless = measure_headless(config, args.seconds)
    lateness, with_window = measure_window(config, args.seconds, args.comparisons)
    redraw_ms = synthetic_redraw_ms()
    p50, p99 = np.percentile(lateness, [50, 99])
    c = config
    print(f"preset largest: {c['cell']}, {c['layers']} layers, hidden {c['hidden']}, "
          f"T {c['seq_len']}, batch {c['batch_size']}; {args.seconds:g} s each; "
          f"{os.cpu_count()} CPUs; {args.comparisons} comparison runs on screen")
    rows = [
        ("event-loop latency p50 (10 ms timer)", f"{p50:.2f} ms"),
        ("event-loop latency p99", f"{p99:.2f} ms"),
        ("timer ticks", f"{len(lateness)}"),
        ("steps/s, window open", f"{with_window:.2f}"),
        ("steps/s, headless (1 thread)", f"{headless:.2f}"),
        ("window / headless", f"{with_window / headless:.2f}"),
        ("redraw, all views, 2000 rows x T 1000 (median)", f"{redraw_ms:.1f} ms"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>10}")
    print(f"p99 latency ms: {p99:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
