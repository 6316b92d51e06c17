"""The dashboard's views: drawing synthetic runs of each cell, hostile numbers, the
gradient-flow cache, and export to PNG, SVG and CSV."""
import csv
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
from PyQt6 import QtCore, QtGui, QtTest, QtWidgets

from gradviz.config import RunConfig
from gradviz.engine.runs import files
from gradviz.ui.export import ExportError, close_with_lines
from gradviz.ui.figures import write_figures
from gradviz.ui.views import VIEW_CLASSES, make_views
from gradviz.ui.views.axes import FitAxis, LogAxis, format_magnitude
from gradviz.ui.views.gradtime import shown_rows
from gradviz.ui.views.items import WrappedText

KEYS = ["gradflow", "gradtime", "gates", "states", "loss", "gradnorm", "text"]
PLOT_KEYS = KEYS[:-1]
# The theory views (tests/test_theory_views.py), on the "Why" page.
WHY_KEYS = ["spectrum", "decay", "saturation", "cell", "cliff"]
# On the "Language" page, for the character models (tests/test_predtree_view.py).
LANGUAGE_KEYS = ["predtree"]
CELLS = {"lstm": dict(cell="lstm", L=2, D=2), "gru": dict(cell="gru", L=1, D=1),
         "rnn-tanh": dict(cell="rnn-tanh", L=1, D=2)}



def fill(views, history, text="the quick brown fox\njumps"):
    for view in views.values():
        view.set_data(history, history.latest)
    views["text"].set_text(text)


def png_colours(path: Path) -> tuple[QtGui.QImage, int]:
    image = QtGui.QImage(str(path))
    assert not image.isNull(), f"{path} does not decode as an image"
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB32)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    pixels = np.frombuffer(ptr, np.uint32)
    return image, len(np.unique(pixels))


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


# -- the contract -------------------------------------------------------------------------
def test_views_are_made_in_dashboard_order_with_titles(views):
    assert list(views) == KEYS + WHY_KEYS + LANGUAGE_KEYS
    assert [cls.key for cls in VIEW_CLASSES] == KEYS + WHY_KEYS + LANGUAGE_KEYS
    assert [cls.page for cls in VIEW_CLASSES] == (["Gradients"] * len(KEYS) + ["Why"] * len(WHY_KEYS)
                                                  + ["Language"] * len(LANGUAGE_KEYS))
    for view in views.values():
        assert view.title
        labels = [a.text() for a in view.context_menu().actions()]
        assert labels == ["Export PNG…", "Export SVG…", "Export CSV…"]


def test_right_click_on_a_plot_offers_export(qtbot, history):
    from gradviz.ui.views.gradnorm import GradnormView

    view = GradnormView()
    qtbot.addWidget(view)
    view.resize(800, 500)
    view.show()
    qtbot.waitExposed(view)
    view.set_data(history, history.latest)
    centre = view.graphics.geometry().center()
    with qtbot.waitSignal(view.customContextMenuRequested):
        QtTest.QTest.mouseClick(view.windowHandle(), QtCore.Qt.MouseButton.RightButton,
                                QtCore.Qt.KeyboardModifier.NoModifier, centre)
    menus = [m for m in view.findChildren(QtWidgets.QMenu) if m.isVisible()]
    assert len(menus) == 1
    assert [a.text() for a in menus[0].actions()] == ["Export PNG…", "Export SVG…",
                                                      "Export CSV…"]
    menus[0].close()


def export_action(view, suffix: str) -> QtGui.QAction:
    return next(a for a in view.context_menu().actions() if a.text() == f"Export {suffix}…")


def test_export_dialog_adds_the_suffix_and_reports_failures(views, history, tmp_path,
                                                            monkeypatch):
    view = views["loss"]
    view.set_data(history, history.latest)
    warnings = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning",
                        lambda parent, title, text: warnings.append(text))
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "chosen"), ""))
    export_action(view, "CSV").trigger()
    assert (tmp_path / "chosen.csv").read_text().startswith("step,loss,")
    assert warnings == []
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "gone" / "x.png"), ""))
    export_action(view, "PNG").trigger()
    assert len(warnings) == 1 and "Choose another folder" in warnings[0]


def test_clear_empties_every_view(views, history):
    fill(views, history)
    for key, view in views.items():
        view.clear()
        header, rows = view.csv_table()
        if key == "cliff":          # a lab that draws no run: its paths stay (test_theory_views)
            continue
        assert len(rows) == 0 or key == "text" and rows[0, 0] == "", key
    assert views["gradflow"].image_array() is None
    assert all(item.image is None for item in views["gradflow"].image.items)
    fill(views, history)
    assert views["gradflow"].image_array().shape[0] == len(history)


