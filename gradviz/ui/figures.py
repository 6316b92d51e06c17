"""Figures of a finished run without a window: every view to PNG and SVG.

Used by ``gradviz run --figures DIR``; works with no display, on Qt's offscreen platform.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PyQt6 import QtCore, QtWidgets

from gradviz.ui.export import cannot_write

if TYPE_CHECKING:
    from gradviz.config import RunConfig
    from gradviz.engine.runs.history import History

FIGURE_SIZE = QtCore.QSize(1200, 700)


_app: QtWidgets.QApplication | None = None


def _application() -> QtWidgets.QCoreApplication:
    """The running Qt application, or a new one on the offscreen platform (no display
    needed), kept alive for the rest of the process."""
    global _app
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = _app = QtWidgets.QApplication(["gradviz", "-platform", "offscreen"])
    return app


def caption(config: RunConfig) -> str:
    """One line naming the run, shown above each figure."""
    layers = f"{config.layers} layers" if config.layers > 1 else "1 layer"
    text = (f"{config.cell}, {config.task} task, T = {config.seq_len}, H = {config.hidden}, "
            f"{layers}{', bidirectional' if config.bidirectional else ''}, "
            f"{config.optimizer} lr {config.lr:g}")
    if config.clip != "none":
        text += f", clip by {config.clip} at {config.clip_threshold:g}"
    return text


def write_figures(folder: str | os.PathLike, config: RunConfig, history: History) -> list[Path]:
    """Write ``<key>.png`` and ``<key>.svg`` of every view but the text and prediction-tree
    views (a history holds neither text nor trees) into ``folder``
    (made if missing); returns the paths written. Raises
    :class:`~gradviz.ui.export.ExportError`."""
    from gradviz.ui.views import make_views

    target = Path(folder)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise cannot_write(target, err.strerror or str(err)) from err
    _application()
    written: list[Path] = []
    views = make_views()
    try:
        for key, view in views.items():
            if key in ("text", "predtree"):
                continue
            view.resize(FIGURE_SIZE)
            view.set_caption(caption(config))
            view.set_data(history, history.latest)
            for suffix in (".png", ".svg"):
                path = target / f"{key}{suffix}"
                view.export(path)
                written.append(path)
    finally:
        for view in views.values():
            view.deleteLater()
    return written
