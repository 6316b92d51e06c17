"""The app's file dialogs (gradviz.ui.dialogs): the folder remembered, the suffix added,
every error shown with the file and the reason, the file on disk left as it was. Qt's
dialogs and message boxes are replaced by recorders, so nothing blocks."""
from __future__ import annotations

import errno
import os

import pytest
from PyQt6 import QtWidgets

from gradviz.engine.runs import files
from gradviz.engine.runs.runfile import RunFileError
from gradviz.ui.dialogs import FileDialogs
from gradviz.ui.export import ExportError
from gradviz.ui.prefs import Prefs


class Recorder:
    """Stands in for QFileDialog and QMessageBox: answers each dialog with the next path
    given to :meth:`answer` and records what every dialog and message box was shown."""

    def __init__(self, monkeypatch):
        self.answers: list[str] = []
        self.asked: list[tuple[str, str, str]] = []      # (caption, directory, filter)
        self.warnings: list[tuple[str, str]] = []        # (title, text)
        self.status: list[str] = []
        monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", self._dialog)
        monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName", self._dialog)
        monkeypatch.setattr(QtWidgets.QMessageBox, "warning",
                            lambda parent, title, text: self.warnings.append((title, text)))

    def answer(self, *paths) -> None:
        self.answers += [str(p) for p in paths]

    def _dialog(self, parent, caption, directory, filters):
        self.asked.append((caption, directory, filters))
        return (self.answers.pop(0) if self.answers else "", "")


@pytest.fixture
def ui(monkeypatch) -> Recorder:
    return Recorder(monkeypatch)


@pytest.fixture
def prefs(tmp_path_factory) -> Prefs:
    """Settings of their own, outside the folder the files are written to."""
    return Prefs(tmp_path_factory.mktemp("prefs") / "settings.ini")


@pytest.fixture
def dialogs(qtbot, prefs, ui) -> FileDialogs:
    parent = QtWidgets.QWidget()
    qtbot.addWidget(parent)
    return FileDialogs(parent, prefs, ui.status.append)


class FakeView:
    key = "loss"
    title = "Loss"

    def __init__(self):
        self.written: list[str] = []

    def export(self, path: str) -> None:
        files.write_bytes_atomic(path, b"a figure")
        self.written.append(path)


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_export_starts_in_the_last_folder_and_remembers_the_new_one(dialogs, prefs, ui,
                                                                     tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    prefs.set_last_folder(first)
    view = FakeView()
    ui.answer(second / "mine.png", second / "again.svg")
    assert dialogs.export_view(view, ".png") == str(second / "mine.png")
    assert ui.asked[0] == ("Export Loss", str(first / "loss.png"), "PNG image (*.png)")
    assert prefs.last_folder() == str(second)
    dialogs.export_view(view, ".svg")
    assert ui.asked[1] == ("Export Loss", str(second / "loss.svg"), "SVG drawing (*.svg)")
    assert ui.status == [f"Exported {second / 'mine.png'}", f"Exported {second / 'again.svg'}"]
    assert ui.warnings == []


def test_the_suffix_is_added_when_missing_and_kept_when_there(dialogs, ui, tmp_path):
    view = FakeView()
    ui.answer(tmp_path / "chosen", tmp_path / "Figure.CSV")
    dialogs.export_view(view, ".csv")
    dialogs.export_view(view, ".csv")
    assert view.written == [str(tmp_path / "chosen.csv"), str(tmp_path / "Figure.CSV")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Figure.CSV", "chosen.csv"]


def test_cancelling_does_nothing_and_remembers_nothing(dialogs, prefs, ui):
    before = prefs.last_folder()
    view = FakeView()
    assert dialogs.export_view(view, ".png") is None
    assert dialogs.export_dashboard(view.export) is None
    assert dialogs.save_run(view.export) is None
    assert dialogs.open_run(view.export) is None
    assert len(ui.asked) == 4 and view.written == []
    assert (ui.warnings, ui.status, prefs.last_folder()) == ([], [], before)


def test_an_export_that_cannot_write_is_shown_and_keeps_the_old_file(dialogs, ui, tmp_path,
                                                                    monkeypatch):
    target = tmp_path / "loss.png"
    target.write_bytes(b"an earlier export")
    monkeypatch.setattr(files, "open", full_disk, raising=False)
    ui.answer(target)
    assert dialogs.export_view(FakeView(), ".png") is None
    [(title, text)] = ui.warnings
    assert title == "gradviz: Export failed"
    assert str(target) in text and os.strerror(errno.ENOSPC) in text and ".tmp" not in text
    assert target.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]
    assert ui.status == []


def test_every_error_of_the_dashboard_export_is_shown_not_raised(dialogs, ui, tmp_path):
    target = tmp_path / "dashboard.png"

    def own_message(path):
        raise ExportError(f"Could not write {path}: the image could not be encoded as PNG.")

    def unforeseen(path):
        raise RuntimeError("the painter is gone")

    ui.answer(tmp_path / "dashboard", target)
    assert dialogs.export_dashboard(own_message) is None
    assert dialogs.export_dashboard(unforeseen) is None
    assert ui.asked[0][0::2] == ("Export dashboard", "PNG image (*.png)")
    assert ui.asked[1][1] == str(tmp_path / "dashboard.png"), "the folder chosen last time"
    assert ui.warnings == [
        ("gradviz: Export failed", f"Could not write {target}: the image could not be "
                                   "encoded as PNG."),
        ("gradviz: Export failed", f"Could not write {target}: the painter is gone. "
                                   "Choose another folder.")]
    assert not target.exists() and ui.status == []


def test_save_run_asks_for_a_folder_only_when_there_is_something_to_save(dialogs, prefs, ui,
                                                                         tmp_path):
    saved = []
    assert dialogs.save_run(saved.append, can_save=False) is None
    assert ui.asked == [] and [title for title, _ in ui.warnings] == ["gradviz: Nothing to save"]

    folder = tmp_path / "runs" / "myrun"
    folder.parent.mkdir()
    ui.answer(folder)
    assert dialogs.save_run(saved.append, can_save=True) == str(folder)
    assert saved == [str(folder)] and ui.status == [f"Run saved to {folder}"]
    assert prefs.last_folder() == str(folder.parent)


def test_a_run_that_cannot_be_saved_names_the_folder_and_the_reason(dialogs, ui, tmp_path):
    folder = tmp_path / "myrun"

    def refused(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES),
                              str(folder / ".run.json.x1.tmp"))

    ui.answer(folder)
    assert dialogs.save_run(refused) is None
    [(title, text)] = ui.warnings
    assert title == "gradviz: Run not saved"
    assert str(folder) in text and os.strerror(errno.EACCES) in text and ".tmp" not in text
    assert ui.status == []