@pytest.mark.parametrize("cell", list(CELLS))
def test_every_view_draws_the_numbers_of_each_cell(views, make_history, cell):
    history = make_history(24, T=16, H=10, **CELLS[cell])
    fill(views, history)
    latest = history.latest
    K, L, D, T = history.dh_norm.shape
    for key, view in views.items():
        header, rows = view.csv_table()
        assert rows.ndim == 2 and rows.shape[1] == len(header), key

    header, rows = views["gradflow"].csv_table()
    assert rows.shape == (K, T + 2)
    np.testing.assert_array_equal(rows[:, 0], history.step)
    np.testing.assert_allclose(rows[:, 2:], history.dh_norm[:, 0, 0, :], rtol=1e-7)
    assert views["gradflow"].image_array().shape == (K, T)

    header, rows = views["gradtime"].csv_table()
    assert rows.shape[0] == T
    assert header[len(shown_rows(K))] == f"dL/dh step {history.step[-1]}"
    np.testing.assert_allclose(rows[:, len(shown_rows(K))], history.dh_norm[-1, 0, 0], rtol=1e-7)
    assert (history.dc_norm is not None) == any(h.startswith("dL/dc") for h in header)

    header, rows = views["gates"].csv_table()
    H = latest.gates.shape[-1]
    assert header == ["t"] + [f"unit {u}" for u in range(H)] + ["saturated low", "saturated high"]
    np.testing.assert_allclose(rows[:, 1:H + 1], latest.gates[0, 0, 0], rtol=1e-7)
    np.testing.assert_allclose(rows[:, -1], latest.sat_high[0, 0, 0], rtol=1e-7)

    header, rows = views["states"].csv_table()
    units = views["states"].units()
    assert units == list(range(8))
    np.testing.assert_allclose(rows[:, 1:9], latest.probe_h[0, 0, :, :8], rtol=1e-7)
    assert (latest.probe_c is not None) == ("c unit 0" in header)

    header, rows = views["loss"].csv_table()
    np.testing.assert_allclose(rows[:, 1], history.loss)
    np.testing.assert_allclose(rows[:, 2], history.baseline)

    header, rows = views["gradnorm"].csv_table()
    assert header[6:] == [f"grad_norm {n}" for n in history.param_names]
    np.testing.assert_allclose(rows[:, 1], history.grad_norm)
    np.testing.assert_allclose(rows[:, 6:], history.param_grad_norm, rtol=1e-7)

    header, rows = views["text"].csv_table()
    assert header == ["text"] and rows[0, 0] == "the quick brown fox\njumps"


def test_layer_direction_selector_only_when_there_is_a_choice(views, make_history):
    fill(views, make_history(6, cell="gru", L=1, D=1, T=8))
    assert views["gradflow"].selector.isHidden()
    history = make_history(6, cell="lstm", L=2, D=2, T=8)
    fill(views, history)
    selector = views["gradflow"].selector
    assert not selector.isHidden()
    assert [selector.itemText(i) for i in range(selector.count())] == [
        "layer 1, forward", "layer 1, backward", "layer 2, forward", "layer 2, backward"]
    selector.setCurrentIndex(3)   # layer 2, backward: the view redraws from that slice
    _, rows = views["gradflow"].csv_table()
    np.testing.assert_allclose(rows[:, 2:], history.dh_norm[:, 1, 1, :], rtol=1e-7)
    views["gates"].selector.setCurrentIndex(2)
    _, rows = views["gates"].csv_table()
    np.testing.assert_allclose(rows[:, 1:9], history.latest.gates[1, 0, 0], rtol=1e-7)


# -- gradient flow ------------------------------------------------------------------------
def test_gradflow_colours_follow_the_gradient(views, make_history):
    # decay < 1: ‖∂L/∂h_t‖ vanishes towards t = 0, so early timesteps get darker colours.
    view = views["gradflow"]
    view.set_data(make_history(20, T=30, decay=0.7), None)
    index = view.image_array().astype(int)
    assert (index < 255).all(), "finite gradients must not get the non-finite colour"
    column_means = index.mean(axis=0)
    assert column_means[-1] > column_means[0] + 100
    lo, hi = view.levels
    assert lo < np.log10(0.7 ** 29) + 0.6 and hi > -0.5


@pytest.mark.parametrize("view_key", PLOT_KEYS)
def test_hostile_numbers_do_not_break_any_view(views, make_capture, view_key):
    from gradviz.engine.runs.history import History

    dh = np.full((1, 1, 8), 1e-3, np.float32)
    dh[0, 0, :6] = [1e30, 1e-30, 0.0, np.inf, np.nan, -0.0]
    history = History()
    history.append(make_capture(0, T=8, dh=dh))
    history.append(make_capture(1, T=8, nonfinite=True, dh=dh))
    history.append(make_capture(2, T=8, loss=0.0, dh=np.zeros((1, 1, 8), np.float32)))
    view = views[view_key]
    view.set_data(history, history.latest)
    header, rows = view.csv_table()
    assert rows.shape[1] == len(header)
    if view_key == "gradflow":
        index = view.image_array()
        assert index[0, 3] == 255 and index[0, 4] == 255          # inf, nan: the marked colour
        assert index[0, 1] == index[0, 2] == index[0, 5] == 0     # 1e-30, 0, -0: bottom
        # 1e30 near the top of the scale's 254 colours (254: absent, 255: not finite)
        assert 248 <= index[0, 0] < 254 and 0 < index[0, 6] < 100   # 1e30 top, 1e-3 low
        lo, hi = view.levels
        assert lo <= -3 and hi >= 30
    plots = [getattr(view, name) for name in ("plot", "plot_h", "plot_c", "params_plot")
             if hasattr(view, name)]
    for plot in plots:
        for item in plot.listDataItems():
            x, y = item.xData, item.yData
            if x is not None:
                assert np.isfinite(x).all() and np.isfinite(y).all(), f"{view_key}: {item}"


