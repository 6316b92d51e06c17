"""Exports that are whole: a view's PNG at 1x, 2x, 3x, 1920 and 3840 pixels wide holds the
whole view under its title line, not cut; in its SVG every data path lies inside its
plot's rectangle, whatever viewers do with clip-path."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PyQt6 import QtCore, QtGui

from gradviz.ui.svgclip import clip_polygon, clip_polyline

from conftest import fill_history, synthetic_capture

TITLE = "rnn-relu, adding, T = 50, H = 32, 1 layer, sgd lr 0.01, clip by norm at 2"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def loss_view(qtbot):
    from gradviz.ui.views.loss import LossView

    view = LossView()
    qtbot.addWidget(view)
    view.resize(640, 400)
    view.show()
    qtbot.waitExposed(view)
    history = fill_history(synthetic_capture(s, T=8, light=s % 10 != 0) for s in range(300))
    view.set_data(history, history.latest)
    return view


def darkness(image: QtGui.QImage) -> np.ndarray:
    """(H, W) in [0, 1]: 0 white, 1 black."""
    image = image.convertToFormat(QtGui.QImage.Format.Format_Grayscale8)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    rows = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine())
    return 1.0 - rows[:, :image.width()].astype(np.float64) / 255.0


def cells(ink: np.ndarray, n: int = 8) -> np.ndarray:
    """Mean ink of an n x n grid over the image."""
    h, w = ink.shape
    return np.array([[ink[i * h // n:(i + 1) * h // n, j * w // n:(j + 1) * w // n].mean()
                      for j in range(n)] for i in range(n)])


def title_line(ink: np.ndarray) -> tuple[int, np.ndarray]:
    """The rows of the first line of ink (the title) and its columns with ink."""
    rows = np.flatnonzero(ink.max(axis=1) > 0.5)
    end = rows[0]
    while end + 1 < len(ink) and ink[end + 1].max() > 0.5:
        end += 1
    return end, np.flatnonzero(ink[rows[0]:end + 1].max(axis=0) > 0.5)


@pytest.mark.parametrize("size", [("scale", 1.0), ("scale", 2.0), ("scale", 3.0),
                                  ("width", 1920), ("width", 3840)])
def test_a_views_png_holds_the_whole_view_under_its_whole_title(loss_view, tmp_path, size):
    widget = loss_view.figure_widget()
    loss_view.set_export_setup(lambda: (TITLE, 1.0))
    loss_view.export(tmp_path / "one.png")
    reference = QtGui.QImage(str(tmp_path / "one.png"))
    kind, value = size
    scale = value if kind == "scale" else value / widget.width()
    loss_view.set_export_setup(lambda: (TITLE, scale))
    loss_view.export(tmp_path / "view.png")
    image = QtGui.QImage(str(tmp_path / "view.png"))
    assert image.width() == round(widget.width() * scale)
    assert image.height() == round(widget.height() * scale)
    ink = darkness(image)
    # The title is whole: centred, with white margins on both sides, on the first line.
    end, columns = title_line(ink)
    width = image.width()
    assert columns[0] > 0.02 * width and columns[-1] < 0.98 * width, "the title is cut"
    assert abs((columns[0] + columns[-1]) / 2 - width / 2) < 0.05 * width
    # Ink in all four quadrants of the view under it.
    body = ink[end + 1:]
    h, w = body.shape
    for quadrant in (body[:h // 2, :w // 2], body[:h // 2, w // 2:],
                     body[h // 2:, :w // 2], body[h // 2:, w // 2:]):
        assert (quadrant > 0.5).sum() > 20 * scale, "a quadrant of the view is empty"
    # The same picture as at 1x, drawn finer: not a part of it enlarged.
    small = image.scaled(reference.size(), QtCore.Qt.AspectRatioMode.IgnoreAspectRatio,
                         QtCore.Qt.TransformationMode.SmoothTransformation)
    difference = np.abs(cells(darkness(small)) - cells(darkness(reference)))
    assert difference.max() < 0.08, f"the picture differs from the 1x one ({difference.max():.2f})"


def svg_rects(root) -> dict[str, tuple[float, float, float, float]]:
    rects = {}
    for clip in root.iter(SVG + "clipPath"):
        numbers = [float(n) for n in re.findall(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?",
                                               clip.find(SVG + "path").get("d"))]
        xs, ys = numbers[0::2], numbers[1::2]
        rects[clip.get("id")] = (min(xs), min(ys), max(xs), max(ys))
    return rects


def data_points(element, rects, rect=None, out=None):
    """(x, y, rect) of every point of the paths and polylines drawn under a clip-path."""
    out = [] if out is None else out
    reference = element.get("clip-path")
    if reference:
        rect = rects[reference[5:-1]]
    tag = element.tag.removeprefix(SVG)
    if rect is not None and tag in ("path", "polyline") and not element.get("transform"):
        text = element.get("d") if tag == "path" else element.get("points")
        numbers = [float(n) for n in re.findall(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", text)]
        out += [(x, y, rect) for x, y in zip(numbers[0::2], numbers[1::2])]
    for child in element:
        if child.tag.removeprefix(SVG) != "clipPath":
            data_points(child, rects, rect, out)
    return out


@pytest.mark.parametrize("key", ["loss", "gradnorm"])
def test_every_data_path_of_a_views_svg_lies_inside_its_plot(qtbot, tmp_path, key):
    from gradviz.ui.views import make_views

    view = make_views()[key]
    qtbot.addWidget(view)
    view.resize(500, 320)
    view.show()
    history = fill_history(synthetic_capture(s, T=8, clip="norm", clip_threshold=1.0)
                           for s in range(200))
    view.set_data(history, history.latest)
    # Zoomed in: the curves and the baseline run far outside the plot's range.
    view.plot.setXRange(50, 120, padding=0)
    view.plot.setYRange(-1.2, -1.0, padding=0)
    view.export(tmp_path / "view.svg")
    root = ET.parse(tmp_path / "view.svg").getroot()
    rects = svg_rects(root)
    points = data_points(root, rects)
    assert len(points) > 50, "no curves in the SVG"
    outside = [(x, y) for x, y, (left, top, right, bottom) in points
               if not (left - 0.01 <= x <= right + 0.01 and top - 0.01 <= y <= bottom + 0.01)]
    assert outside == [], f"{len(outside)} points outside the plot, e.g. {outside[:3]}"


def test_lines_and_shapes_are_cut_to_a_rectangle():
    rect = (0.0, 0.0, 10.0, 10.0)
    assert clip_polyline([(-5, 5), (5, 5), (5, 15)], rect) == [[(0.0, 5.0), (5, 5), (5.0, 10.0)]]
    assert clip_polyline([(-5, -5), (-1, -1)], rect) == []
    # A line leaving and coming back is two pieces.
    assert len(clip_polyline([(1, 1), (1, 20), (2, 20), (2, 1)], rect)) == 2
    square = clip_polygon([(-5, -5), (5, -5), (5, 5), (-5, 5)], rect)
    assert sorted(square) == sorted([(0, 0), (5, 0), (5, 5), (0, 5)])
