"""Writing figures and tables to PNG, SVG and CSV files; nothing here knows of views.

A figure is a widget (a pyqtgraph scene becomes a vector SVG; any other widget is
painted), a table is a header and an array of rows. Every write goes through the one
atomic writer, :mod:`gradviz.engine.runs.files`: a failed export leaves any existing file
untouched and raises :class:`ExportError`, whose message names the file, the reason and
the fix.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
from pathlib import Path
from typing import Callable
from xml.dom import minidom

import numpy as np
from PyQt6 import QtCore, QtGui, QtSvg, QtWidgets
from pyqtgraph.exporters import SVGExporter

from gradviz.engine.runs import files
from gradviz.ui.svgclip import clip_document

# Each format's suffix, and what a file dialog calls it.
FORMATS = {".png": "PNG image", ".svg": "SVG drawing", ".csv": "CSV table"}
# Size given to a widget exported before it was ever shown (a headless figure, a hidden tab).
HIDDEN_EXPORT_SIZE = QtCore.QSize(1200, 700)

Table = tuple[list[str], np.ndarray]


class ExportError(Exception):
    """A figure or table could not be written; the message names the file, the reason and
    the fix."""


def cannot_write(path: str | os.PathLike, reason: str) -> ExportError:
    """The error for ``path`` that could not be written because of ``reason``."""
    return ExportError(f"Could not write {path}: {reason}. Choose another folder.")


def file_filter(suffix: str) -> str:
    """What a file dialog offers for ``suffix`` (one of :data:`FORMATS`): "PNG image (*.png)"."""
    return f"{FORMATS[suffix]} (*{suffix})"


@contextlib.contextmanager
def _reported(target: Path):
    """An OSError of writing ``target`` as an :class:`ExportError`; a missing folder is
    named as such rather than as the temporary file that could not be made in it."""
    if not target.parent.is_dir():
        raise cannot_write(target, f"the folder {target.parent} does not exist")
    try:
        yield
    except OSError as err:
        raise cannot_write(target, err.strerror or str(err)) from err


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; raises :class:`ExportError`."""
    target = Path(path)
    with _reported(target):
        return files.write_bytes_atomic(target, data)


def prepare_for_render(widget: QtWidgets.QWidget) -> None:
    """Lay out ``widget`` so that it renders as it would on screen.

    A hidden widget in a shown window is rendered with the place the window's layout
    would give it; a never-shown window of its own gets a usable size first (a headless
    figure).
    """
    top = widget.window()
    if not widget.isVisible():
        # WA_Resized tells a size someone chose from Qt's initial one.
        if not top.isVisible() and not top.testAttribute(QtCore.Qt.WidgetAttribute.WA_Resized):
            top.resize(HIDDEN_EXPORT_SIZE)
        # grab() sends a hidden widget's pending resize events and activates the layouts
        # it is in, which pyqtgraph's scene needs before it can be exported.
        widget.grab()
    # Posted layout requests place items added since the event loop last ran (a colour
    # key's new text, for one).
    QtCore.QCoreApplication.sendPostedEvents()


# The largest image an export makes (pixels a side): a typo'd width must not fill memory.
MAX_EXPORT_PX = 16384


def render_image(widget: QtWidgets.QWidget, scale: float = 1.0) -> QtGui.QImage:
    """What ``widget`` shows, drawn at ``scale`` times its size: text and curves are
    drawn again at that resolution (as on a high-density screen), not enlarged pixels."""
    prepare_for_render(widget)
    width, height = round(widget.width() * scale), round(widget.height() * scale)
    if width <= 0 or height <= 0:
        raise ExportError("the figure has no size to draw")
    if max(width, height) > MAX_EXPORT_PX:
        raise ExportError(f"{width} x {height} pixels is larger than the {MAX_EXPORT_PX} "
                          "pixels a side an export may be; choose a smaller size")
    image = QtGui.QImage(width, height, QtGui.QImage.Format.Format_ARGB32_Premultiplied)
    image.setDevicePixelRatio(scale)
    image.fill(QtGui.QColor("white"))
    painter = QtGui.QPainter(image)
    try:
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing)
        if isinstance(widget, QtWidgets.QGraphicsView):
            # QWidget.render of a graphics view on a high-density image draws the scene
            # enlarged twice, and only its top-left part lands in the image; the view's own
            # render maps its whole viewport onto the image's (logical) rectangle.
            widget.render(painter, QtCore.QRectF(0, 0, widget.width(), widget.height()),
                          widget.viewport().rect())
        else:
            widget.render(painter)
    finally:
        painter.end()
    return image


def with_title(image: QtGui.QImage, title: str) -> QtGui.QImage:
    """``image`` under one line of ``title`` (a figure that leaves the app names its run)."""
    scale = image.devicePixelRatio()
    font = QtGui.QFont()
    font.setPointSizeF(11)
    line = QtGui.QFontMetricsF(font).height() + 8
    out = QtGui.QImage(image.width(), image.height() + round(line * scale),
                       QtGui.QImage.Format.Format_ARGB32_Premultiplied)
    out.setDevicePixelRatio(scale)
    out.fill(QtGui.QColor("white"))
    painter = QtGui.QPainter(out)
    try:
        painter.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing)
        painter.setFont(font)
        painter.setPen(QtGui.QColor("black"))
        painter.drawText(QtCore.QRectF(6, 0, image.width() / scale - 12, line),
                         QtCore.Qt.AlignmentFlag.AlignVCenter, title)
        painter.drawImage(QtCore.QPointF(0, line), image)
    finally:
        painter.end()
    return out