def test_an_explosion_to_the_largest_finite_numbers_warns_nothing(views, make_capture):
    # A ReLU RNN that explodes passes through every magnitude up to float32's largest
    # before its first non-finite step: rows of 1e6 ... 1.7e308 in float64, states and
    # gradients at +-3.4e38. No view may print numpy's or pyqtgraph's overflow warnings.
    import warnings

    from gradviz.engine.runs.history import History

    f32 = np.float32(np.finfo(np.float32).max)
    history = History()
    for step in range(12):
        cap = make_capture(step, cell="lstm", T=10)
        big = 1.7 * 10.0 ** min(6 + 30 * step, 308)
        history.append(replace(
            cap, loss=big, grad_norm=big, grad_norm_clipped=big if step % 2 else 1.0,
            clip="norm", clip_threshold=1.0, clipped=True,
            dh_norm=np.full_like(cap.dh_norm, f32), dc_norm=np.full_like(cap.dc_norm, f32),
            probe_h=np.where(cap.probe_h > 0, f32, -f32).astype(np.float32),
            probe_c=np.where(cap.probe_c > 0, -f32, f32).astype(np.float32),
            param_grad_norm=np.full_like(cap.param_grad_norm, f32)))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for view in views.values():
                view.set_data(history, history.latest)
                view.grab()


def test_gradflow_keeps_its_colours_steady_and_widens_for_outliers(views, make_history,
                                                                    make_capture):
    view = views["gradflow"]
    history = make_history(10, T=12)
    view.set_data(history, None)
    first = view.levels
    for step in range(10, 20):   # more of the same data: the scale must not flicker
        history.append(make_capture(step, T=12, light=True))
        view.set_data(history, None)
        assert view.levels == first
    history.append(make_capture(20, T=12, dh=np.full((1, 1, 12), 1e6, np.float32)))
    for step in range(21, 40):
        history.append(make_capture(step, T=12, dh=np.full((1, 1, 12), 1e6, np.float32)))
    view.set_data(history, None)
    assert view.levels[1] >= 6.0


def test_gradflow_incremental_image_equals_a_fresh_one_across_merges(qtbot, make_capture):
    from gradviz.engine.runs.history import History
    from gradviz.ui.views.gradflow import GradflowView

    live, fresh = GradflowView(), GradflowView()
    qtbot.addWidget(live)
    qtbot.addWidget(fresh)
    history = History(capacity=16)
    merged = False
    for step in range(60):
        history.append(make_capture(step, T=10, light=True))
        merged |= int(history.count.max()) > 1
        live.set_data(history, None)
    assert merged, "the test must cover a history that merged rows"
    fresh.set_data(history, None)
    assert live.levels == fresh.levels
    np.testing.assert_array_equal(live.image_array(), fresh.image_array())
    # A cleared history refilled from step 0 is new data, not the cached rows.
    history.clear()
    for step in range(5):
        history.append(make_capture(step, T=10, seed=1000 + step, light=True))
    live.set_data(history, None)
    fresh.set_data(history, None)
    np.testing.assert_array_equal(live.image_array(), fresh.image_array())


def test_gradflow_columns_are_as_wide_as_the_steps_they_cover(qtbot, make_capture):
    from gradviz.engine.runs.history import History
    from gradviz.ui.views.gradflow import GradflowView

    view = GradflowView()
    qtbot.addWidget(view)
    history = History(capacity=8)
    for step in range(30):
        history.append(make_capture(step, T=6, light=True))
    view.set_data(history, None)
    steps = history.step
    assert len(np.unique(np.diff(steps))) > 1, "columns should cover unequal numbers of steps"
    # Every step 0..29 falls in the column of the row that holds it: the axis is linear.
    holder = np.searchsorted(steps, np.arange(30), side="left")
    assert [view.image.column_at(s) for s in range(30)] == list(holder)
    drawn = [item for item in view.image.items if item.isVisible()]
    left = min(item.mapRectToParent(item.boundingRect()).left() for item in drawn)
    right = max(item.mapRectToParent(item.boundingRect()).right() for item in drawn)
    assert (left, right) == (-0.5, steps[-1] + 0.5)
    np.testing.assert_array_equal(np.concatenate([item.image for item in drawn]),
                                  view.image_array())
    axis = view.plot.getAxis("bottom")
    ticks = [v for _, values in axis.tickValues(left, right, 600) for v in values]
    assert all(left <= t <= right for t in ticks) and len(ticks) >= 2


# -- the other views ----------------------------------------------------------------------
def test_gates_offer_the_cells_own_gates_with_fixed_levels(views, make_history):
    view = views["gates"]
    fill(views, make_history(4, cell="lstm", T=10))
    assert view.gate_names == ["i", "f", "g", "o"]
    view.gate_combo.setCurrentIndex(2)   # g, the tanh candidate
    assert tuple(view.image.getLevels()) == (-1.0, 1.0)
    view.gate_combo.setCurrentIndex(1)
    assert tuple(view.image.getLevels()) == (0.0, 1.0)
    fill(views, make_history(4, cell="gru", T=10))
    assert view.gate_names == ["r", "z", "n"]
    fill(views, make_history(4, cell="rnn-tanh", T=10))
    assert view.gate_names == ["h"]
    assert tuple(view.image.getLevels()) == (-1.0, 1.0)
    for item in (view.low_curve, view.high_curve):
        y = item.yData
        assert len(y) == 10 and (0 <= y).all() and (y <= 1).all()


def test_cell_state_plots_only_for_lstm(views, make_history):
    fill(views, make_history(4, cell="lstm", T=10))
    assert views["gradtime"].plot_c.scene() is not None
    assert views["states"].plot_c.scene() is not None
    fill(views, make_history(4, cell="gru", T=10))
    assert views["gradtime"].plot_c.scene() is None
    assert views["states"].plot_c.scene() is None


