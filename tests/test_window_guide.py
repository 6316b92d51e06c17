"""The window explains itself: the description above the plots and the hint to press
Space, the Help menu, each view's "how to read this", the View menu, the zoom that resets
for a new model, and a projector's screen (1024 x 768) with no label cut or said twice."""
from __future__ import annotations

import re

import numpy as np
import pyqtgraph as pg
import pytest
from PyQt6 import QtGui, QtWidgets

from gradviz.experiments import list_experiments, load_experiment
from gradviz.ui.banner import EMPTY_HINT
from gradviz.ui.layout import HELP_BUTTON

from test_window import START_TIMEOUT_MS, menu, open_window, prefs, run_until  # noqa: F401
from test_views import tick_labels


@pytest.fixture
def window(qtbot, prefs):  # noqa: F811
    window = open_window(qtbot, prefs)
    yield window
    window.close()


def test_an_empty_window_says_press_space_and_the_experiment_says_what_to_watch(window, qtbot):
    banner = window.banner
    assert banner.isVisible() and banner.hint.isVisible()
    assert banner.hint.text() == EMPTY_HINT
    assert "Experiments menu" in banner.title.text()
    run_until(qtbot, window, 2)
    assert not banner.isVisible()             # data on screen and no experiment: nothing to say

    experiment = load_experiment("forget-bias")
    window.load_experiment(experiment)
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    assert banner.isVisible() and banner.hint.isVisible()
    assert banner.title.text() == experiment.title
    assert banner.watch.text() == experiment.watch
    assert experiment.expected in banner.expected.text()
    run_until(qtbot, window, 2)
    assert banner.isVisible() and not banner.hint.isVisible()   # the description stays

    window.view_actions["description"].setChecked(False)
    assert not banner.isVisible()
    window.view_actions["description"].setChecked(True)
    assert banner.isVisible()


def test_the_experiments_then_button_starts_a_fresh_model_with_the_one_change(window, qtbot):
    experiment = next((e for e in list_experiments() if e.then_config is not None), None)
    if experiment is None:
        pytest.skip("no experiment has a second step")
    window.load_experiment(experiment)
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    button = window.banner.then_button
    assert button.isVisible() and experiment.then_label in button.text()
    run_until(qtbot, window, 2)
    first = window.worker.run_id
    button.click()
    assert window.config == experiment.then_config
    assert window.controls.config() == experiment.then_config
    assert window.worker.run_id == first + 1 and len(window.history) == 0
    assert "settings changed" not in window.banner.title.text()
    assert not button.isEnabled()             # its run is the one on screen now


def test_n_is_the_then_button_from_the_keyboard(window, qtbot):
    from PyQt6 import QtCore
    window.activateWindow()
    qtbot.keyClick(window, QtCore.Qt.Key.Key_N)          # no experiment yet: says why
    assert "No second step" in window.statusBar().currentMessage()
    experiment = next(e for e in list_experiments() if e.then_config is not None)
    window.load_experiment(experiment)
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_N)
    assert window.config == experiment.then_config
    assert not window.banner.then_button.isEnabled()
    qtbot.keyClick(window, QtCore.Qt.Key.Key_N)          # already there: says so
    assert "already" in window.statusBar().currentMessage()
    assert window.config == experiment.then_config


def test_the_description_shows_whole_lines_at_every_font_size(qtbot):
    from gradviz.ui.banner import WATCH_LINES, Banner
    long = max(list_experiments(), key=lambda e: len(e.watch))
    banner = Banner()
    qtbot.addWidget(banner)
    banner.resize(700, 300)
    banner.show_experiment(long)
    banner.show()
    qtbot.waitExposed(banner)

    def lines_shown() -> float:
        margins = banner.watch.contentsMargins()
        inner = banner.watch_area.height() - margins.top() - margins.bottom()
        return inner / banner.watch.fontMetrics().lineSpacing()

    assert lines_shown() == WATCH_LINES       # a long text: whole lines, then it scrolls
    font = banner.watch.font()
    font.setPointSizeF(font.pointSizeF() * 1.6)
    banner.watch.setFont(font)
    banner.fit_watch()                        # as View > Bigger does
    assert lines_shown() == WATCH_LINES
    short = next(e for e in list_experiments() if len(e.watch) < len(long.watch) / 3)
    banner.show_experiment(short)
    needed = banner.watch.heightForWidth(banner.watch_area.viewport().width())
    assert lines_shown() == min(WATCH_LINES, round(needed / banner.watch.fontMetrics().lineSpacing()))


