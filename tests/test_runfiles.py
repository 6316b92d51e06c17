"""Saved runs come back whole in the window: the same record, keyframes, text and colour
scale; Space on an opened run asks whether to continue it or start a new model."""
from __future__ import annotations

import numpy as np
import pytest
from PyQt6 import QtCore, QtWidgets

from gradviz.engine.runs.runfile import open_run

from test_window import SMALL, open_window, prefs, run_until  # noqa: F401 - fixture


@pytest.fixture
def window(qtbot, prefs):  # noqa: F811 - the fixture imported above
    window = open_window(qtbot, prefs)
    yield window
    window.close()


def answer(qtbot, button_text: str) -> list:
    """Click ``button_text`` in the question box as soon as it is shown; returns a list
    that gets the box's text."""
    seen: list = []

    def click() -> None:
        box = QtWidgets.QApplication.activeModalWidget()
        if not isinstance(box, QtWidgets.QMessageBox):
            QtCore.QTimer.singleShot(20, click)
            return
        seen.append(box.text())
        next(b for b in box.buttons() if b.text() == button_text).click()

    QtCore.QTimer.singleShot(0, click)
    return seen


def save_and_reopen(window, qtbot, tmp_path, steps: int = 6):
    run_until(qtbot, window, steps)
    folder = tmp_path / "myrun"
    window.save_run_to(folder)
    saved = {name: np.array(getattr(window.history, name)) for name in ("step", "loss", "dh_norm")}
    levels = window.views["gradflow"].levels
    window.reset_training()
    window.open_run(folder)
    window.draw_now()
    return folder, saved, levels


def test_a_saved_run_reopens_with_its_record_keyframes_and_colour_scale(window, qtbot, tmp_path):
    live = window.state.live
    folder, saved, levels = save_and_reopen(window, qtbot, tmp_path)
    for name, array in saved.items():
        np.testing.assert_array_equal(getattr(window.history, name), array, err_msg=name)
    assert window.views["gradflow"].levels == levels
    np.testing.assert_array_equal(window.state.live.keyframes.steps, live.keyframes.steps)
    on_disk = open_run(folder)
    assert on_disk.scales["gradflow"] == levels
    assert on_disk.summary["steps_done"] == on_disk.history.step[-1] + 1
    assert on_disk.can_continue


def test_saved_text_comes_back_at_its_steps(window, qtbot, tmp_path):
    run_until(qtbot, window, 6)
    kept = window.state.live.keyframes.steps
    assert len(kept) >= 2
    # Sampled when the first and the last kept step were done.
    window.state.set_text("early", int(kept[0]) + 1)
    window.state.set_text("late", int(kept[-1]) + 1)
    window.save_run_to(tmp_path / "text")
    window.open_run(tmp_path / "text")
    assert window.views["text"].text() == "late"
    window.timeline.select(int(kept[0]))
    assert window.views["text"].text() == "early"
    window.timeline.follow()
    assert window.views["text"].text() == "late"


def test_space_on_an_opened_run_asks_and_continues_it_from_its_weights(window, qtbot, tmp_path):
    folder, saved, _ = save_and_reopen(window, qtbot, tmp_path)
    seen = answer(qtbot, "Continue it")
    window.act_run.trigger()
    assert seen and "myrun" in seen[0]
    assert not window.state.viewing_saved_run
    K = len(saved["step"])
    qtbot.waitUntil(lambda: len(window.history) >= K + 3, timeout=20000)
    window.act_run.trigger()
    # The record goes on from the saved step, without a gap or a restart at 0.
    np.testing.assert_array_equal(window.history.step[:K + 3], np.arange(K + 3))
    np.testing.assert_array_equal(window.history.loss[:K], saved["loss"])


def test_space_on_an_opened_run_can_start_a_new_model_keeping_it_to_compare(window, qtbot,
                                                                           tmp_path):
    folder, saved, _ = save_and_reopen(window, qtbot, tmp_path)
    opened = window.state.live
    answer(qtbot, "New model")
    window.act_run.trigger()
    qtbot.waitUntil(lambda: len(window.history) >= 2, timeout=20000)
    window.act_run.trigger()
    assert window.history.step[0] == 0
    assert window.state.comparisons[0] is opened


def test_cancelling_the_question_trains_nothing(window, qtbot, tmp_path):
    save_and_reopen(window, qtbot, tmp_path)
    answer(qtbot, "Cancel")
    window.act_run.trigger()
    assert window.state.viewing_saved_run and not window.state.running