def test_gradtime_draws_the_newest_row_bold_over_fading_earlier_ones(views, make_history):
    history = make_history(40, T=12)
    views["gradtime"].set_data(history, history.latest)
    newest = views["gradtime"].curves_h[-1]
    np.testing.assert_allclose(newest.yData, history.dh_norm[-1, 0, 0], rtol=1e-7)
    rows = shown_rows(40)
    assert rows[-1] == 39 and 3 <= len(rows) <= 6 and rows == sorted(rows)
    assert shown_rows(41)[:-1] == rows[:-1], "earlier curves should stay put as rows arrive"
    greys = [c.opts["pen"].color().lightness() for c in views["gradtime"].curves_h[:-1]]
    assert greys == sorted(greys, reverse=True), "older curves should be fainter"


def test_states_unit_choice(views, make_history):
    history = make_history(4, cell="gru", T=10, H=12)
    view = views["states"]
    view.set_data(history, history.latest)
    view.first_unit.setValue(9)
    assert view.units() == [9, 10, 11]
    view.unit_count.setValue(2)
    header, rows = view.csv_table()
    assert header == ["t", "h unit 9", "h unit 10"]
    np.testing.assert_allclose(rows[:, 2], history.latest.probe_h[0, 0, :, 10], rtol=1e-7)


def test_loss_and_gradnorm_mark_events_and_clipping(views, make_history, make_capture):
    from gradviz.engine.runs.history import History

    history = History()
    for step in range(12):
        history.append(make_capture(step, T=8, clip="norm", clip_threshold=0.5,
                                    nonfinite=step == 5))
    fill(views, history)
    assert list(views["loss"].nonfinite_marks.xData) == [5.0, 5.0]
    assert list(views["gradnorm"].nonfinite_marks.xData) == [5.0, 5.0]
    x = views["gradnorm"].clipped_marks.xData
    assert 5.0 not in x and len(x) == int(history.clipped.sum()) - int(history.clipped[5])
    np.testing.assert_allclose(views["gradnorm"].threshold.yData, 0.5)
    np.testing.assert_allclose(views["loss"].baseline_curve.yData, history.baseline)
    assert len(views["gradnorm"].param_curves) == len(history.param_names)


def test_clip_threshold_is_drawn_only_where_the_run_clipped_by_norm(views, make_capture):
    from gradviz.engine.runs.history import History

    history = History()
    for step in range(10):
        # clipping by value for the first half of the run, by norm from step 5 on
        history.append(make_capture(step, T=8, clip="value" if step < 5 else "norm",
                                    clip_threshold=0.5))
    fill(views, history)
    x = np.asarray(views["gradnorm"].threshold.xData)
    assert x.min() >= 5 and x.max() == 9
    header, rows = views["gradnorm"].csv_table()
    column = rows[:, header.index("clip_threshold")]
    assert np.isnan(column[:5]).all() and (column[5:] == 0.5).all()


def test_log_axis_labels_stay_readable(qapp):   # font metrics need a QApplication
    axis = LogAxis("left")
    axis.setLogMode(False, True)
    wide = axis.tickValues(-30.0, 2.0, 400)
    major = wide[0][1]
    assert len(major) <= 400 / LogAxis.PIXELS_PER_LABEL and 0.0 in major
    assert len(set(np.diff(major))) == 1 and major[1] - major[0] >= 1.0
    strings = axis.tickStrings(major, 1.0, wide[0][0])
    assert strings[major.index(0.0)] == "1" and strings[major.index(-28.0)] == "10⁻²⁸"
    assert all(label is None for label in axis.tickStrings(wide[1][1], 1.0, wide[1][0]))
    narrow = axis.tickValues(np.log10(0.11), np.log10(0.17), 400)
    strings = axis.tickStrings(narrow[0][1], 1.0, narrow[0][0])
    assert len(strings) >= 3 and all(0.11 <= float(s) <= 0.17 for s in strings)
    # A linear axis over huge values (an exploding hidden state) writes powers of ten.
    linear = FitAxis("left")
    assert linear.tickStrings([0.0, 1e21, -2.5e21], 1.0, 1e21) == ["0", "10²¹", "-2.5·10²¹"]
    plain = [0.0, 0.5, 1.0]          # numbers that print plainly are left as pyqtgraph has them
    assert linear.tickStrings(plain, 1.0, 0.5) == pg.AxisItem("left").tickStrings(plain, 1.0, 0.5)
    # 1.4 decades on a short axis: one decade in view, so 5× is labelled too.
    short = axis.tickValues(np.log10(0.15), np.log10(4.0), 100)
    labels = [s for level in short for s in axis.tickStrings(level[1], 1.0, level[0]) if s]
    assert sorted(labels, key=float) == ["0.5", "1"]
    assert [format_magnitude(x) for x in (1000.0, 0.02, 2e-5, 1e6)] == ["1000", "0.02",
                                                                        "2·10⁻⁵", "10⁶"]


# -- export -------------------------------------------------------------------------------
@pytest.mark.parametrize("key", KEYS)
def test_every_view_exports_png_svg_and_csv(views, history, tmp_path, key):
    fill(views, history)
    view = views[key]
    view.export(tmp_path / f"{key}.png")
    image, colours = png_colours(tmp_path / f"{key}.png")
    widget = view.figure_widget()
    ratio = widget.devicePixelRatioF()
    assert (image.width(), image.height()) == (round(widget.width() * ratio),
                                               round(widget.height() * ratio))
    assert colours > 2, "a blank export"

    view.export(tmp_path / f"{key}.svg")
    root = ET.parse(tmp_path / f"{key}.svg").getroot()
    tags = {element.tag.rsplit("}", 1)[-1] for element in root.iter()}
    assert ({"path", "polyline"} & tags) if key != "text" else ("text" in tags)

    view.export(tmp_path / f"{key}.csv")
    header, rows = read_csv(tmp_path / f"{key}.csv")
    expected_header, expected = view.csv_table()
    assert header == expected_header and len(rows) == len(expected)
    if key == "text":
        assert rows[0][0] == expected[0, 0]
    else:
        values = np.array(rows, dtype=np.float64)
        np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))
        np.testing.assert_array_equal(values[~np.isnan(values)], expected[~np.isnan(expected)])


