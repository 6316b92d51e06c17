"""Issue 19 (the stage): focus layout, presentation (scale, theme, full screen, keys),
the legibility rules on real windows, and ``gradviz snapshot``."""
import json

import pytest
from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.experiments import (FOCUS_VIEWS, ExperimentError, experiment_names,
                                 load_experiment, parse_experiment)
from gradviz.ui.views import VIEW_CLASSES
from tests.legibility import broken

SIZES = ((1024, 768), (1280, 720), (1920, 1080))
SCALES = (1.0, 1.5)


@pytest.fixture
def window(qtbot, tmp_path):
    from gradviz.ui.snapshot import make_window
    win = make_window((1280, 720), settings=str(tmp_path / "settings.ini"))
    qtbot.addWidget(win)
    yield win
    win.close()


def trained(win, name, steps=6):
    from gradviz.ui.snapshot import train_experiment
    train_experiment(win, load_experiment(name), steps=steps)
    return win


def set_size(win, size, scale):
    from gradviz.ui.snapshot import settle
    win.resize(*size)
    win.presentation.set_scale(scale)
    settle(win)


def test_every_experiment_names_one_or_two_views_the_window_has():
    keys = {cls.key for cls in VIEW_CLASSES}
    assert set(FOCUS_VIEWS) <= keys
    for name in experiment_names():
        focus = load_experiment(name).focus
        assert 1 <= len(focus) <= 2 and set(focus) <= keys, name


def test_a_focus_that_is_not_a_view_is_refused_naming_the_field():
    from importlib import resources
    data = json.loads(resources.files("gradviz.experiments").joinpath("vanishing-tanh.json")
                      .read_text(encoding="utf-8"))
    text = json.dumps({**data, "focus": ["nonsense"]})
    with pytest.raises(ExperimentError, match="focus"):
        parse_experiment(text, "vanishing-tanh")


def test_focus_views_are_large_and_first(window):
    trained(window, "exploding-relu")
    shown = [k for k, v in window.views.items() if v.isVisible()]
    assert window.dashboard.focus == ("gradnorm", "loss")
    assert {"gradnorm", "loss"} <= set(shown)
    assert broken(window, 1.0) == {}
    rect = {k: window.views[k].geometry() for k in shown}
    assert window.views["gradnorm"].mapTo(window, QtCore.QPoint()).x() < \
        window.views["loss"].mapTo(window, QtCore.QPoint()).x()
    for other in set(shown) - {"gradnorm", "loss"}:
        assert rect[other].height() < rect["loss"].height()


def test_double_click_fills_the_page_and_escape_restores(window, qtbot):
    trained(window, "vanishing-tanh")
    view = window.views["gradtime"]
    qtbot.mouseDClick(view.graphics.viewport(), QtCore.Qt.MouseButton.LeftButton)
    assert window.dashboard.maximized == "gradtime"
    assert [k for k, v in window.views.items() if v.isVisible()] == ["gradtime"]
    window.act_restore.trigger()
    assert window.dashboard.maximized is None
    assert window.views["loss"].isVisible()      # the other focus view is back
    window.act_maximize.trigger()          # F: the view under the pointer, else the focus
    assert window.dashboard.maximized in window.views
    window.act_restore.trigger()
    assert window.dashboard.maximized is None


def test_zoom_scales_plots_and_panels_together_and_is_remembered(window, tmp_path):
    from gradviz.ui.presentation import Presentation
    from gradviz.ui.describe import plots_of
    axis = plots_of(window.views["loss"])[0].getAxis("bottom")
    tick, label = axis.style["tickFont"].pointSizeF(), window.font().pointSizeF()
    window.act_bigger.trigger()
    assert window.presentation.scale > 1
    ratio = window.presentation.scale
    assert axis.style["tickFont"].pointSizeF() == pytest.approx(tick * ratio, abs=0.05)
    assert window.font().pointSizeF() == pytest.approx(label * ratio, abs=0.05)
    window.act_bigger.trigger()
    window.act_actual.trigger()
    assert axis.style["tickFont"].pointSizeF() == pytest.approx(tick, abs=0.05)
    window.act_bigger.trigger()
    window.prefs.sync()
    assert Presentation(window).scale == window.presentation.scale


def test_projector_theme_thickens_lines(window):
    trained(window, "vanishing-tanh")
    curve = window.views["gradtime"].graphics.scene().items()
    import pyqtgraph as pg
    curves = [c for c in curve if isinstance(c, pg.PlotDataItem) and c.opts["pen"] is not None
              and isinstance(c.opts["pen"], QtGui.QPen)]
    before = [c.opts["pen"].widthF() for c in curves]
    window.theme_actions["projector"].trigger()
    after = [c.opts["pen"].widthF() for c in curves]
    assert all(a >= max(2.0, b) - 1e-9 for a, b in zip(after, before))
    window.theme_actions["standard"].trigger()
    assert [c.opts["pen"].widthF() for c in curves] == pytest.approx(before)