def test_the_then_button_also_says_what_to_watch_in_the_second_run(window, qtbot):
    with_then = [e for e in list_experiments() if e.then_config is not None]
    assert with_then and all(e.then_watch for e in with_then)
    banner = window.banner
    for experiment in with_then:
        window.load_experiment(experiment)
        assert banner.watch.text() == experiment.watch
        banner.then_button.click()
        assert window.config == experiment.then_config
        assert banner.watch.text() == experiment.then_watch != experiment.watch
        assert experiment.then_watch in banner.watch.toolTip()
        # The first configuration again (the menu): its own text comes back.
        window.load_experiment(experiment)
        assert banner.watch.text() == experiment.watch


@pytest.mark.slow   # ~80 steps at T 50: 27-55 s on a loaded 2-core machine
def test_exploding_then_clipped_from_the_menu_then_space_never_goes_non_finite(window, qtbot):
    entries = {a.text(): a for a in menu(window, "E&xperiments").actions() if a.text()}
    exploding, clipped = load_experiment("exploding-relu"), load_experiment("clipped-relu")
    entries[exploding.title].trigger()
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    window.act_run.trigger()
    qtbot.waitUntil(lambda: bool(len(window.history) and window.history.nonfinite.any()),
                    timeout=60000)
    entries[clipped.title].trigger()
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    assert len(window.history) == 0
    steps = int(np.flatnonzero(window.history.nonfinite)[0]) + 40 if len(window.history) else 80
    run_until(qtbot, window, steps, timeout_ms=60000)   # T 50: slow on a loaded machine
    assert window.history.step[0] == 0
    assert not window.history.nonfinite.any()
    assert window.history.clipped.any()


def test_the_help_menu_has_the_guide_the_shortcuts_and_about(window, qtbot):
    actions = {a.text(): a for a in menu(window, "&Help").actions() if a.text()}
    for text in ("Guide: why gradients vanish…", "Keyboard shortcuts…", "About gradviz…"):
        actions[text].trigger()
    dialogs = window.help_dialogs
    assert set(dialogs) == {"Guide", "Keyboard shortcuts", "About"}
    guide = dialogs["Guide"].browser.toPlainText()
    assert "‖∂L/∂h" in guide and "clipping" in guide.lower() and "1/γ" in guide
    keys = dialogs["Keyboard shortcuts"].browser.toPlainText()
    for action in (window.act_run, window.act_step, window.act_reset, window.act_quit):
        shortcut = action.shortcut().toString(QtGui.QKeySequence.SequenceFormat.NativeText)
        assert shortcut and shortcut in keys
    about = dialogs["About"].browser.toPlainText()
    import torch

    import gradviz
    assert gradviz.__version__ in about and torch.__version__ in about
    assert "Compiled loops" in about
    for dialog in dialogs.values():
        dialog.close()


def test_every_view_says_how_to_read_it(window, qtbot, monkeypatch):
    shown = []
    monkeypatch.setattr(QtWidgets.QWhatsThis, "showText",
                        lambda pos, text, widget=None: shown.append(text))
    for key, view in window.views.items():
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", view.help_text.strip()) if s]
        assert 3 <= len(sentences) <= 6, (key, len(sentences))
        assert view.whatsThis() and view.title in view.whatsThis()
        button = window.panels[key].findChild(QtWidgets.QToolButton, HELP_BUTTON)
        assert button is not None and button.text() == "?", key
        button.click()
        assert view.help_text in shown[-1], key


def test_the_view_menu_hides_a_panel_and_the_others_take_its_room(window, qtbot):
    panels = window.panels
    before = panels["loss"].width()
    window.view_actions["gradflow"].setChecked(False)
    window.view_actions["gates"].setChecked(False)
    qtbot.waitUntil(lambda: not panels["gradflow"].isVisible())
    QtWidgets.QApplication.processEvents()
    shown = [k for k in ("gradtime", "states", "loss", "gradnorm") if panels[k].isVisible()]
    assert len(shown) == 4
    qtbot.waitUntil(lambda: panels["loss"].width() > before * 1.2, timeout=3000)
    window.view_actions["gradflow"].setChecked(True)
    assert panels["gradflow"].isVisible()
    window.view_actions["controls"].setChecked(False)
    assert not window.dashboard.scroll.isVisible()
    window.view_actions["controls"].setChecked(True)
    assert window.dashboard.scroll.isVisible()


def _viewboxes(view):
    return [item for item in view.graphics.scene().items() if isinstance(item, pg.ViewBox)]