def test_hidden_never_shown_view_exports_at_a_usable_size(qtbot, history, tmp_path):
    from gradviz.ui.views.loss import LossView

    view = LossView()
    qtbot.addWidget(view)
    view.set_data(history, history.latest)
    view.export(tmp_path / "loss.png")
    image, colours = png_colours(tmp_path / "loss.png")
    assert image.width() >= 600 and image.height() >= 300 and colours > 2


def test_view_hidden_inside_a_shown_window_exports_at_a_usable_size(qtbot, history, tmp_path):
    from gradviz.ui.views.text import TextView

    window = QtWidgets.QWidget()
    qtbot.addWidget(window)
    layout = QtWidgets.QHBoxLayout(window)
    layout.addWidget(QtWidgets.QLabel("another panel"))
    view = TextView()
    layout.addWidget(view)
    view.hide()                       # as the window hides the text panel for other tasks
    window.resize(1000, 600)
    window.show()
    qtbot.waitExposed(window)
    view.set_text("abc " * 200)
    view.export(tmp_path / "text.png")
    image, colours = png_colours(tmp_path / "text.png")
    assert image.width() >= 300 and image.height() >= 300 and colours > 2


def test_export_failures_name_the_file_and_keep_the_old_one(views, history, tmp_path,
                                                           monkeypatch):
    fill(views, history)
    view = views["loss"]
    missing = tmp_path / "no such folder" / "loss.png"
    with pytest.raises(ExportError, match="Choose another folder") as err:
        view.export(missing)
    assert str(missing) in str(err.value) and "does not exist" in str(err.value)

    blocker = tmp_path / "a file"
    blocker.write_text("x")
    with pytest.raises(ExportError):
        view.export(blocker / "loss.csv")
    with pytest.raises(ExportError, match="unknown file type"):
        view.export(tmp_path / "loss.jpg")

    target = tmp_path / "loss.csv"
    target.write_text("precious")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    for suffix in (".csv", ".png", ".svg"):
        kept = target.with_suffix(suffix)
        kept.write_text("precious")
        with pytest.raises(ExportError, match="No space left on device"):
            view.export(kept)
        assert kept.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a file", "loss.csv", "loss.png",
                                                         "loss.svg"], "temp files left behind"


def test_export_replaces_an_existing_file(views, history, tmp_path):
    fill(views, history)
    target = tmp_path / "gradnorm.csv"
    target.write_text("old")
    views["gradnorm"].export(target)
    assert target.read_text().startswith("step,grad_norm,")


def test_svg_close_path_rewrite():
    assert close_with_lines("M0,0 L10,0 L10,5 Z M1,1 L2,2 Z ") == \
        "M0,0 L10,0 L10,5 L0,0 M1,1 L2,2 L1,1"
    assert close_with_lines("M3,4 L5,6") == "M3,4 L5,6"


def test_write_figures_writes_every_plot(qapp, make_history, tmp_path):
    history = make_history(12, cell="gru", T=10)
    folder = tmp_path / "figures"
    written = write_figures(folder, RunConfig(cell="gru"), history)
    assert sorted(p.name for p in written) == sorted(f"{k}{s}" for k in PLOT_KEYS + WHY_KEYS
                                                     for s in (".png", ".svg"))
    for path in written:
        assert path.parent == folder and path.stat().st_size > 1000
        if path.suffix == ".png":
            assert png_colours(path)[1] > 2
        else:
            ET.parse(path)


