"""Every file dialog of the app: save a run, open a run, export a view, export the
dashboard, export TensorBoard event files; all with one behaviour. And the text task's
file dialog (:func:`ask_text_file`), which starts where the last text file was.

* A dialog starts in the folder the last one was left in (remembered in
  :class:`~gradviz.ui.prefs.Prefs`), and the folder chosen is remembered at once.
* The suffix a format needs is added to a name chosen without it.
* Every error of the action that follows is caught and shown in a message box that names
  the file and the reason; the file that was there stays as it was (the writers are
  atomic).
* Success is reported through a status callback, one line.

The window makes one :class:`FileDialogs` and hands it what to do with the path chosen
(``save_run(window.save, can_save=...)``); each view gets it through
:meth:`~gradviz.ui.views.view.View.set_file_dialogs`, and a view outside a window uses a
plain one of its own (home folder, nothing remembered, no status line).
"""
from __future__ import annotations

import os
from typing import Callable, Protocol

from PyQt6 import QtWidgets

from gradviz.engine.runs.runfile import RunFileError
from gradviz.tensorboard import TensorBoardMissing, export_history
from gradviz.ui.export import ExportError, file_filter
from gradviz.ui.focus import MIN_ROW_PX, scale_of
from gradviz.ui.prefs import Prefs

RUN_FILE = "run.json"
# The text dialog shows the usual plain-text files first; any other file is one choice away.
TEXT_SUFFIXES = ("txt", "md", "rst", "py", "tex", "csv", "json", "html", "xml", "log", "c",
                 "h", "cpp", "js", "java", "sh", "ini", "cfg", "toml", "yaml", "yml")
TEXT_FILTER = ("Text files (" + " ".join(f"*.{s}" for s in TEXT_SUFFIXES) + ")"
               ";;All files (*)")
# Errors whose message is already a whole sentence for the user: the file, the reason, the fix.
SELF_EXPLAINING = (ExportError, RunFileError, TensorBoardMissing)


class Exportable(Protocol):
    """What :meth:`FileDialogs.export_view` needs of a view."""

    key: str
    title: str

    def export(self, path: str) -> object: ...