def test_full_screen_and_every_key_is_listed(window):
    from gradviz.ui.help import shortcuts_html
    html = shortcuts_html(window)
    for key in ("F11", "Ctrl+=", "Ctrl+-", "Ctrl+0", "Esc", "F", "Space", "Left", "Right",
                "Home", "End"):
        assert f"<b>{key}</b>" in html, key
    assert "Timeline: the step before" in html
    window.act_full_screen.trigger()
    QtWidgets.QApplication.processEvents()
    assert window.isFullScreen()
    window.act_full_screen.trigger()
    QtWidgets.QApplication.processEvents()
    assert not window.isFullScreen()


def test_a_page_too_low_for_two_rows_of_panels_keeps_one_and_the_rest_go_on(window):
    # At 1280 x 720 the five "Why" views in two rows were 212 px high, their plots ~60 px
    # under their keys: the page keeps its first row and "Why (more)" takes the rest; on a
    # taller window (for its scale) all five are back on one page. Either way every "Why"
    # view, shown, is at least MIN_ROW_PX high and keeps the legibility rules.
    from gradviz.ui.focus import MIN_ROW_PX
    from gradviz.ui.layout import MORE
    from tests.legibility import RULES
    trained(window, "lstm-remembers")
    dash, why = window.dashboard, ["spectrum", "decay", "saturation", "cell", "cliff"]

    def tab_shown(name):
        return any(dash.tabs.tabText(i) == name and dash.tabs.isTabVisible(i)
                   for i in range(dash.tabs.count()))
    for size, scale, split in (((1280, 720), 1.0, True), ((1024, 768), 1.0, True),
                               ((1280, 800), 1.25, True), ((1600, 1000), 1.0, False),
                               ((1920, 1080), 1.5, False)):
        set_size(window, size, scale)
        where = (size, scale)
        if split:
            assert dash.split == {"Why"}, where
            assert [dash.page_of(k) for k in why] == ["Why"] * 3 + ["Why" + MORE] * 2
        else:
            assert dash.split == set() and {dash.page_of(k) for k in why} == {"Why"}, where
        assert tab_shown("Why") and tab_shown("Why" + MORE) == split, where
        for key in why:
            dash.show_view(key)
            window.focus.fit()
            QtWidgets.QApplication.processEvents()
            assert dash.tabs.tabText(dash.tabs.currentIndex()) == dash.page_of(key)
            assert window.views[key].isVisible()
            assert dash.panels[key].height() >= MIN_ROW_PX * scale, (where, key)
            for rule in ("legends", "not elided", "log ticks"):
                assert RULES[rule](window) == [], (where, key, rule)
    # A hidden view's room goes to the others: four in a 2 x 2 grid split after two.
    set_size(window, (1280, 720), 1.0)
    dash.set_panel_shown("saturation", False)
    assert [dash.page_of(k) for k in why if k != "saturation"] == \
        ["Why", "Why", "Why" + MORE, "Why" + MORE]
    dash.set_panel_shown("saturation", True)
    assert dash.page_of("saturation") == "Why"


def test_language_text_panel_takes_at_most_a_quarter(window):
    trained(window, "min-char-rnn", steps=3)
    panel = window.dashboard.panels["text"]
    assert panel.isVisible()
    assert panel.height() <= 0.25 * (panel.height() + window.dashboard.tabs.height()) + 1


def test_legibility_cheap_case(window):
    trained(window, "forget-bias")
    for scale in SCALES:
        set_size(window, (1280, 720), scale)
        assert broken(window, scale) == {}, scale


@pytest.mark.slow
@pytest.mark.parametrize("name", experiment_names())
def test_legibility_every_experiment_size_and_scale(window, name):
    trained(window, name)
    for size in SIZES:
        for scale in SCALES:
            set_size(window, size, scale)
            assert broken(window, scale) == {}, (size, scale)