@pytest.mark.slow
def test_write_figures_needs_no_display(tmp_path):
    """As from `gradviz run --figures DIR`: a fresh process, no QApplication, no display."""
    script = (
        "import os, sys; sys.path.insert(0, {tests!r})\n"
        "from conftest import fill_history, synthetic_capture\n"
        "os.environ.pop('QT_QPA_PLATFORM', None)  # conftest sets it; Qt reads it later\n"
        "from gradviz.config import RunConfig\n"
        "from gradviz.ui.figures import write_figures\n"
        "h = fill_history(synthetic_capture(s, T=8) for s in range(5))\n"
        "print(len(write_figures({out!r}, RunConfig(), h)))\n"
    ).format(tests=str(Path(__file__).parent), out=str(tmp_path))
    env = {k: v for k, v in os.environ.items()
           if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(2 * len(PLOT_KEYS + WHY_KEYS))
    assert (tmp_path / "gradflow.png").exists()


# -- layout: keys beside the data, nothing cut off or overlapping ---------------------------
# About the size of a panel in a 1280 x 800 window.
SMALL_PANEL = (320, 340)


def laid_out(view, size, history, qtbot):
    """Show ``view`` at ``size`` with ``history`` drawn and painted once (auto-range and
    layout happen when the scene is painted)."""
    view.resize(*size)
    view.show()
    qtbot.waitExposed(view)
    view.set_data(history, history.latest)
    QtCore.QCoreApplication.sendPostedEvents()
    view.graphics.grab()
    return view


def scene_items(view, kind):
    return [item for item in view.graphics.scene().items()
            if isinstance(item, kind) and item.isVisible()]


def axis_label_rects(view):
    """Scene rectangles of the visible axis labels' text (Qt's text margin left out)."""
    rects = []
    for axis in scene_items(view, pg.AxisItem):
        if axis.label.isVisible() and axis.label.toPlainText().strip():
            margin = axis.label.document().documentMargin()
            inner = axis.label.boundingRect().adjusted(margin, margin, -margin, -margin)
            rects.append((axis.label.toPlainText(), axis.label.mapRectToScene(inner)))
    return rects


def tick_labels(axis):
    """(rectangle in the axis, text) of each tick label, as the axis paints them."""
    image = QtGui.QImage(10, 10, QtGui.QImage.Format.Format_RGB32)
    painter = QtGui.QPainter(image)
    try:
        return [(rect, text) for rect, _, text in axis.generateDrawSpecs(painter)[2]]
    finally:
        painter.end()


def text_rects(view):
    """Scene rectangles of every caption, heading and colour key with text."""
    return [(text.plain_text(), text.sceneBoundingRect())
            for text in scene_items(view, WrappedText) if text.html]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("key", PLOT_KEYS)
def test_texts_neither_hide_data_nor_overlap_nor_leave_the_panel(qtbot, make_history, make_capture,
                                                                 key, cell):
    from gradviz.engine.runs.history import History

    history = History()
    for i in range(40):   # clipping and a non-finite step: the longest keys
        history.append(make_capture(25 * i, cell=cell, L=2, D=2, T=20, H=8, clip="norm",
                                    clip_threshold=0.5, nonfinite=i == 7,
                                    light=i % 3 != 0 and i != 39))
    view = make_views()[key]
    qtbot.addWidget(view)
    laid_out(view, SMALL_PANEL, history, qtbot)
    assert not scene_items(view, pg.LegendItem), "legends inside a plot hide its data"
    visible = QtCore.QRectF(view.graphics.viewport().rect())
    boxes = [vb.sceneBoundingRect() for vb in scene_items(view, pg.ViewBox)]
    texts = text_rects(view)
    labels = axis_label_rects(view)
    assert texts, "every plot view names its curves or its heatmap's colours"
    for name, rect in texts + labels:
        assert visible.contains(rect.adjusted(1, 1, -1, -1)), f"{key}: {name!r} is cut off"
    for name, rect in texts:
        for box in boxes:
            assert not rect.intersects(box), f"{key}: {name!r} covers a plot"
    for axis in scene_items(view, pg.AxisItem):
        ticks = tick_labels(axis)
        for rect, tick in ticks:
            assert visible.contains(axis.mapRectToScene(rect)), f"{key}: tick {tick!r} cut off"
        for i, (rect_a, a) in enumerate(ticks):   # "200400600" is no use to anyone
            for rect_b, b in ticks[i + 1:]:
                assert not rect_a.intersects(rect_b), f"{key}: ticks {a!r} and {b!r} overlap"
    everything = texts + labels
    for i, (a, rect_a) in enumerate(everything):
        for b, rect_b in everything[i + 1:]:
            assert not rect_a.intersects(rect_b), f"{key}: {a!r} overlaps {b!r}"


@pytest.mark.parametrize("key", PLOT_KEYS)
def test_no_axis_rescales_its_values_with_an_si_prefix(qtbot, make_capture, key):
    from gradviz.engine.runs.history import History

    history = History()
    for step in range(5):
        capture = make_capture(step, T=12, H=8)
        # Small numbers everywhere, for which pyqtgraph would label "(x0.001)".
        capture.probe_h[...] *= 1e-3
        capture.probe_c[...] *= 1e-3
        history.append(capture)
    view = make_views()[key]
    qtbot.addWidget(view)
    laid_out(view, (640, 400), history, qtbot)
    axes = scene_items(view, pg.AxisItem)
    assert axes
    for axis in axes:
        assert axis.autoSIPrefix is False, f"{key}: {axis.labelString()}"
        assert "(x" not in axis.labelString(), f"{key}: {axis.labelString()}"
    if key == "states":
        ticks = [float(v) for _, values in view.plot_h.getAxis("left").tickValues(
            *view.plot_h.viewRange()[1], 300) for v in values]
        assert max(abs(t) for t in ticks) < 0.01, "h values should read as they are"


def test_gradtime_key_names_the_real_training_steps(qtbot, make_history):
    history = make_history(300, T=12)
    view = make_views()["gradtime"]
    qtbot.addWidget(view)
    laid_out(view, SMALL_PANEL, history, qtbot)
    rows = shown_rows(len(history))
    steps = [int(history.step[k]) for k in rows]
    assert steps[-1] == 299
    assert view.colour_key.labels == [f"{steps[-1]} (newest)"] + [str(s) for s in steps[-2::-1]]
    text = view.colour_key.plain_text()
    assert text.startswith("step") and "299 (newest)" in text and str(steps[0]) in text
    # The colours in the key are those of the curves.
    drawn = [c.opts["pen"].color().name() for c in view.curves_h[-len(rows):]][::-1]
    assert [colour for colour, _, _ in view.colour_key.entries] == drawn


def test_keys_follow_what_is_drawn(qtbot, make_history, make_capture):
    from gradviz.engine.runs.history import History

    views = make_views()
    for v in views.values():
        qtbot.addWidget(v)
    plain = make_history(10, T=8, H=12)
    fill(views, plain)
    assert views["states"].colour_key.labels == [str(u) for u in range(8)]
    views["states"].first_unit.setValue(10)
    assert views["states"].colour_key.labels == ["10", "11"]
    assert views["loss"].colour_key.labels == ["loss", "no-memory baseline (0.167)"]
    assert views["gradnorm"].colour_key.labels == [], "one curve needs no key"
    assert views["gradnorm"].params_key.labels == ["W_ih", "W_hh", "b_ih", "b_hh", "readout W",
                                                   "readout b"]

    history = History()
    for step in range(12):
        history.append(make_capture(step, T=8, clip="norm", clip_threshold=0.5,
                                    nonfinite=step == 5))
    fill(views, history)
    assert views["gradnorm"].colour_key.labels == [
        "before", "after", "threshold", "clipped", "not finite"]
    assert views["gradnorm"].colour_key.plain_text().startswith("clipping")
    assert views["loss"].colour_key.labels[-1] == "not finite (step skipped)"
    assert "not finite" in views["gradflow"].colour_key.plain_text()

    # A newest step with nothing finite to draw says so in the keys.
    history.append(make_capture(12, T=8, nonfinite=True,
                                dh=np.full((1, 1, 8), np.nan, np.float32)))
    fill(views, history)
    assert views["gradtime"].colour_key.labels[0] == "12 (newest, not finite)"
    assert views["gradtime"].colour_key.labels[1:] == [
        str(history.step[k]) for k in shown_rows(len(history))[-2::-1]]
    assert views["gradnorm"].params_key.labels[0] == "W_ih (not finite)"


def test_gradnorm_groups_tensors_by_the_layer_the_capture_names(views, make_capture):
    from gradviz.engine.runs.history import History

    history = History()
    for step in range(5):
        capture = make_capture(step, T=8, L=2, D=1)
        # Names that say nothing of layers: the grouping must come from param_owners.
        names = tuple(f"tensor{p}" for p in range(len(capture.param_names)))
        history.append(replace(capture, param_names=names))
    owners = history.latest.param_owners
    view = views["gradnorm"]
    view.set_data(history, history.latest)
    assert view.selector.isVisibleTo(view) and view.selector.count() == 2
    for index, chosen in enumerate([(0, 0), (1, 0)]):
        view.selector.setCurrentIndex(index)
        expected = [p for p, owner in enumerate(owners) if owner in (None, chosen)]
        assert view.shown_params() == expected
        drawn = [p for p, item in enumerate(view.param_curves)
                 if item.xData is not None and len(item.xData)]
        assert drawn == expected
        assert view.params_key.labels == [names[p] for p in expected]


def test_gradnorm_groups_a_capture_without_owners_by_the_historys(views, make_capture):
    # A capture that names no owners (an older run's) is grouped by the owners its
    # History found from the parameter names, exactly as one that names them.
    from gradviz.engine.runs.history import History

    grouped = {}
    for label, strip in (("with", False), ("without", True)):
        history = History()
        for step in range(5):
            capture = make_capture(step, T=8, L=2, D=2)
            history.append(replace(capture, param_owners=()) if strip else capture)
        view = views["gradnorm"]
        view.set_data(history, history.latest)
        assert view.selector.isVisibleTo(view), label
        grouped[label] = (view.shown_params(), view.params_key.labels)
    assert grouped["without"] == grouped["with"]
    names = history.param_names
    shown = grouped["without"][0]
    assert [names[i] for i in shown] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                         "bias_hh_l0", "readout.weight", "readout.bias"]