def test_a_new_model_resets_every_zoom(window, qtbot):
    run_until(qtbot, window, 3)
    view = window.views["loss"]
    view.plot.setXRange(1000, 2000)           # zoomed far from the data: autorange is off
    assert not view.plot.getViewBox().autoRangeEnabled()[0]
    gates = window.views["gates"]
    gates.sat.setYRange(0.4, 0.5)
    window.act_reset.trigger()
    qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    for key, v in window.views.items():
        for box in _viewboxes(v) if hasattr(v, "graphics") else []:
            # A fixed range comes back; any other fits the data again (a view x-linked to
            # another follows that one's range instead).
            x_auto, y_auto = box.autoRangeEnabled()
            fixed_x, fixed_y = v._fixed_x.get(box), v._fixed_y.get(box)
            if fixed_y is not None:
                assert box.viewRange()[1] == pytest.approx(list(fixed_y)), key
            else:
                assert y_auto, key
            if fixed_x is not None:
                assert box.viewRange()[0] == pytest.approx(list(fixed_x)), key
            else:
                assert x_auto or box.linkedView(0) is not None, key
    assert gates.sat.getViewBox().viewRange()[1] == pytest.approx([-0.05, 1.05])
    run_until(qtbot, window, 3)
    view.grab()                 # pyqtgraph fits the range to the data when it paints
    lo, hi = view.plot.getViewBox().viewRange()[0]
    # Fitted to the data again (the run before stays on screen as a comparison, so the
    # range spans both), not left at the zoom on steps 1000-2000.
    assert lo <= 0 and 2 <= hi < 500


def _elided_combos(window) -> list[str]:
    cut = []
    for combo in window.findChildren(QtWidgets.QComboBox):
        if not combo.isVisible():
            continue
        option = QtWidgets.QStyleOptionComboBox()
        combo.initStyleOption(option)
        field = combo.style().subControlRect(QtWidgets.QStyle.ComplexControl.CC_ComboBox,
                                             option,
                                             QtWidgets.QStyle.SubControl.SC_ComboBoxEditField,
                                             combo)
        metrics = combo.fontMetrics()
        for i in range(combo.count()):
            if metrics.horizontalAdvance(combo.itemText(i)) > field.width():
                cut.append(f"{combo.objectName() or combo.toolTip()}: {combo.itemText(i)!r} "
                           f"needs {metrics.horizontalAdvance(combo.itemText(i))} px, has "
                           f"{field.width()} (combo {combo.width()})")
    return cut


@pytest.mark.parametrize("size", [(1024, 768), (1280, 720)])
def test_a_projector_screen_cuts_no_text_and_repeats_no_tick_label(qtbot, prefs, size):  # noqa: F811
    from test_window import SMALL

    window = open_window(qtbot, prefs, SMALL.replace(cell="lstm", layers=2, bidirectional=True))
    try:
        window.resize(*size)
        run_until(qtbot, window, 12)
        window.draw_now()
        QtWidgets.QApplication.processEvents()
        assert window.width() <= size[0] and window.height() <= size[1]
        cut = _elided_combos(window)
        assert cut == [], "\n".join(cut)
        for key, view in window.views.items():
            if not view.isVisible() or not hasattr(view, "graphics"):
                continue
            assert view.height() >= 120, f"{key} squeezed to {view.height()} px"
            for axis in view.graphics.scene().items():
                if not isinstance(axis, pg.AxisItem) or not axis.isVisible():
                    continue
                if axis.orientation in ("top", "right") or axis.style["showValues"] is False:
                    continue
                labels = [(rect, text) for rect, text in tick_labels(axis) if text]
                texts = [text for _, text in labels]
                assert len(texts) == len(set(texts)), f"{key}: repeated labels {texts}"
                for i, (a, ta) in enumerate(labels):
                    for b, tb in labels[i + 1:]:
                        overlap = a.intersected(b)
                        assert overlap.width() < 1 or overlap.height() < 1, \
                            f"{key}: {ta!r} and {tb!r} overlap"
    finally:
        window.close()


def test_exports_for_slides_are_at_twice_the_size_or_a_chosen_width_with_a_title(window, qtbot,
                                                                                 tmp_path):
    from gradviz.ui.figures import caption

    run_until(qtbot, window, 3)
    view = window.views["gradtime"]
    assert window.export_size == ("scale", 2.0)             # the default: slides
    path = view.export(tmp_path / "gradtime.png")
    image = QtGui.QImage(str(path))
    widget = view.figure_widget()
    assert (image.width(), image.height()) == (2 * widget.width(), 2 * widget.height())
    assert view.caption.plain_text() == ""                   # the title was for the file only
    svg = view.export(tmp_path / "gradtime.svg").read_text(encoding="utf-8")
    assert caption(window.config).split(",")[0] in svg       # the title line names the run

    window.size_actions[("width", 1920.0)].trigger()
    window.export_dashboard(tmp_path / "dashboard.png")
    dashboard = QtGui.QImage(str(tmp_path / "dashboard.png"))
    assert dashboard.width() == 1920
    assert dashboard.height() > 1920 * window.centralWidget().height() / window.centralWidget().width()
    window.size_actions[("scale", 1.0)].trigger()
    path = view.export(tmp_path / "small.png")
    assert QtGui.QImage(str(path)).width() == widget.width()
