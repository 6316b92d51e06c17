"""How long the app takes from launch to its window, and to its first gradient curves.

Launches the real app (``gradviz``, the same ``gradviz.cli.main`` the command runs) in a
fresh Python process, several times, with Space pressed as soon as the window is shown,
and prints for each launch and as the median (and the best, the figure least disturbed
by other work on a shared machine):

  * window: seconds from launch (just before the process is started) to the main
    window's first paint;
  * capture: seconds from launch to the first paint after the views drew the first
    capture (the first gradient curves on screen).

    python benchmarks/startup.py [--launches 5] [--platform offscreen|xcb]

The compiled loops are built (and, since the self-check is kept per build, checked) by a
first launch that is not counted, so the launches measure what a user sees every day, not
the first run after an install. Each launch uses settings of its own in a temporary
folder (the default experiment), so the user's settings are neither read nor changed.
With ``--platform xcb`` it needs a display (``DISPLAY``, e.g. Xvfb).

The last line printed is exactly ``median first capture s: X``.
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A launch that has drawn nothing after this long is reported as failed.
LAUNCH_TIMEOUT_S = 60.0


def child(launched: float, root: Path) -> int:
    """In the launched process: run the app as ``gradviz`` does, press Space when the
    window is first shown, note the times, close it after the first capture is drawn,
    and print them as one JSON line."""
    sys.path.insert(0, str(root))
    from PyQt6 import QtCore, QtGui, QtWidgets

    import gradviz.cli
    from gradviz.ui import window as window_module

    times: dict = {}
    original_show = window_module.MainWindow.show

    class Watch(QtCore.QObject):
        def __init__(self, window):
            super().__init__(window)
            self.window = window
            self.drawn = False

        def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
            if event.type() == QtCore.QEvent.Type.Paint and isinstance(obj, QtWidgets.QWidget) \
                    and obj.window() is self.window:
                now = time.monotonic()
                if "window" not in times:
                    times["window"] = now - launched
                    QtCore.QTimer.singleShot(0, self.press_space)
                elif self.drawn and "capture" not in times:
                    times["capture"] = now - launched
                    # The window's process needs no PyTorch (its import took ~1 s).
                    times["torch_in_window"] = "torch" in sys.modules
                    QtCore.QTimer.singleShot(0, self.window.act_quit.trigger)   # Ctrl+Q
            return False

        def press_space(self) -> None:
            window = self.window
            target = QtWidgets.QApplication.focusWidget() or window
            press = QtGui.QKeyEvent(QtCore.QEvent.Type.KeyPress, QtCore.Qt.Key.Key_Space,
                                    QtCore.Qt.KeyboardModifier.NoModifier, " ")
            QtWidgets.QApplication.sendEvent(target, press)
            times["space_started"] = window.state.running
            if not window.state.running:     # the key did not reach the shortcut
                window.act_run.trigger()

        def after_tick(self) -> None:
            scheduler = self.window.scheduler
            if not self.drawn and len(self.window.state.live.history) and scheduler.last_tick:
                self.drawn = True
                self.window.update()          # the paint that shows it

    def show(window) -> None:
        original_show(window)
        watch = Watch(window)
        QtWidgets.QApplication.instance().installEventFilter(watch)
        window.scheduler.timer.timeout.connect(watch.after_tick)
        times["pid"] = window.worker.pid
        QtCore.QTimer.singleShot(int(LAUNCH_TIMEOUT_S * 1000), window.close)

    window_module.MainWindow.show = show
    sys.argv = ["gradviz"]
    script = Path(sys.executable).with_name("gradviz")
    try:
        if script.is_file():
            # As the command runs it: its training process then imports the same __main__.
            runpy.run_path(str(script), run_name="__main__")
            status = 0
        else:
            status = gradviz.cli.main([])
    except SystemExit as exc:
        status = exc.code
    times["status"] = status
    print("STARTUP " + json.dumps(times), flush=True)
    return status


def launch(platform: str, settings: Path, root: Path = ROOT) -> dict:
    """One launch of the app (gradviz imported from ``root``) in a new process: its times,
    and whether its training process was gone when it had exited."""
    env = dict(os.environ, QT_QPA_PLATFORM=platform, GRADVIZ_SETTINGS=str(settings),
               PYTHONPATH=str(root))
    launched = time.monotonic()
    done = subprocess.run([sys.executable, __file__, "--child", repr(launched),
                           "--root", str(root)], env=env,
                          capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S + 30)
    lines = [line for line in done.stdout.splitlines() if line.startswith("STARTUP ")]
    if not lines:
        raise SystemExit(f"launch failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    times = json.loads(lines[-1][len("STARTUP "):])
    if "capture" not in times:
        raise SystemExit(f"no capture was drawn within {LAUNCH_TIMEOUT_S:.0f} s:\n"
                         f"{done.stderr[-2000:]}")
    times["leftover"] = _alive(times.get("pid"))
    return times


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not a leftover of ours once its parent is gone, but say so anyway.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=5)
    parser.add_argument("--platform", default="offscreen", choices=("offscreen", "xcb"))
    parser.add_argument("--baseline", type=Path, metavar="TREE",
                        help="another checkout of gradviz (e.g. before a change): its "
                             "launches alternate with this one's, and the ratios are printed")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child is not None:
        return child(ns.child, ns.root)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.2f}, platform {ns.platform}")
    trees = {"this": ROOT} if ns.baseline is None else {"baseline": ns.baseline.resolve(),
                                                         "this": ROOT}
    rows: dict[str, list[dict]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as folder:
        for name, root in trees.items():      # builds the compiled loops once, not counted
            launch(ns.platform, Path(folder) / "warm.ini", root)
        for i in range(ns.launches):
            for name, root in trees.items():
                times = launch(ns.platform, Path(folder) / f"settings-{name}-{i}.ini", root)
                rows[name].append(times)
                print(f"launch {i + 1}{f' ({name})' if len(trees) > 1 else ''}: window "
                      f"{times['window']:.2f} s, first capture {times['capture']:.2f} s"
                      + ("  (training process left running!)" if times["leftover"] else ""),
                      flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    medians = {}
    for name, runs in rows.items():
        windows, captures = [r["window"] for r in runs], [r["capture"] for r in runs]
        medians[name] = statistics.median(windows), statistics.median(captures)
        label = f"{name}: " if len(trees) > 1 else ""
        print(f"{label}best: window {min(windows):.2f} s, first capture {min(captures):.2f} s")
        print(f"{label}median: window {medians[name][0]:.2f} s, first capture "
              f"{medians[name][1]:.2f} s")
    if len(trees) > 1:
        print(f"this / baseline, medians: window {medians['this'][0] / medians['baseline'][0]:.2f},"
              f" first capture {medians['this'][1] / medians['baseline'][1]:.2f}")
    print(f"median first capture s: {medians['this'][1]:.2f}")
    return 1 if any(r["leftover"] for runs in rows.values() for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
