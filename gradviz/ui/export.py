"""Writing views to PNG, SVG and CSV files.

Every write is atomic: the bytes go to a temporary file in the destination folder, which
then replaces the target with :func:`os.replace`. A failed export leaves any existing
file untouched and raises :class:`ExportError` with a message for the user.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from xml.dom import minidom

import numpy as np
from PyQt6 import QtCore, QtGui, QtSvg, QtWidgets
from pyqtgraph.exporters import SVGExporter

if TYPE_CHECKING:
    from gradviz.ui.views.base import View

FORMATS = (".png", ".svg", ".csv")
# Size given to a widget exported before it was ever shown (a headless figure, a hidden tab).
HIDDEN_EXPORT_SIZE = QtCore.QSize(1200, 700)


class ExportError(Exception):
    """A view could not be written; the message names the file, the reason and the fix."""


def _fail(path: Path, reason: str) -> ExportError:
    return ExportError(f"Could not write {path}: {reason}. Choose another folder.")


def _new_file_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(temp_path)`` for a temporary file beside ``path``, then move it there."""
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise _fail(target, f"the folder {folder} does not exist")
    if target.is_dir():
        raise _fail(target, "a folder of that name is in the way")
    try:
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise _fail(target, err.strerror or str(err)) from err
    os.close(fd)
    try:
        write(temp)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(temp, _new_file_mode(target))
        os.replace(temp, target)
    except BaseException as err:
        try:
            os.unlink(temp)
        except OSError:
            pass
        if isinstance(err, ExportError):
            raise
        if isinstance(err, OSError):
            raise _fail(target, err.strerror or str(err)) from err
        raise
    return target


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    def write(temp: str) -> None:
        with open(temp, "wb") as fh:
            fh.write(data)
    return write_atomic(path, write)


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


def save_widget_png(widget: QtWidgets.QWidget, path: str | os.PathLike) -> Path:
    """Write what ``widget`` shows, at its size, as a PNG image."""
    prepare_for_render(widget)
    pixmap = widget.grab()
    if pixmap.isNull() or pixmap.width() == 0 or pixmap.height() == 0:
        raise _fail(Path(path), "the view has no size to draw")
    buffer = QtCore.QBuffer()
    buffer.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    if not pixmap.save(buffer, "PNG"):
        raise _fail(Path(path), "the image could not be encoded as PNG")
    return write_bytes(path, bytes(buffer.data()))


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
        raise _fail(Path(path), f"the table has shape {rows.shape} for {len(header)} columns")
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for row in rows.tolist():
        writer.writerow([_cell(v) for v in row])
    return write_bytes(path, text.getvalue().encode("utf-8"))


def export_view(view: View, path: str | os.PathLike) -> Path:
    """Write ``view`` in the format its suffix names (.png, .svg or .csv)."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".png":
        return save_widget_png(view.figure_widget(), target)
    if suffix == ".svg":
        widget = view.figure_widget()
        if isinstance(widget, QtWidgets.QGraphicsView):
            return save_scene_svg(widget, target)
        return save_widget_svg(widget, target)
    if suffix == ".csv":
        header, rows = view.csv_table()
        return save_csv(header, rows, target)
    raise ExportError(f"Could not write {target}: unknown file type {suffix or '(none)'!r}; "
                      f"use {', '.join(FORMATS)}.")