def test_open_run_opens_the_folder_of_the_chosen_run_json(dialogs, prefs, ui, tmp_path):
    opened = []
    runs = tmp_path / "runs"
    (runs / "myrun").mkdir(parents=True)
    prefs.set_last_folder(tmp_path)
    ui.answer(runs / "myrun" / "run.json")
    assert dialogs.open_run(opened.append) == str(runs / "myrun")
    assert ui.asked == [("Open run", str(tmp_path), "gradviz runs (run.json)")]
    assert opened == [str(runs / "myrun")]
    # The folder the runs are in, where the next one is likely to be.
    assert prefs.last_folder() == str(runs)
    assert ui.status == [f"Opened the run in {runs / 'myrun'}"]


def test_a_run_that_cannot_be_opened_says_what_is_wrong(dialogs, ui, tmp_path):
    run_json = tmp_path / "broken" / "run.json"

    def damaged(folder):
        raise RunFileError(f"{run_json}: not valid JSON; the file is damaged")

    def unreadable(folder):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    ui.answer(run_json, run_json)
    assert dialogs.open_run(damaged) is None
    assert dialogs.open_run(unreadable) is None
    assert ui.warnings == [
        ("gradviz: Run not opened", f"{run_json}: not valid JSON; the file is damaged"),
        ("gradviz: Run not opened",
         f"Could not open the run in {run_json.parent}: {os.strerror(errno.EIO)}.")]


def test_without_prefs_dialogs_start_at_home_and_remember_nothing(qtbot, ui, tmp_path):
    plain = FileDialogs(None)
    ui.answer(tmp_path / "loss")
    assert plain.export_view(FakeView(), ".png") == str(tmp_path / "loss.png")
    assert ui.asked[0][1] == os.path.join(os.path.expanduser("~"), "loss.png")
    ui.answer(tmp_path / "loss")
    plain.export_view(FakeView(), ".png")
    assert ui.asked[1][1] == os.path.join(os.path.expanduser("~"), "loss.png")


def export_action(view, suffix: str):
    return next(a for a in view.context_menu().actions() if a.text() == f"Export {suffix}…")


def test_a_view_exports_through_the_dialogs_it_is_given(views, history, dialogs, prefs, ui,
                                                        tmp_path):
    view = views["loss"]
    view.set_data(history, history.latest)
    # On its own, a view has a plain dialog of its own: home folder, no status line.
    assert view.file_dialogs.prefs is None and view.file_dialogs.show_status is None
    view.set_file_dialogs(dialogs)
    assert view.file_dialogs is dialogs
    prefs.set_last_folder(tmp_path)
    ui.answer(tmp_path / "table")
    export_action(view, "CSV").trigger()
    assert ui.asked == [(f"Export {view.title}", str(tmp_path / "loss.csv"), "CSV table (*.csv)")]
    assert (tmp_path / "table.csv").read_text().startswith("step,loss,")
    assert ui.status == [f"Exported {tmp_path / 'table.csv'}"]
