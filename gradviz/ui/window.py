"""The main window: the shell around the app model (:mod:`gradviz.ui.state`).

Control panel on the left; on the right the description of the chosen experiment
(:mod:`~gradviz.ui.banner`) above the views, in tabs (:mod:`~gradviz.ui.layout`); menus,
toolbar and status bar.
The window is a view of an :class:`~gradviz.ui.model.AppModel`, which owns the
:class:`~gradviz.ui.state.AppState`, the training backend and the commands; the views draw
from the state on their own clock (:class:`~gradviz.ui.redraw.RedrawScheduler`). The window
keeps no application state of its own: it turns the user's actions into the model's
commands and the model's changes into widgets (the control panel shows ``state.config``).
"""
from __future__ import annotations

import os

from PyQt6 import QtGui, QtWidgets

from gradviz.config import RunConfig
from gradviz.ui import runfiles
from gradviz.ui.banner import Banner
from gradviz.ui.controls import ControlPanel
from gradviz.ui.dialogs import FileDialogs
from gradviz.ui.layout import Dashboard, default_size
from gradviz.ui.menus import build_actions
from gradviz.ui.noticebar import NoticeBar, place_notice
from gradviz.ui.export import (ExportError, cannot_write, render_image, save_image_png,
                               with_title)
from gradviz.ui.figures import caption
from gradviz.ui.prefs import Prefs
from gradviz.ui.presentation import install as install_presentation
from gradviz.ui.redraw import RedrawScheduler
from gradviz.ui.model import AppModel, Backend
from gradviz.ui.recordedrun import RecordedPanel, recorded_text
from gradviz.ui.statusbar import StatusFields
from gradviz.ui.timeline import Timeline
from gradviz.ui.treewire import install as install_tree
from gradviz.ui.views import make_views



# The status bar's hint after an experiment or its second step is loaded.
PRESS_SPACE = "press Space to train."