def reason(err: BaseException) -> str:
    """An error in words: an OSError's ``strerror`` (it never names the temporary file the
    error may have been about), else the error's message, else its type."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


def ask_text_file(parent: QtWidgets.QWidget | None, last_file: str | None) -> str | None:
    """Ask for a text file for the language model, starting in the folder of
    ``last_file`` (the home folder if there is none, or it is gone); the path chosen, or
    None if cancelled."""
    folder = os.path.dirname(last_file or "")
    start = folder if folder and os.path.isdir(folder) else os.path.expanduser("~")
    path, _ = QtWidgets.QFileDialog.getOpenFileName(
        parent, "Text file for the language model", start, TEXT_FILTER)
    return path or None


def small_on_screen(view) -> bool:
    """True where ``view``'s figure is lower on screen than a row of panels may be
    (:data:`gradviz.ui.focus.MIN_ROW_PX`, times the window's scale)."""
    figure = getattr(view, "figure_widget", None)
    if figure is None:
        return False
    return figure().height() < MIN_ROW_PX * scale_of(view.window())


class FileDialogs:
    """The app's file dialogs.

    ``parent``: the widget the dialogs and message boxes belong to. ``prefs``: where the
    last folder is remembered; None starts every dialog in the home folder and remembers
    nothing. ``show_status``: called with one line when a file was written or opened.

    Each dialog method returns the path it acted on, or None if the user cancelled or the
    action failed (the failure was shown).
    """

    def __init__(self, parent: QtWidgets.QWidget | None, prefs: Prefs | None = None,
                 show_status: Callable[[str], None] | None = None):
        self.parent = parent
        self.prefs = prefs
        self.show_status = show_status

    # -- the dialogs --------------------------------------------------------------------
    def export_view(self, view: Exportable, suffix: str) -> str | None:
        """Ask where to write ``view`` in the format of ``suffix`` (".png", ".svg" or
        ".csv"), then write it with ``view.export(path)``."""
        path = self.ask_save(f"Export {view.title}", view.key + suffix, file_filter(suffix),
                             suffix)
        done = "Exported {path}"
        if suffix != ".csv" and small_on_screen(view):
            # A figure is what the view shows: one small on screen is as cramped in the file.
            done += (", as small as the view is on screen: double-click the view (or press F "
                     "over it) to fill the page, export it again, then Esc")
        return self._act(path, view.export, "Export failed", done,
                         "Could not write {path}: {reason}. Choose another folder.")

    def export_dashboard(self, write: Callable[[str], object]) -> str | None:
        """Ask where to write the dashboard's PNG image, then ``write(path)``."""
        path = self.ask_save("Export dashboard", "dashboard.png", file_filter(".png"), ".png")
        return self._act(path, write, "Export failed", "Exported {path}",
                         "Could not write {path}: {reason}. Choose another folder.")

    def save_run(self, save: Callable[[str], object], can_save: bool = True) -> str | None:
        """Ask for a folder to save the run in, then ``save(folder)``; with ``can_save``
        false (nothing captured yet) say so instead of asking."""
        if not can_save:
            self.warn("Nothing to save", "No training step has been captured yet: "
                      "start training (Space) first.")
            return None
        folder = self.ask_save("Save run (a folder)", "run", "gradviz run folder (*)")
        return self._act(folder, save, "Run not saved", "Run saved to {path}",
                         "Could not save the run to {path}: {reason}. A run already there "
                         "is left as it was; choose another folder.")

    def export_tensorboard(self, history) -> str | None:
        """Ask for a folder, then write ``history`` there as TensorBoard event files; with
        nothing captured yet, say so instead of asking."""
        if len(history) == 0:
            self.warn("Nothing to export", "No training step has been captured yet: "
                      "start training (Space) first.")
            return None
        folder = self.ask_save("Export TensorBoard event files (a folder)", "tensorboard",
                               "TensorBoard log folder (*)")
        return self._act(folder, lambda path: export_history(history, path), "Export failed",
                         "TensorBoard event files written to {path}",
                         "Could not write to {path}: {reason}. Choose another folder.")

    def open_run(self, open_: Callable[[str], object]) -> str | None:
        """Ask for a run's run.json, then ``open_(folder)`` with the folder that holds it;
        the folder remembered is the one the run folder is in, where other runs are."""
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self.parent, "Open run", self.start_folder(), f"gradviz runs ({RUN_FILE})")
        if not path:
            return None
        folder = os.path.dirname(path)
        self.remember(os.path.dirname(folder))
        return self._act(folder, open_, "Run not opened", "Opened the run in {path}",
                         "Could not open the run in {path}: {reason}.")

    # -- the parts ----------------------------------------------------------------------
    def start_folder(self) -> str:
        return self.prefs.last_folder() if self.prefs is not None else os.path.expanduser("~")

    def remember(self, folder: str) -> None:
        if self.prefs is not None:
            self.prefs.set_last_folder(folder)

    def ask_save(self, caption: str, name: str, filters: str, suffix: str = "") -> str | None:
        """A save dialog starting at ``name`` in :meth:`start_folder`; the path chosen,
        ending in ``suffix``, or None if cancelled."""
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self.parent, caption, os.path.join(self.start_folder(), name), filters)
        if not path:
            return None
        self.remember(os.path.dirname(path))
        if suffix and not path.lower().endswith(suffix):
            path += suffix
        return path

    def warn(self, title: str, message: str) -> None:
        QtWidgets.QMessageBox.warning(self.parent, f"gradviz: {title}", message)

    def _act(self, path: str | None, action: Callable[[str], object], failed: str,
             done: str, failure: str) -> str | None:
        """``action(path)`` unless ``path`` is None. On success show ``done``; on any error
        the error's own message if it has one, else ``failure``; both are filled in with
        ``{path}`` (and ``{reason}``)."""
        if path is None:
            return None
        try:
            action(path)
        # Every error: an exception escaping a Qt slot ends a PyQt6 app, and nothing a
        # user does with a file may do that.
        except Exception as err:
            self.warn(failed, str(err) if isinstance(err, SELF_EXPLAINING)
                      else failure.format(path=path, reason=reason(err)))
            return None
        if self.show_status is not None:
            self.show_status(done.format(path=path))
        return path