def save_image_png(image: QtGui.QImage, path: str | os.PathLike) -> Path:
    """Write ``image`` as a PNG file, atomically."""
    buffer = QtCore.QBuffer()
    buffer.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise cannot_write(path, "the image could not be encoded as PNG")
    return write_bytes(path, bytes(buffer.data()))


def save_widget_png(widget: QtWidgets.QWidget, path: str | os.PathLike,
                    scale: float = 1.0) -> Path:
    """Write what ``widget`` shows, at ``scale`` times its size, as a PNG image."""
    try:
        image = render_image(widget, scale)
    except ExportError as err:
        raise cannot_write(path, str(err)) from None
    return save_image_png(image, path)


def close_with_lines(d: str) -> str:
    """Rewrite each close-path command ``Z`` of SVG path data ``d`` (as Qt writes it:
    space-separated ``Mx,y``/``Lx,y`` tokens) into a line back to the subpath's start."""
    out = []
    start = None
    for token in d.split():
        closes = token[-1] in "Zz"
        body = token[:-1] if closes else token
        if body:
            if body[0] in "Mm":
                start = body[1:]
            out.append(body)
        if closes:
            out.append(f"L{start}" if start is not None else token[-1])
    return " ".join(out)


@contextlib.contextmanager
def _svg_closed_paths_fixed():
    """pyqtgraph 0.14's SVG exporter cannot parse the ``Z`` that recent Qt versions write
    at the end of closed paths (every plot's clip rectangle has one; pyqtgraph issue
    #3495). For one export, paths are handed to it with ``Z`` written as an explicit line,
    which draws the same shape."""
    module = sys.modules[SVGExporter.__module__]
    original = getattr(module, "correctCoordinates", None)
    if original is None:
        yield
        return

    def correct(node, defs, item, options):
        for element in node.getElementsByTagName("path"):
            element.setAttribute("d", close_with_lines(element.getAttribute("d")))
        return original(node, defs, item, options)

    module.correctCoordinates = correct
    try:
        yield
    finally:
        module.correctCoordinates = original


def save_scene_svg(graphics: QtWidgets.QGraphicsView, path: str | os.PathLike) -> Path:
    """Write a pyqtgraph scene (every plot in it) as SVG; curves become <path> elements."""
    prepare_for_render(graphics)
    with _svg_closed_paths_fixed():
        data = SVGExporter(graphics.scene()).export(toBytes=True)
    document = minidom.parseString(data)
    # Curves that leave a plot's range must not run over its axes in viewers that ignore
    # clip-path.
    clip_document(document)
    # Heatmaps are embedded as images; viewers would smooth their cells into a blur.
    for image in document.getElementsByTagName("image"):
        image.setAttribute("image-rendering", "optimizeSpeed")
        image.setAttribute("style", "image-rendering:pixelated")
    return write_bytes(path, document.toxml(encoding="utf-8"))


def save_widget_svg(widget: QtWidgets.QWidget, path: str | os.PathLike) -> Path:
    """Write a plain Qt widget (no pyqtgraph scene) as SVG by painting it."""
    prepare_for_render(widget)
    buffer = QtCore.QBuffer()
    buffer.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    generator = QtSvg.QSvgGenerator()
    generator.setOutputDevice(buffer)
    generator.setSize(widget.size())
    generator.setViewBox(QtCore.QRect(QtCore.QPoint(0, 0), widget.size()))
    painter = QtGui.QPainter(generator)
    widget.render(painter)
    painter.end()
    return write_bytes(path, bytes(buffer.data()))


def _cell(value: object) -> str:
    """Numbers at full precision (repr round-trips a float64 exactly); text as it is."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        # Steps and timesteps travel in float tables; print them as the integers they are.
        if value.is_integer() and abs(value) < 2.0**53:
            return str(int(value))
        return repr(value)
    return str(value)


def save_csv(header: list[str], rows: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``header`` and ``rows`` ((N, len(header)) array) as a CSV table."""
    rows = np.asarray(rows)
    if rows.ndim != 2 or (rows.size and rows.shape[1] != len(header)):
        raise cannot_write(path, f"the table has shape {rows.shape} for {len(header)} columns")
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for row in rows.tolist():
        writer.writerow([_cell(v) for v in row])
    return write_bytes(path, text.getvalue().encode("utf-8"))


def save_figure(widget: QtWidgets.QWidget, path: str | os.PathLike, scale: float = 1.0) -> Path:
    """Write ``widget`` as the image its suffix names: .png (at ``scale`` times its
    size), or .svg (vector curves if it is a pyqtgraph scene)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return save_widget_png(widget, path, scale)
    if suffix == ".svg":
        if isinstance(widget, QtWidgets.QGraphicsView):
            return save_scene_svg(widget, path)
        return save_widget_svg(widget, path)
    raise _unknown_type(path)


def save(path: str | os.PathLike, figure: QtWidgets.QWidget, table: Callable[[], Table],
         scale: float = 1.0) -> Path:
    """Write ``figure`` (.png at ``scale`` times its size, .svg) or ``table()`` (.csv) to
    ``path``, in the format its suffix names; ``table`` is only called for a CSV file."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        header, rows = table()
        return save_csv(header, rows, path)
    if suffix in FORMATS:
        return save_figure(figure, path, scale)
    raise _unknown_type(path)


def _unknown_type(path: str | os.PathLike) -> ExportError:
    suffix = Path(path).suffix.lower()
    return ExportError(f"Could not write {path}: unknown file type {suffix or '(none)'!r}; "
                       f"use {', '.join(FORMATS)}.")