class MainWindow(QtWidgets.QMainWindow):
    """A view of ``model``; without one, of a new :class:`AppModel` of ``config`` and
    ``prefs`` with a training process behind it (what the app opens), made by ``backend``
    where given (see :data:`~gradviz.ui.model.Backend`)."""

    def __init__(self, config: RunConfig | None = None, prefs: Prefs | None = None, *,
                 model: AppModel | None = None, backend: Backend | None = None):
        super().__init__()
        self.model = model if model is not None else AppModel(config, prefs, backend,
                                                              parent=self)
        self.prefs = self.model.prefs
        self.state = self.model.state
        self._error_box: NoticeBar | None = None

        self.controls = ControlPanel(self.state.config)
        self.controls.config_changed.connect(self.apply_config)
        self.state.config_changed.connect(self.controls.set_config)
        self.model.message.connect(lambda text, ms: self.statusBar().showMessage(text, ms))
        self.model.warning.connect(self._warn)
        self.views = make_views()
        # Shown for as long as it takes to read: 5 s, 60 ms a character in a longer one.
        self.dialogs = FileDialogs(self, self.prefs,
                                   lambda text: self.statusBar().showMessage(
                                       text, max(5000, 60 * len(text))))
        # PNG exports: (kind, value), "scale" times the size on screen or "width" pixels.
        self.export_size: tuple[str, float] = ("scale", 2.0)
        for view in self.views.values():
            view.set_file_dialogs(self.dialogs)
            view.set_export_setup(lambda v=view: (self.caption(),
                                                  self.export_scale(v.figure_widget())))
        self.scheduler = RedrawScheduler(self.views, self.state, self)
        self.scheduler.view_failed.connect(lambda _key, text: self.statusBar().showMessage(text))
        self.banner = Banner()
        self.banner.then_requested.connect(self.load_then)
        self.timeline = Timeline(self.state, self)
        # The control panel, or in its place what a run recorded from Python is.
        self.control_column = RecordedPanel(self.controls)
        self.control_column.new_model.connect(lambda: self.reset_training())
        self.dashboard = Dashboard(self, self.control_column, self.views, self.banner,
                                   self.timeline)
        self.panels = self.dashboard.panels
        build_actions(self)
        self.timeline.add_actions(self)
        self.status_fields = StatusFields(self.statusBar())
        self.state.running_changed.connect(self._show_running)
        self.state.text_changed.connect(self._on_text)
        self.state.step_selected.connect(self._on_text)
        self.state.runs_changed.connect(self._on_runs_changed)
        self.state.runs_changed.connect(self._close_error)   # a new model, or a run opened
        self.state.data_changed.connect(self._show_empty)
        self.state.config_changed.connect(self.banner.set_config)
        self.banner.set_config(self.state.config)

        self.worker.status.connect(self._on_status)
        self.worker.error.connect(self._on_error)
        self.worker.state_changed.connect(self._on_worker_state)
        self.worker.ready.connect(self._on_ready)
        self.worker.note.connect(self._on_note)
        self.worker.notice.connect(lambda text: self.statusBar().showMessage(f"Note: {text}", 15000))
        self.worker.diverged.connect(self._on_diverged)
        self.worker.responding_changed.connect(self._on_responding)
        self.scheduler.start()

        geometry = self.prefs.load_geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            default_size(self)
        install_presentation(self)   # self.focus, self.presentation; View ▸ Presentation
        install_tree(self)           # self.tree_wiring: the prediction tree's requests
        self._update_title()

    @property
    def config(self) -> RunConfig:
        return self.state.config

    @property
    def worker(self):
        """The model's training backend."""
        return self.model.worker

    @property
    def history(self):
        """The live run's record (read-only: the state owns it)."""
        return self.state.live.history

    @property
    def state_label(self) -> QtWidgets.QLabel:
        return self.status_fields.state

    @property
    def step_label(self) -> QtWidgets.QLabel:
        return self.status_fields.step

    # -- commands: the model's ---------------------------------------------------------
    def toggle_running(self) -> None:
        self.model.toggle_running(self._ask_continue)

    def step_once(self) -> None:
        self.model.step(self._ask_continue)

    def _ask_continue(self, name: str) -> str | None:
        return runfiles.ask_continue(self, name)

    def reset_training(self, keep_running: bool = False) -> None:
        """A fresh model from the current settings (same seed); paused unless asked."""
        self.model.reset(keep_running)

    def apply_config(self, config: RunConfig) -> None:
        """New settings from the controls (the model decides: live change or new model);
        refused, the controls show the settings in use again."""
        if not self.model.apply_config(config):
            self.controls.set_config(self.model.config)

    def load_experiment(self, experiment) -> None:
        """A guided experiment (gradviz.experiments): its settings, and always a fresh
        model from its seed, even when the settings are those already shown; its
        description goes above the plots."""
        if self.model.start_fresh(experiment.config):
            self.banner.show_experiment(experiment)
            self.focus.set_experiment(experiment)
            self.statusBar().showMessage(f"{experiment.title}: {PRESS_SPACE}", 15000)
            self.state.set_aside_all(f"not part of {experiment.title}")

    def load_then(self, experiment) -> None:
        """The experiment's "now change this" step: a fresh model with its second config."""
        if experiment is not None and experiment.then_config is not None:
            if self.model.start_fresh(experiment.then_config):
                self.statusBar().showMessage(f"{experiment.then_label}: {PRESS_SPACE}", 15000)

    def then_step(self) -> None:
        """The description's "Now: …" button, from the menu or N; says in the status bar
        why nothing happens where there is no such step."""
        button = self.banner.then_button
        if self.banner.experiment is None or self.banner.experiment.then_config is None:
            self.statusBar().showMessage("No second step: the guided experiments of the "
                                         "Experiments menu have one.", 8000)
        elif not button.isEnabled():
            self.statusBar().showMessage("The experiment's second step is the run on screen "
                                         "already.", 8000)
        else:
            self.load_then(self.banner.experiment)

    def show_panel(self, key: str, shown: bool) -> None:
        """Hide or show a view's panel (the View menu)."""
        self.dashboard.set_panel_shown(key, shown)
        if shown:
            self.scheduler.mark_stale()

    def _show_running(self, running: bool) -> None:
        icons = QtWidgets.QStyle.StandardPixmap
        self.act_run.setText("Pause" if running else "Start")
        self.act_run.setIcon(self.style().standardIcon(
            icons.SP_MediaPause if running else icons.SP_MediaPlay))
        # The hint to press Space is done with once Space is pressed.
        if running and self.statusBar().currentMessage().endswith(PRESS_SPACE):
            self.statusBar().clearMessage()

    # -- state and worker reports ----------------------------------------------------------
    def _show_empty(self) -> None:
        self.banner.set_empty(len(self.history) == 0)

    def _on_runs_changed(self) -> None:
        self._show_empty()
        run = self.state.live
        if len(run.history):
            self.status_fields.show_progress(int(run.history.step[-1]) + 1, None,
                                             float(run.history.loss[-1]))
        else:
            self.status_fields.clear()
        self.status_fields.show_state(self.worker.state, self.state.viewing_saved_run)
        self.control_column.set_recorded(recorded_text(run))
        self.banner.set_recorded(recorded_text(run))
        self._on_text()
        self._update_title()

    def _on_status(self, status: dict) -> None:
        self.status_fields.show_progress(status["step"], status["steps_per_s"], status["loss"])

    def _on_text(self, *_) -> None:
        # The text sampled at the step the timeline shows (the newest while it follows).
        view = self.views.get("text")
        if view is not None:
            view.set_text(self.state.live.text_at(self.state.selected_step) or "")

    def _on_ready(self, language: bool) -> None:
        self.dashboard.set_text_wanted(language)
        self.controls.set_text_note(None)  # a note, if the new model has one, follows

    def _on_note(self, note: str) -> None:
        self.controls.set_text_note(note)
        self.statusBar().showMessage(f"Note: {note}", 15000)

    def _on_responding(self, responding: bool) -> None:
        if responding:
            self.status_fields.show_state(self.worker.state, self.state.viewing_saved_run)
            self.statusBar().clearMessage()
            return
        self.status_fields.show_state("not responding")
        self.statusBar().showMessage("The training process has stopped responding (it may be "
                                     "stopped or stuck): press Reset (R) to replace it.")

    def _on_worker_state(self, state: str) -> None:
        self.status_fields.show_state(state, self.state.viewing_saved_run)

    def _on_error(self, message: str, details: str) -> None:
        self.statusBar().showMessage(f"Training stopped: {message}")
        self._show_stop_box("gradviz: training stopped",
                            f"{message}\n\nChange the settings and press Reset (R) to start "
                            "again.", details)

    def _on_diverged(self, message: str, advice: str) -> None:
        """The run paused itself because training diverged (gradviz.engine.training.divergence)."""
        self.state.set_running(False)
        self.statusBar().showMessage("Training paused: it diverged (see the notice above)")
        self._show_stop_box("gradviz: training diverged",
                            f"{message}\n\n{advice}\n\nChange a setting, then press Reset (R) for "
                            "fresh weights; Start (Space) goes on with the weights as they are.")

    def _show_stop_box(self, title: str, text: str, details: str = "") -> None:
        """A notice above the plots, with a Reset button, that training stopped and why:
        no dialog covers the plots the class is looking at. A notice shown already says
        the new thing in its place, so that the plots are not laid out again."""
        if self._error_box is not None:
            self._error_box.set_notice(title, text, details)
            return
        bar = NoticeBar(title, text, details)
        bar.reset_requested.connect(self.reset_training)
        bar.closed.connect(lambda b=bar: self._forget_error(b))
        place_notice(bar, self.banner, self.centralWidget())
        self._error_box = bar

    def _forget_error(self, box: NoticeBar) -> None:
        if self._error_box is box:
            self._error_box = None
        box.deleteLater()

    def _close_error(self) -> None:
        if self._error_box is not None:
            self._error_box.close()
            self._error_box = None

    @property
    def error_box(self) -> NoticeBar | None:
        """The notice of the last training error or divergence, while it is shown."""
        return self._error_box

    # -- drawing -----------------------------------------------------------------------
    def redraw(self) -> None:
        """One tick of the views' clock (the scheduler's timer calls it ~30 times a second)."""
        self.scheduler.tick()

    def draw_now(self) -> None:
        """Every visible view draws the newest data now (before an export, in tests)."""
        self.scheduler.draw_now()

    def _update_title(self) -> None:
        c = self.state.config
        title = f"gradviz — {c.cell}, {c.task}, T {c.seq_len}"
        recorded = recorded_text(self.state.live)
        if recorded:
            title = f"gradviz — {recorded}"
        if self.state.viewing_saved_run:
            title += f" — {self.state.live.name}"
        self.setWindowTitle(title)

    # -- files -------------------------------------------------------------------------
    def save_run_to(self, folder: str | os.PathLike) -> None:
        runfiles.save_whole(self, folder)

    def open_run(self, path: str | os.PathLike) -> None:
        """Show a saved run as it was saved, paused; starting again asks whether to
        continue it or train a fresh model with its settings."""
        runfiles.open_whole(self, path)

    def export_scale(self, widget: QtWidgets.QWidget) -> float:
        """The PNG scale File ▸ Export ▸ Image size asks for, for ``widget``."""
        kind, value = self.export_size
        if kind == "width":
            return value / max(1, widget.width())
        return value

    def export_dashboard(self, path: str | os.PathLike) -> None:
        """The plots and the controls as one PNG under a line naming the run, at the
        chosen image size (written atomically; raises ExportError)."""
        self.draw_now()
        widget = self.centralWidget()
        try:
            image = with_title(render_image(widget, self.export_scale(widget)), self.caption())
        except ExportError as err:
            raise cannot_write(path, str(err)) from None
        save_image_png(image, path)

    def caption(self) -> str:
        """The line naming the live run above an exported figure: its settings, or what a
        run recorded from Python is."""
        return recorded_text(self.state.live) or caption(self.state.config)

    def open_run_dialog(self) -> None:
        self.dialogs.open_run(self.open_run)

    def save_run_dialog(self) -> None:
        self.dialogs.save_run(self.save_run_to, can_save=len(self.history) > 0)

    def export_view_dialog(self, key: str, suffix: str) -> None:
        self.dialogs.export_view(self.views[key], "." + suffix.lstrip("."))

    def export_dashboard_dialog(self) -> None:
        self.dialogs.export_dashboard(self.export_dashboard)

    def export_tensorboard_dialog(self) -> None:
        self.dialogs.export_tensorboard(self.history)

    def _warn(self, title: str, message: str) -> None:
        self.dialogs.warn(title, message)

    # -- closing -----------------------------------------------------------------------
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.scheduler.stop()
        self.prefs.save_geometry(self.saveGeometry())
        self.model.close()
        self._close_error()
        super().closeEvent(event)
