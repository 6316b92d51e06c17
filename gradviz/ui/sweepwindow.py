"""The app's sweep window: the Sweep view of one sweep folder, a dialog that starts a new
sweep (the grid, and an estimate of its time), and the ``gradviz sweep`` process that runs
it, whose progress line is shown below the figure. The figure fills in as runs finish.

The sweep runs as a separate ``gradviz sweep`` command (a child process of the app), so
closing the window does not lose its finished runs, and the same command resumes it.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from PyQt6 import QtCore, QtWidgets

from gradviz.config import RunConfig
from gradviz.registry import CELLS
from gradviz.engine.tasks.success import CRITERIA
from gradviz.progress import clock
from gradviz.sweep.estimate import sweep_seconds
from gradviz.sweep.executors import cores
from gradviz.sweep.grid import Grid, GridError, parse_value
from gradviz.ui import export
from gradviz.ui.sweepview import SweepView


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.replace(" ", "").split(",") if t]


class NewSweepDialog(QtWidgets.QDialog):
    """The grid of a new sweep: task, cells, lengths, seeds, steps, one varied setting,
    workers and folder, with the time it may take."""

    def __init__(self, parent=None, base: RunConfig | None = None, grid: dict | None = None):
        super().__init__(parent)
        self.setWindowTitle("gradviz: new sweep")
        base = base or RunConfig(lr=0.01, steps=2000)
        grid = grid or {"cells": ["rnn-tanh", "lstm", "gru"], "lengths": [10, 20, 50, 100],
                        "seeds": 4}
        self.base = base
        form = QtWidgets.QFormLayout(self)
        self.task = QtWidgets.QComboBox()
        self.task.addItems(list(CRITERIA))
        self.task.setCurrentText(base.task)
        form.addRow("Task", self.task)
        self.cells = {}
        box = QtWidgets.QHBoxLayout()
        for name in CELLS:
            check = QtWidgets.QCheckBox(name)
            check.setChecked(name in grid["cells"])
            box.addWidget(check)
            self.cells[name] = check
        form.addRow("Cells", box)
        self.lengths = QtWidgets.QLineEdit(",".join(str(t) for t in grid["lengths"]))
        form.addRow("Lengths T", self.lengths)
        self.seeds = QtWidgets.QSpinBox(minimum=1, maximum=1000, value=grid["seeds"])
        form.addRow("Seeds", self.seeds)
        self.steps = QtWidgets.QSpinBox(minimum=1, maximum=10**7, value=base.steps)
        form.addRow("Steps per run", self.steps)
        vary = grid.get("vary") or []
        self.vary = QtWidgets.QLineEdit(
            ";".join(f"{n}={','.join(str(v) for v in values)}" for n, values in vary))
        self.vary.setPlaceholderText("e.g. clip=none,norm (optional)")
        form.addRow("Vary", self.vary)
        self.workers = QtWidgets.QSpinBox(minimum=1, maximum=1024, value=cores())
        form.addRow("Runs at once", self.workers)
        self.folder = QtWidgets.QLineEdit(os.path.abspath(os.path.join("sweeps", "sweep")))
        form.addRow("Folder", self.folder)
        self.estimate = QtWidgets.QLabel()
        self.estimate.setWordWrap(True)
        form.addRow(self.estimate)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok).setText("Start")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok = buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok)
        form.addRow(buttons)
        for widget in (self.lengths, self.vary):
            widget.textChanged.connect(self.update_estimate)
        for widget in (self.seeds, self.steps, self.workers):
            widget.valueChanged.connect(self.update_estimate)
        self.task.currentTextChanged.connect(self.update_estimate)
        for check in self.cells.values():
            check.toggled.connect(self.update_estimate)
        self.update_estimate()

    def grid(self) -> Grid:
        """The grid asked for; GridError naming the field otherwise."""
        try:
            lengths = _ints(self.lengths.text())
        except ValueError:
            raise GridError("--lengths", "give whole numbers separated by commas") from None
        vary = []
        for item in filter(None, (v.strip() for v in self.vary.text().split(";"))):
            name, _, values = item.partition("=")
            name = name.strip().replace("-", "_")
            vary.append((name, tuple(parse_value(name, v) for v in values.split(",") if v)))
        base = self.base.replace(task=self.task.currentText(), steps=self.steps.value())
        return Grid(base, tuple(n for n, c in self.cells.items() if c.isChecked()),
                    tuple(lengths), self.seeds.value(), tuple(vary))

    def update_estimate(self) -> None:
        try:
            grid = self.grid()
        except (GridError, ValueError) as exc:
            self.estimate.setText(f"Cannot start: {exc}")
            self.ok.setEnabled(False)
            return
        runs = len(grid.runs())
        seconds = sweep_seconds(grid, self.workers.value())
        self.estimate.setText(f"{runs} runs: about {clock(seconds)} (h:mm:ss) with "
                              f"{self.workers.value()} at once on an idle machine if every "
                              "run trains its whole budget; runs that solve the task stop "
                              "early, a busy machine is slower")
        self.ok.setEnabled(True)

    def command(self) -> list[str]:
        """The ``gradviz sweep`` arguments of this grid."""
        grid = self.grid()
        args = ["sweep", "--out", self.folder.text(), "--workers", str(self.workers.value()),
                "--cells", ",".join(grid.cells),
                "--lengths", ",".join(str(t) for t in grid.lengths),
                "--seeds", str(grid.seeds)]
        defaults = RunConfig()
        for key, value in grid.base.to_dict().items():
            if key in ("cell", "seq_len", "seed", "capture_every") or value == getattr(defaults, key):
                continue
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + key.replace("_", "-"))
            else:
                args += [flag, "none" if value is None else str(value)]
        for name, values in grid.vary:
            args += ["--vary", f"{name}=" + ",".join("none" if v is None else str(v)
                                                     for v in values)]
        return args


class SweepWindow(QtWidgets.QMainWindow):
    """The Sweep view with its folder, the running sweep's progress and its exports."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("gradviz: sweep")
        self.view = SweepView(self)
        self.status = QtWidgets.QLabel("Open a sweep folder, or start a new sweep.")
        central = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(central)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.status)
        self.setCentralWidget(central)
        bar = self.addToolBar("Sweep")
        bar.addAction("New sweep…", self.new_sweep)
        bar.addAction("Open sweep folder…", self.ask_folder)
        for suffix in ("png", "svg", "csv"):
            bar.addAction(f"Export {suffix.upper()}…",
                          lambda s=suffix: self.export(s))
        self.process = QtCore.QProcess(self)
        self.process.setProcessChannelMode(QtCore.QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read_output)
        self.process.finished.connect(self._finished)
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.stop_sweep)
        self.resize(1000, 650)

    def stop_sweep(self) -> None:
        """Stop a running sweep as Ctrl-C would: its pool ends, its finished rows stay, and
        its command resumes it. (Destroying a running QProcess would kill it outright.)"""
        if self.process.state() == QtCore.QProcess.ProcessState.NotRunning:
            return
        pid = self.process.processId()
        try:
            os.kill(pid, signal.SIGINT)
        except (OSError, AttributeError):
            self.process.terminate()
        if not self.process.waitForFinished(10000):
            self.process.kill()
            self.process.waitForFinished(2000)

    def open_folder(self, folder: str) -> bool:
        try:
            self.view.open_folder(folder)
        except GridError as exc:
            QtWidgets.QMessageBox.warning(self, "gradviz: not a sweep", str(exc))
            return False
        self.status.setText(f"Sweep in {folder}")
        return True

    def ask_folder(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Open sweep folder")
        if folder:
            self.open_folder(folder)

    def new_sweep(self, base: RunConfig | None = None, grid: dict | None = None) -> None:
        if self.process.state() != QtCore.QProcess.ProcessState.NotRunning:
            QtWidgets.QMessageBox.information(self, "gradviz: sweep running",
                                              "A sweep is running; wait for it to finish.")
            return
        dialog = NewSweepDialog(self, base, grid)
        if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
            return
        self.start(dialog.command(), dialog.folder.text())

    def start(self, args: list[str], folder: str) -> None:
        """Run ``gradviz sweep ARGS`` and follow ``folder``."""
        environment = QtCore.QProcessEnvironment.systemEnvironment()
        self.process.setProcessEnvironment(environment)
        self.process.start(sys.executable, ["-m", "gradviz", *args])
        self.status.setText("Starting the sweep…")
        self._folder = folder
        QtCore.QTimer.singleShot(1500, self._follow)

    def _follow(self) -> None:
        running = self.process.state() != QtCore.QProcess.ProcessState.NotRunning
        if not running and self.process.exitCode() != 0:
            return                     # refused: its one line is in the status bar
        if (Path(self._folder) / "sweep.json").exists():
            self.view.open_folder(self._folder)
        elif self.process.state() != QtCore.QProcess.ProcessState.NotRunning:
            QtCore.QTimer.singleShot(1000, self._follow)

    def _read_output(self) -> None:
        text = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        lines = [t.strip() for t in text.replace("\r", "\n").splitlines() if t.strip()]
        if lines:
            self.status.setText(lines[-1])

    def _finished(self, code: int, _status) -> None:
        self.view.refresh()
        if code != 0:
            self.status.setText(self.status.text() + f"  (the sweep ended with status {code})")

    def export(self, suffix: str) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, f"Export the sweep ({suffix.upper()})", f"sweep.{suffix}",
            export.file_filter(f".{suffix}"))
        if not path:
            return
        if not path.lower().endswith(f".{suffix}"):
            path += f".{suffix}"
        try:
            self.view.save(path)
        except export.ExportError as exc:
            QtWidgets.QMessageBox.warning(self, "gradviz: export failed", str(exc))
            return
        self.status.setText(f"Exported {path}")

    def closeEvent(self, event) -> None:
        # The sweep goes on headless: its rows are written as runs finish either way.
        self.view.timer.stop()
        super().closeEvent(event)