# -- gradviz snapshot ---------------------------------------------------------------------
def test_snapshot_arguments_are_checked_in_one_line(capsys):
    from gradviz.cli import main
    for argv in (["snapshot", "--experiment", "nope", "--out", "x.png"],
                 ["snapshot", "--experiment", "vanishing-tanh", "--out", "x.jpg"],
                 ["snapshot", "--experiment", "vanishing-tanh", "--size", "big", "--out", "x.png"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "gradviz snapshot" in err


@pytest.mark.slow
def test_snapshot_writes_png_and_json_deterministically(tmp_path, qapp):
    from gradviz.ui.snapshot import snapshot
    one = snapshot("exploding-relu", tmp_path / "a.png", steps=12, then=True, size=(1024, 768))
    two = snapshot("exploding-relu", tmp_path / "b.png", steps=12, then=True, size=(1024, 768))
    assert one == two == json.loads((tmp_path / "a.json").read_text())
    assert QtGui.QImage(str(tmp_path / "a.png")).size() == QtCore.QSize(1024, 768)
    assert set(one) == {"size", "scale", "views"} and one["size"] == [1024, 768]
    for view in one["views"]:
        assert set(view) == {"key", "title", "rect", "focus", "legend", "axes"}
        for axis in view["axes"].values():
            assert set(axis) == {"log", "range", "ticks"}
    assert [v["key"] for v in one["views"] if v["focus"]] == ["loss", "gradnorm"] or \
        {v["key"] for v in one["views"] if v["focus"]} == {"loss", "gradnorm"}
    loss = next(v for v in one["views"] if v["key"] == "loss")
    assert len(loss["legend"]) > 2        # the first run is there as a comparison
    single = snapshot("exploding-relu", tmp_path / "v.png", steps=12, view="gradnorm")
    assert [v["key"] for v in single["views"]] == ["gradnorm"]
    assert not QtGui.QImage(str(tmp_path / "v.png")).isNull()


def test_a_view_small_on_screen_says_how_to_export_it_large(window, tmp_path, monkeypatch):
    # A figure is what the view shows: one small on screen is as cramped in the file, and
    # the status bar says how to have it large; a large view's export says nothing more.
    from gradviz.ui.focus import MIN_ROW_PX
    trained(window, "lstm-remembers")
    set_size(window, (1280, 720), 1.0)
    window.dashboard.show_view("gates")                 # on "Other views", four in 2 x 2
    QtWidgets.QApplication.processEvents()
    small = window.views["gates"].figure_widget().height()
    large = window.views["gradtime"].figure_widget().height()
    assert small < MIN_ROW_PX <= large
    for key, expect_hint in (("gates", True), ("gradtime", False)):
        window.dashboard.show_view(key)
        QtWidgets.QApplication.processEvents()
        path = str(tmp_path / f"{key}.png")
        monkeypatch.setattr(window.dialogs, "ask_save", lambda *a, p=path, **k: p)
        window.statusBar().clearMessage()
        window.export_view_dialog(key, "png")
        assert QtGui.QImage(path).width() > 0
        message = window.statusBar().currentMessage()
        assert ("double-click the view" in message) == expect_hint, (key, message)
    # Maximised, the same view exports large and without the hint.
    from gradviz.ui.snapshot import settle
    window.dashboard.show_view("gates")
    window.focus.toggle_maximized("gates")
    settle(window)
    path = str(tmp_path / "gates-large.png")
    monkeypatch.setattr(window.dialogs, "ask_save", lambda *a, **k: path)
    window.statusBar().clearMessage()
    window.export_view_dialog("gates", "png")
    assert "double-click" not in window.statusBar().currentMessage()
    assert QtGui.QImage(path).height() > 2 * 2 * small
    window.focus.restore()


def test_fitting_the_layout_again_keeps_the_page_in_front(window):
    # Trying the layouts hides and shows pages, and Qt brings another to the front when
    # the current one is hidden: on "Other views", a resize (or F11) jumped to "Why".
    trained(window, "lstm-remembers")
    dash = window.dashboard
    for size in ((1280, 720), (1600, 1000), (1024, 768)):
        set_size(window, size, 1.0)
        for key in ("gates", "cliff", "spectrum", "gradtime"):
            dash.show_view(key)
            page = dash.page_of(key)
            window.focus.fit()
            window.focus.fit()
            assert dash.tabs.tabText(dash.tabs.currentIndex()) == page, (size, key)
            assert window.views[key].isVisible(), (size, key)


def test_the_hint_to_press_space_goes_when_space_is_pressed(window, qtbot):
    from gradviz.ui.window import PRESS_SPACE
    window.load_experiment(load_experiment("vanishing-tanh"))
    assert window.statusBar().currentMessage().endswith(PRESS_SPACE)
    window.act_run.trigger()
    qtbot.waitUntil(lambda: window.state.running, timeout=10000)
    assert window.statusBar().currentMessage() == ""
    window.act_run.trigger()
    qtbot.waitUntil(lambda: not window.state.running, timeout=10000)
    window.statusBar().showMessage("something else")
    window.act_run.trigger()
    qtbot.waitUntil(lambda: window.state.running, timeout=10000)
    assert window.statusBar().currentMessage() == "something else"     # only the hint goes
    window.act_run.trigger()
    qtbot.waitUntil(lambda: not window.state.running, timeout=10000)
