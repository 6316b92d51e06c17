"""The texts of the character model: the built-in corpus (Python's own source), the text
task reading it when no file is named, the text-file dialog, and a bad text file never
remembered for the next launch."""
from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest
from PyQt6 import QtWidgets

from gradviz.config import RunConfig
from gradviz.engine.tasks import texts
from gradviz.engine.tasks import TaskInputError, TextTask, make_task
from gradviz.ui.controls import ControlPanel
from gradviz.ui.dialogs import ask_text_file
from gradviz.ui.prefs import Prefs


def test_the_corpus_is_the_stdlib_modules_of_this_python():
    folder = Path(sysconfig.get_paths()["stdlib"])
    present = [name for name in texts.CORPUS_MODULES if (folder / name).is_file()]
    assert len(present) >= 10
    text, description = texts.stdlib_corpus()
    assert text == "".join((folder / name).read_text(encoding="utf-8") for name in present)
    assert str(folder) in description and f"{len(present)} modules" in description
    assert "def " in text and "self" in text


def test_no_stdlib_source_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(texts, "stdlib_folder", lambda: tmp_path)
    with pytest.raises(TaskInputError, match="not found in .*choose a text file") as error:
        texts.stdlib_corpus()
    assert error.value.field == "text_file"


def test_the_text_task_with_no_file_reads_the_corpus_and_names_it():
    corpus, description = texts.stdlib_corpus()
    task = make_task(RunConfig(task="text", seq_len=25))
    assert isinstance(task, TextTask)
    assert task.text == corpus and task.note == description
    assert task.symbols == sorted(set(corpus))
    assert texts.read_text(None) == (corpus, description)


def test_a_named_file_is_read_instead(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("abcabc " * 30, encoding="utf-8")
    task = make_task(RunConfig(task="text", seq_len=5, text_file=str(path)))
    assert task.text == "abcabc " * 30 and task.note is None


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty"), (b"\x00\x01binary" * 10, "binary"), (b"ok \xc3\x28" * 10, "valid UTF-8")])
def test_text_file_problem_says_what_load_text_refuses(tmp_path, content, expected):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    problem = texts.text_file_problem(path)
    assert problem is not None and expected in problem and str(path) in problem, problem
    assert texts.text_file_problem(tmp_path / "gone.txt") is not None
    good = tmp_path / "good.txt"
    good.write_text("hello world " * 10, encoding="utf-8")
    assert texts.text_file_problem(good) is None


# -- the dialog ---------------------------------------------------------------------------

@pytest.fixture
def asked(monkeypatch):
    """Replaces QFileDialog.getOpenFileName: records (directory, filter), answers with
    the next path queued."""
    record = {"calls": [], "answers": []}

    def dialog(parent, caption, directory, filters):
        record["calls"].append((directory, filters))
        return (record["answers"].pop(0) if record["answers"] else "", "")

    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName", dialog)
    return record


def test_the_text_dialog_offers_text_files_then_all_files(qtbot, asked, tmp_path):
    last = tmp_path / "sub" / "old.txt"
    last.parent.mkdir()
    last.write_text("x")
    assert ask_text_file(None, str(last)) is None          # cancelled
    folder, filters = asked["calls"][-1]
    assert folder == str(last.parent)
    text, everything = filters.split(";;")
    assert text.startswith("Text files (*.txt *.md") and "*.py" in text and "*.rst" in text
    assert everything == "All files (*)"


def test_the_text_dialog_starts_at_home_without_a_last_file(qtbot, asked, tmp_path):
    ask_text_file(None, None)
    ask_text_file(None, str(tmp_path / "gone" / "old.txt"))
    assert [folder for folder, _ in asked["calls"]] == [os.path.expanduser("~")] * 2


def test_the_panel_button_uses_the_text_dialog(qtbot, asked, tmp_path):
    first, second = tmp_path / "a" / "one.md", tmp_path / "b" / "two.py"
    for path in (first, second):
        path.parent.mkdir()
        path.write_text("some text " * 20)
    panel = ControlPanel(RunConfig(task="text", seq_len=10))
    qtbot.addWidget(panel)
    assert panel.text_label.text() == texts.CORPUS_LABEL     # no file: the built-in text
    changed = []
    panel.config_changed.connect(changed.append)
    asked["answers"] += [str(first), str(second)]
    panel.text_button.click()
    assert changed[-1].text_file == str(first) and panel.text_label.text() == "one.md"
    panel.text_button.click()
    assert asked["calls"][1][0] == str(first.parent)          # where the last file was
    assert changed[-1].text_file == str(second)


def test_choosing_the_text_task_asks_for_no_file(qtbot, asked):
    panel = ControlPanel(RunConfig(seq_len=10))
    qtbot.addWidget(panel)
    changed = []
    panel.config_changed.connect(changed.append)
    task = panel.w["task"]
    task.setCurrentIndex(task.findData("text"))
    assert asked["calls"] == []
    assert changed[-1].task == "text" and changed[-1].text_file is None


# -- what the next launch remembers -------------------------------------------------------

@pytest.fixture
def prefs(tmp_path) -> Prefs:
    return Prefs(tmp_path / "settings.ini")


def test_a_bad_text_file_is_never_remembered(prefs, tmp_path):
    bad = tmp_path / "binary.txt"
    bad.write_bytes(b"\x00\x01\x02" * 50)
    config = RunConfig(task="text", seq_len=12, hidden=7, text_file=str(bad))
    prefs.save_config(config)
    prefs.sync()
    again = Prefs(tmp_path / "settings.ini").load_config()
    assert again == config.replace(text_file=None)           # the rest is kept


def test_a_good_text_file_is_remembered(prefs, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("the quick brown fox " * 20, encoding="utf-8")
    config = RunConfig(task="text", seq_len=12, text_file=str(good))
    prefs.save_config(config)
    assert Prefs(tmp_path / "settings.ini").load_config() == config


def test_a_text_file_that_went_bad_since_is_forgotten_at_launch(prefs, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("the quick brown fox " * 20, encoding="utf-8")
    config = RunConfig(task="text", seq_len=12, text_file=str(good))
    prefs.save_config(config)
    good.write_bytes(b"")                                     # emptied after the last launch
    assert Prefs(tmp_path / "settings.ini").load_config() == config.replace(text_file=None)
    good.unlink()
    assert Prefs(tmp_path / "settings.ini").load_config() == config.replace(text_file=None)


def test_a_file_fixed_after_a_bad_save_is_remembered_again(prefs, tmp_path):
    path = tmp_path / "later.txt"
    path.write_bytes(b"")
    config = RunConfig(task="text", seq_len=12, text_file=str(path))
    prefs.save_config(config)
    assert prefs.load_config().text_file is None
    path.write_text("now there is text in it " * 10, encoding="utf-8")
    prefs.save_config(config)
    assert prefs.load_config() == config