def show_sweep_window(parent: QtWidgets.QWidget, experiment: str | None = None) -> SweepWindow:
    """The app's sweep window (one per main window), shown; with ``experiment`` (a sweep
    experiment's name) the new-sweep dialog opens on its grid."""
    window = getattr(parent, "_sweep_window", None)
    if window is None:
        window = parent._sweep_window = SweepWindow(parent)
        window.setWindowFlag(QtCore.Qt.WindowType.Window)
    window.show()
    window.raise_()
    if experiment is not None:
        from gradviz.sweep.experiments import sweep_experiment
        found = sweep_experiment(experiment)
        window.new_sweep(found.base, found.grid)
    return window


def add_sweep_actions(window: QtWidgets.QMainWindow, menu: QtWidgets.QMenu) -> None:
    """The Experiments menu's sweeps: each sweep experiment, and the sweep window."""
    from gradviz.sweep.experiments import SWEEP_EXPERIMENTS

    menu.addSection("Sweeps: many runs, one curve")
    for name, experiment in SWEEP_EXPERIMENTS.items():
        action = menu.addAction(experiment.title + "…")
        action.setToolTip(f"{experiment.watch}\n\nExpected: {experiment.expected}\n"
                          f"Source: {experiment.source}")
        action.triggered.connect(
            lambda _checked=False, n=name: show_sweep_window(window, n))
    action = menu.addAction("Sweep window (new sweep, open a sweep folder)…")
    action.triggered.connect(lambda _checked=False: show_sweep_window(window))


__all__ = ["NewSweepDialog", "SweepWindow", "show_sweep_window", "add_sweep_actions"]
