"""The main window: control panel on the left, every view at once on the right.

Training runs in a :class:`~gradviz.ui.worker.TrainingWorker` process. Captures that
arrive go into a bounded :class:`~gradviz.engine.record.History`; the views redraw on the
window's own ~30 Hz clock, and only when something new arrived (DESIGN.md, rule 3).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.config import LIVE_FIELDS, ConfigError, RunConfig, structural_change
from gradviz.engine.record import History, RunFileError, load_run, save_run
from gradviz.ui.controls import ControlPanel
from gradviz.ui.export import ExportError, write_bytes
from gradviz.ui.prefs import Prefs
from gradviz.ui.views import make_views
from gradviz.ui.worker import TrainingWorker

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
HISTORY_CAPACITY = 4096
REDRAW_MS = 33
# The redraw timer's lateness that makes fewer (more) views draw per tick.
LATE_HIGH_MS = 20.0
LATE_LOW_MS = 6.0
# A number of views per tick that made a tick late is not tried again for this long:
# probing it every few ticks kept ~5% of ticks late with the largest preset.
RETRY_S = 10.0
GRID_COLUMNS = 3


def preset_paths() -> list[Path]:
    """The demo configurations shipped in resources/presets, by name."""
    return sorted((RESOURCES / "presets").glob("*.json"))


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, config: RunConfig | None = None, prefs: Prefs | None = None):
        super().__init__()
        self.prefs = prefs if prefs is not None else Prefs()
        self._config = config or self.prefs.load_config() or RunConfig()
        self.history = History(HISTORY_CAPACITY)
        self._latest = None         # newest full Capture
        self._stale: set[str] = set()  # keys of views that have not drawn the newest data
        self._running = False       # what the user asked for; follows the worker's reports
        self._loaded_run: str | None = None  # folder of an opened run being shown
        self._error_box: QtWidgets.QMessageBox | None = None

        self.controls = ControlPanel(self._config)
        self.controls.config_changed.connect(self.apply_config)
        self.views = make_views()
        self._views_per_tick = len(self.views)  # adapted to how long drawing takes
        self._last_drawn = 0
        self._too_many = (len(self.views) + 1, 0.0)  # views per tick found too slow, and when
        self._cursor = 0                        # where the round of views goes on
        self._last_tick: float | None = None
        self._build_layout()
        self._build_actions()
        self._build_status_bar()

        self.worker = TrainingWorker(self._config, self)
        self.worker.captures_ready.connect(self._on_captures)
        self.worker.status.connect(self._on_status)
        self.worker.text_ready.connect(self._on_text)
        self.worker.error.connect(self._on_error)
        self.worker.state_changed.connect(self._on_state)
        self.worker.ready.connect(self._on_ready)
        self.worker.note.connect(self._on_note)
        self.worker.notice.connect(lambda text: self.statusBar().showMessage(f"Note: {text}", 15000))
        self.worker.diverged.connect(self._on_diverged)

        self._redraw_timer = QtCore.QTimer(self)
        self._redraw_timer.timeout.connect(self.redraw)
        self._redraw_timer.start(REDRAW_MS)

        geometry = self.prefs.load_geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self._default_size()
        self._update_title()

    def _default_size(self) -> None:
        """90% of the screen but at least 1280 x 800 (the whole of a smaller screen) and
        at most 1920 x 1080: six plots need the room."""
        screen = self.screen().availableGeometry() if self.screen() else None
        if screen is None:
            self.resize(1280, 800)
            return
        self.resize(min(screen.width(), max(1280, min(1920, int(screen.width() * 0.9)))),
                    min(screen.height(), max(800, min(1080, int(screen.height() * 0.9)))))

    # -- building ---------------------------------------------------------------------
    def _build_layout(self) -> None:
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(self.controls)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self.controls.minimumSizeHint().width()
                               + scroll.verticalScrollBar().sizeHint().width() + 4)

        grid_widget = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(grid_widget)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        self.panels = {key: self._panel(view) for key, view in self.views.items()}
        grid_views = [key for key in self.panels if key != "text"]
        for index, key in enumerate(grid_views):
            grid.addWidget(self.panels[key], index // GRID_COLUMNS, index % GRID_COLUMNS)
        for column in range(GRID_COLUMNS):
            grid.setColumnStretch(column, 1)
        plots = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(plots)
        column.setContentsMargins(2, 2, 2, 2)
        column.addWidget(grid_widget, 4)
        if "text" in self.panels:
            # Shown for language tasks only; while hidden it takes no room.
            column.addWidget(self.panels["text"], 1)
            self.panels["text"].hide()

        splitter = QtWidgets.QSplitter()
        splitter.addWidget(scroll)
        splitter.addWidget(plots)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setCollapsible(1, False)
        splitter.setSizes([scroll.minimumWidth(), 10 * scroll.minimumWidth()])
        self.setCentralWidget(splitter)

    @staticmethod
    def _panel(view) -> QtWidgets.QWidget:
        """The view under its title."""
        # A click on a plot takes the focus from the controls, so Space, S and R act on
        # the training instead of the last spin box the user typed in.
        view.setFocusPolicy(QtCore.Qt.FocusPolicy.ClickFocus)
        panel = QtWidgets.QWidget()
        # Equal shares of the grid, whatever each view's toolbar would like.
        panel.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                            QtWidgets.QSizePolicy.Policy.Ignored)
        layout = QtWidgets.QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        title = QtWidgets.QLabel(view.title)
        font = title.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.1)
        title.setFont(font)
        layout.addWidget(title)
        layout.addWidget(view, 1)
        return panel

    def _action(self, text: str, slot, shortcut=None, icon=None, tip: str = "") -> QtGui.QAction:
        action = QtGui.QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QtGui.QKeySequence(shortcut))
            action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work without the menu bar or toolbar visible
        return action

    def _build_actions(self) -> None:
        icons = QtWidgets.QStyle.StandardPixmap
        key = QtCore.Qt.Key
        self.act_run = self._action("Start", self.toggle_running, key.Key_Space,
                                    icons.SP_MediaPlay, "Start or pause training (Space)")
        self.act_step = self._action("Step", self.step_once, key.Key_S, icons.SP_MediaSkipForward,
                                     "Train one batch and pause (S)")
        self.act_reset = self._action("Reset", self.reset_training, key.Key_R,
                                      icons.SP_BrowserReload,
                                      "A fresh model with the same settings and seed (R)")
        self.act_open = self._action("Open run…", self.open_run_dialog,
                                     QtGui.QKeySequence.StandardKey.Open)
        self.act_save = self._action("Save run…", self.save_run_dialog,
                                     QtGui.QKeySequence.StandardKey.Save)
        self.act_dashboard = self._action("Export dashboard…", self.export_dashboard_dialog)
        self.act_quit = self._action("Quit", self.close, QtGui.QKeySequence.StandardKey.Quit)

        toolbar = self.addToolBar("Training")
        toolbar.setObjectName("training-toolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for action in (self.act_run, self.act_step, self.act_reset):
            toolbar.addAction(action)

        menu = self.menuBar().addMenu("&File")
        menu.addAction(self.act_open)
        menu.addAction(self.act_save)
        export_menu = menu.addMenu("Export")
        for key_, view in self.views.items():
            sub = export_menu.addMenu(view.title)
            for suffix in ("png", "svg", "csv"):
                action = sub.addAction(f"{suffix.upper()}…")
                action.triggered.connect(
                    lambda _checked=False, k=key_, s=suffix: self.export_view_dialog(k, s))
        menu.addAction(self.act_dashboard)
        menu.addSeparator()
        menu.addAction(self.act_quit)

        training = self.menuBar().addMenu("&Training")
        for action in (self.act_run, self.act_step, self.act_reset):
            training.addAction(action)

        presets = self.menuBar().addMenu("&Presets")
        for path in preset_paths():
            action = presets.addAction(path.stem)
            action.triggered.connect(lambda _checked=False, p=path: self.load_preset(p))

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.state_label = QtWidgets.QLabel("starting…")
        self.step_label = QtWidgets.QLabel("step 0")
        self.speed_label = QtWidgets.QLabel("0.0 steps/s")
        self.loss_label = QtWidgets.QLabel("loss –")
        for label in (self.state_label, self.step_label, self.speed_label, self.loss_label):
            label.setMinimumWidth(label.fontMetrics().horizontalAdvance("0000000 steps/s"))
            bar.addPermanentWidget(label)

    # -- training commands -------------------------------------------------------------
    @property
    def config(self) -> RunConfig:
        return self._config

    def toggle_running(self) -> None:
        if self._running:
            self.worker.pause()
            self._set_running(False)
        elif self._can_train():
            self._leave_loaded_run()
            self.worker.start()
            self._set_running(True)

    def step_once(self) -> None:
        if self._can_train():
            self._leave_loaded_run()
            self.worker.step()
            self._set_running(False)

    def _can_train(self) -> bool:
        if self.worker.state in ("error", "stopped"):
            self.statusBar().showMessage("Training stopped after an error: press Reset (R) "
                                         "to start again.", 8000)
            return False
        return True

    def reset_training(self, keep_running: bool = False) -> None:
        """A fresh model from the current settings (same seed); paused unless asked."""
        self.worker.reset(self._config)
        self._loaded_run = None
        self._clear_data()
        self._close_error()
        if keep_running:
            self.worker.start()
        self._set_running(keep_running)
        self._update_title()

    def apply_config(self, config: RunConfig) -> None:
        """New settings from the controls: a live change goes to the running model on its
        next step; anything else means a new model, restarted if it was running."""
        old, self._config = self._config, config
        self.prefs.save_config(config)
        if structural_change(old, config):
            self.reset_training(keep_running=self._running)
            return
        changes = {name: getattr(config, name) for name in LIVE_FIELDS
                   if getattr(config, name) != getattr(old, name)}
        if changes:
            self.worker.set_live(changes)

    def load_preset(self, path: str | os.PathLike) -> None:
        try:
            with open(path, encoding="utf-8") as handle:
                config = RunConfig.from_dict(json.load(handle))
        except (OSError, ValueError) as exc:
            self._warn("Preset not loaded", f"{path}: {exc}")
            return
        self.controls.set_config(config)
        self.apply_config(config)
        self.statusBar().showMessage(f"Preset {Path(path).stem}", 5000)

    def _leave_loaded_run(self) -> None:
        # The model behind an opened run is already fresh (reset when it was opened);
        # only the recorded curves have to go.
        if self._loaded_run is not None:
            self._loaded_run = None
            self._clear_data()
            self._update_title()

    def _clear_data(self) -> None:
        self.history.clear()
        self._latest = None
        self._stale.clear()
        for view in self.views.values():
            view.clear()
        self.step_label.setText("step 0")
        self.speed_label.setText("0.0 steps/s")
        self.loss_label.setText("loss –")

    def _set_running(self, running: bool) -> None:
        self._running = running
        icons = QtWidgets.QStyle.StandardPixmap
        self.act_run.setText("Pause" if running else "Start")
        self.act_run.setIcon(self.style().standardIcon(
            icons.SP_MediaPause if running else icons.SP_MediaPlay))

    # -- worker reports ----------------------------------------------------------------
    def _on_captures(self, captures: list) -> None:
        for capture in captures:
            self.history.append(capture)
            if not capture.is_light:
                self._latest = capture
            if capture.nonfinite or capture.events:
                # The engine's events name their step already.
                text = "; ".join(capture.events)
                self.statusBar().showMessage(
                    text[:1].upper() + text[1:] if text else
                    f"Step {capture.step}: loss or gradient not finite; step skipped", 8000)
        self._stale.update(self.views)

    def _on_status(self, status: dict) -> None:
        self.step_label.setText(f"step {status['step']}")
        self.speed_label.setText(f"{status['steps_per_s']:.1f} steps/s")
        self.loss_label.setText(f"loss {status['loss']:.4g}")

    def _on_text(self, text: str) -> None:
        view = self.views.get("text")
        if view is not None:
            view.set_text(text)

    def _on_ready(self, language: bool) -> None:
        if "text" in self.panels:
            self.panels["text"].setVisible(language)
        self.controls.set_text_note(None)  # a note, if the new model has one, follows

    def _on_note(self, note: str) -> None:
        self.controls.set_text_note(note)
        self.statusBar().showMessage(f"Note: {note}", 15000)

    def _on_state(self, state: str) -> None:
        self.state_label.setText("viewing saved run" if self._loaded_run and state == "paused"
                                 else state)
        if state in ("paused", "running", "error", "stopped"):
            self._set_running(state == "running")

    def _on_error(self, message: str, details: str) -> None:
        self._set_running(False)
        self.statusBar().showMessage(f"Training stopped: {message}")
        self._show_stop_box("gradviz: training stopped",
                            f"{message}\n\nChange the settings and press Reset (R) to start "
                            "again.", details)

    def _on_diverged(self, message: str, advice: str) -> None:
        """The run paused itself because training diverged (gradviz.engine.divergence)."""
        self._set_running(False)
        self.statusBar().showMessage("Training paused: it diverged (see the message)")
        self._show_stop_box("gradviz: training diverged",
                            f"{message}\n\n{advice}\n\nChange a setting, then press Reset (R) for "
                            "fresh weights; Start (Space) goes on with the weights as they are.")

    def _show_stop_box(self, title: str, text: str, details: str = "") -> None:
        """A non-modal message, with a Reset button, that training stopped and why."""
        self._close_error()
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, title, text,
                                    QtWidgets.QMessageBox.StandardButton.Close, self)
        reset = box.addButton("Reset", QtWidgets.QMessageBox.ButtonRole.ResetRole)
        reset.clicked.connect(self.reset_training)
        if details:
            box.setDetailedText(details)
        box.setWindowModality(QtCore.Qt.WindowModality.NonModal)
        box.finished.connect(lambda _result, b=box: self._forget_error(b))
        box.show()
        self._error_box = box

    def _forget_error(self, box: QtWidgets.QMessageBox) -> None:
        if self._error_box is box:
            self._error_box = None

    def _close_error(self) -> None:
        if self._error_box is not None:
            self._error_box.close()
            self._error_box = None

    @property
    def error_box(self) -> QtWidgets.QMessageBox | None:
        """The message box of the last training error or divergence, while it is open."""
        return self._error_box

    # -- drawing -----------------------------------------------------------------------
    def redraw(self) -> None:
        """Called by the ~30 Hz timer: views draw the newest data, if there is any.

        Drawing every view at once took up to ~200 ms for the largest models (2 layers,
        H 128, T 200, painted at 1600 x 1000), and the window froze for that long. So the
        views take turns: as many per tick as keep the timer on time, all of them when
        drawing is cheap, one when it is not.
        """
        now = time.perf_counter()
        if self._last_tick is not None:
            # How late this tick is tells what the views drawn by the last one cost,
            # painting included (Qt paints after the tick, when the loop is free again).
            late_ms = (now - self._last_tick) * 1000.0 - REDRAW_MS
            if late_ms > LATE_HIGH_MS:
                self._too_many = (self._last_drawn, now)
                self._views_per_tick = max(1, min(self._views_per_tick, self._last_drawn) - 1)
            elif late_ms < LATE_LOW_MS:
                more = self._views_per_tick + 1
                too_many, when = self._too_many
                visible = sum(view.isVisible() for view in self.views.values())
                if more <= visible and (more < too_many or now - when > RETRY_S):
                    self._views_per_tick = more
        drew = self._draw(self._views_per_tick)
        self._last_drawn = drew
        self._last_tick = now if drew else None

    def draw_now(self) -> None:
        """Every visible view draws the newest data now (before an export, in tests)."""
        self._draw(len(self.views))

    def _draw(self, limit: int) -> int:
        """Up to ``limit`` stale views draw, taking turns; returns how many did."""
        if not self._stale:
            return 0
        latest = self._latest if self._latest is not None else self.history.latest
        keys = list(self.views)
        drawn = 0
        for offset in range(len(keys)):
            index = (self._cursor + offset) % len(keys)
            key = keys[index]
            view = self.views[key]
            if key not in self._stale or not view.isVisible():
                continue  # a hidden view stays stale until it is shown
            view.set_data(self.history, latest)
            self._stale.discard(key)
            drawn += 1
            if drawn == limit:
                self._cursor = index + 1
                break
        return drawn

    def _update_title(self) -> None:
        c = self._config
        title = f"gradviz — {c.cell}, {c.task}, T {c.seq_len}"
        if self._loaded_run:
            title += f" — {os.path.basename(os.path.normpath(self._loaded_run))}"
        self.setWindowTitle(title)

    # -- files -------------------------------------------------------------------------
    def save_run_to(self, folder: str | os.PathLike) -> None:
        save_run(folder, self._config, self.history)
        self.statusBar().showMessage(f"Run saved to {folder}", 5000)

    def open_run(self, path: str | os.PathLike) -> None:
        """Show a saved run, paused; starting again trains a fresh model with its settings."""
        config, history, _summary = load_run(path)
        self.controls.set_config(config)
        self._config = config
        self.reset_training()
        self.history = history
        self._latest = history.latest
        self._loaded_run = str(path)
        if len(history):
            self._stale.update(self.views)
        self.state_label.setText("viewing saved run")
        if len(history):
            self.step_label.setText(f"step {int(history.step[-1]) + 1}")
            self.loss_label.setText(f"loss {float(history.loss[-1]):.4g}")
        self._update_title()

    def export_dashboard(self, path: str | os.PathLike) -> None:
        """The whole window as one PNG (written atomically; raises ExportError)."""
        self.draw_now()
        buffer = QtCore.QBuffer()
        buffer.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
        if not self.grab().save(buffer, "PNG"):
            raise ExportError(f"Could not write {path}: the image could not be encoded as PNG.")
        write_bytes(path, bytes(buffer.data()))

    def _ask_save(self, caption: str, name: str, filters: str) -> str:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, caption, os.path.join(self.prefs.last_folder(), name), filters)
        if path:
            self.prefs.set_last_folder(os.path.dirname(path))
        return path

    def open_run_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open run", self.prefs.last_folder(), "gradviz runs (run.json)")
        if not path:
            return
        self.prefs.set_last_folder(os.path.dirname(os.path.dirname(path)))
        try:
            self.open_run(os.path.dirname(path))
        except (RunFileError, ConfigError, OSError) as exc:
            self._warn("Run not opened", str(exc))

    def save_run_dialog(self) -> None:
        if len(self.history) == 0:
            self._warn("Nothing to save", "No training step has been captured yet: "
                       "start training (Space) first.")
            return
        folder = self._ask_save("Save run (a folder)", "run", "gradviz run folder (*)")
        if not folder:
            return
        try:
            self.save_run_to(folder)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._warn("Run not saved", f"Could not save the run to {folder}: {reason}. "
                       "A run already there is left as it was; choose another folder.")

    def export_view_dialog(self, key: str, suffix: str) -> None:
        path = self._ask_save(f"Export {self.views[key].title}", f"{key}.{suffix}",
                              f"{suffix.upper()} (*.{suffix})")
        if not path:
            return
        if not path.lower().endswith("." + suffix):
            path += "." + suffix
        try:
            self.views[key].export(path)
        except (ExportError, OSError) as exc:
            self._warn("Export failed", str(exc))
            return
        self.statusBar().showMessage(f"Exported {path}", 5000)

    def export_dashboard_dialog(self) -> None:
        path = self._ask_save("Export dashboard", "dashboard.png", "PNG (*.png)")
        if not path:
            return
        if not path.lower().endswith(".png"):
            path += ".png"
        try:
            self.export_dashboard(path)
        except (ExportError, OSError) as exc:
            self._warn("Export failed", str(exc))
            return
        self.statusBar().showMessage(f"Exported {path}", 5000)

    def _warn(self, title: str, message: str) -> None:
        QtWidgets.QMessageBox.warning(self, f"gradviz: {title}", message)

    # -- closing -----------------------------------------------------------------------
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self._redraw_timer.stop()
        self.prefs.save_geometry(self.saveGeometry())
        self.prefs.save_config(self._config)
        self.prefs.sync()
        self.worker.close()
        self._close_error()
        super().closeEvent(event)