def test_gradnorm_y_range_fits_the_finite_nonzero_data(qtbot, make_capture):
    from gradviz.engine.runs.history import History

    history = History()
    for step in range(30):
        capture = make_capture(step, T=10, clip="norm", clip_threshold=0.05,
                               nonfinite=step == 4)
        capture.param_grad_norm[1] = 0.0          # a tensor with no gradient at all
        history.append(capture)
    view = make_views()["gradnorm"]
    qtbot.addWidget(view)
    laid_out(view, SMALL_PANEL, history, qtbot)
    finite = np.concatenate([history.grad_norm, history.grad_norm_clipped, [0.05]])
    finite = np.log10(finite[np.isfinite(finite) & (finite > 0)])
    lo, hi = view.plot.viewRange()[1]
    span = finite.max() - finite.min()
    assert lo < finite.min() and hi > finite.max(), "the data must be inside the plot"
    assert lo > finite.min() - 0.3 * span and hi < finite.max() + 0.3 * span, \
        "the data must fill the plot (a margin, not a squashed curve)"
    nonzero = history.param_grad_norm[:, [0] + list(range(2, len(history.param_names)))]
    nonzero = nonzero[np.isfinite(nonzero)]
    lo, hi = view.params_plot.viewRange()[1]
    assert lo < np.log10(nonzero.min()) and hi > np.log10(nonzero.max())
    assert lo > np.log10(nonzero.min()) - 1.0, "an exact zero must not stretch the log axis"
    assert history.param_names[1] == "weight_hh_l0" and view.params_key.labels[1] == "W_hh = 0"


def test_gradtime_y_range_fits_the_curves_shown(qtbot, make_history, make_capture):
    history = make_history(20, T=16, decay=0.5)
    dh = np.full((1, 1, 16), 10.0, np.float32)     # the newest step explodes ...
    dh[0, 0, :3] = 0.0                              # ... after gradients that vanished to 0
    history.append(make_capture(20, T=16, dh=dh))
    view = make_views()["gradtime"]
    qtbot.addWidget(view)
    laid_out(view, SMALL_PANEL, history, qtbot)
    shown = history.dh_norm[shown_rows(len(history)), 0, 0]
    shown = np.log10(shown[shown > 0])
    lo, hi = view.plot_h.viewRange()[1]
    assert lo < shown.min() and hi > shown.max() == 1.0
    assert lo > shown.min() - 1.0


def test_gates_heatmap_takes_most_of_the_height_and_its_colour_bar_reads(qtbot, make_history):
    history = make_history(4, cell="lstm", T=20, H=16)
    view = make_views()["gates"]
    qtbot.addWidget(view)
    for size in (SMALL_PANEL, (640, 600)):
        laid_out(view, size, history, qtbot)
        heat = view.heat.getViewBox().sceneBoundingRect().height()
        sat = view.sat.getViewBox().sceneBoundingRect().height()
        assert heat > 1.5 * sat, size
    view.gate_combo.setCurrentIndex(2)   # g: levels -1 .. 1
    view.graphics.grab()   # an axis finds its labels' width when it paints them ...
    view.graphics.grab()   # ... and takes that width in the next layout
    axis = view.bar.axis
    texts = tick_labels(axis)
    strings = [text for _, text in texts]
    assert {float(s) for s in strings} >= {-1.0, -0.5, 0.0, 0.5, 1.0}, strings
    for rect, text in texts:
        assert rect.right() <= axis.width(), f"tick label {text!r} cut off"
    assert view.sat_key.labels == ["< -0.8", "> 0.8"]
    assert "g (cell candidate)" in view.heading.plain_text()


def test_heatmap_axes_end_where_the_image_does(qtbot, make_history):
    """No padding: a gradient-flow axis that starts below t = 0 shows timesteps that do not
    exist (it did, with pyqtgraph's default padding, at T = 100: -10)."""
    from gradviz.ui.views.gates import GatesView
    from gradviz.ui.views.gradflow import GradflowView
    history = make_history(n=30, T=100)
    flow, gates = GradflowView(), GatesView()
    for view in (flow, gates):
        qtbot.addWidget(view)
        view.resize(400, 400)
        view.show()
        view.set_data(history, history.latest)
    qtbot.waitUntil(lambda: flow.plot.viewRange()[1][1] > 1 and gates.heat.viewRange()[0][1] > 1)
    (x0, _), (t0, t1) = flow.plot.viewRange()
    assert (t0, t1) == (-0.5, 99.5) and x0 == -0.5
    (g0, g1), _ = gates.heat.viewRange()
    assert (g0, g1) == (-0.5, 99.5)


def test_the_clipping_plot_shows_before_after_threshold_and_clipped_steps_apart(views,
                                                                                make_capture):
    from gradviz.engine.runs.history import History

    view = views["gradnorm"]
    view.resize(700, 420)
    view.show()
    history = History()
    rng = np.random.default_rng(0)
    for step in range(40):
        dh = np.full((1, 1, 12), float(np.exp(rng.normal(0.0, 1.0))), np.float32)
        history.append(make_capture(step, T=12, dh=dh, clip="norm", clip_threshold=2.0))
    view.set_data(history, history.latest)
    QtWidgets.QApplication.processEvents()
    clipped = history.step[history.clipped]
    assert 5 < len(clipped) < 35
    # Every clipped step is marked, and only those.
    np.testing.assert_array_equal(view.clipped_ticks(), clipped)
    # The marks sit along the bottom edge of the plot, under every curve: none covers
    # the norm before clipping.
    lo, hi = view.plot.getViewBox().viewRange()[1]
    y = np.log10(view.clipped_marks.yData)
    assert (y < lo + 0.1 * (hi - lo)).all() and (y > lo).all()
    assert (np.log10(history.grad_norm) > y.max()).all()
    # The threshold is drawn, as a band wider than the curve that runs along it and under
    # it, so the norm after clipping neither hides it nor is hidden.
    threshold_pen = view.threshold.opts["pen"]
    after_pen = view.after.opts["pen"]
    assert np.allclose(view.threshold.yData, 2.0)
    assert threshold_pen.widthF() >= 3 * after_pen.widthF()
    items = view.plot.items                     # drawn in this order (equal z)
    assert items.index(view.threshold) < items.index(view.after) < items.index(view.clipped_marks)
    np.testing.assert_allclose(view.after.yData, history.grad_norm_clipped)
    # Zoomed, the marks follow the bottom edge.
    view.plot.setYRange(-0.2, 0.2)
    lo, hi = view.plot.getViewBox().viewRange()[1]
    y = np.log10(view.clipped_marks.yData)
    assert (y < lo + 0.1 * (hi - lo)).all() and (y > lo).all()
    assert [label for _, _, label in view.colour_key.entries] == [
        "before", "after", "threshold", "clipped"]


def test_a_curve_left_with_one_point_shows_it_as_a_dot(qtbot):
    # A line through one point draws nothing: the one finite step of a run that diverged
    # at once (exploding-relu's step 0, "in the hundreds") was invisible.
    from gradviz.ui.views.items import curve
    from gradviz.ui.views.style import pen
    widget = pg.PlotWidget()
    qtbot.addWidget(widget)
    line = curve(widget.getPlotItem(), pen(0, width=1.5))
    line.setData([0.0], [400.0])
    assert line.opts["symbol"] == "o"
    assert pg.mkPen(line.opts["symbolPen"]).color() == pg.mkPen(line.opts["pen"]).color()
    line.setData([0.0, 1.0], [400.0, 300.0])            # a line again: no dots on it
    assert line.opts["symbol"] is None
    line.setData([], [])
    assert line.opts["symbol"] is None
    # A curve with symbols of its own keeps them.
    from gradviz.ui.views.items import Curve
    marks = Curve(pen=None, symbol="|", skipFiniteCheck=True)
    widget.getPlotItem().addItem(marks)
    marks.setData([3.0], [1.0])
    assert marks.opts["symbol"] == "|"
