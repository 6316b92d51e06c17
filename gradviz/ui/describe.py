"""The window described as numbers, from its widgets and graphics items: where each view
sits, whether it is a focus view, its keys' entries, and each axis (log or not, range as
the view box holds it, the tick labels actually drawn). ``gradviz snapshot`` writes it
beside the PNG; the legibility tests read it.

Schema (docs/guide.md)::

    {"size": [w, h], "scale": s,
     "views": [{"key", "title", "rect": [x, y, w, h], "focus": bool, "legend": [texts],
                "axes": {"left" | "bottom" | ...: {"log": bool, "range": [lo, hi],
                                                    "ticks": [label texts]}}}]}

A view with several plots names the axes of its first plot (top left) "left", "bottom",
and those of the next ones "left 2", "bottom 2", ….
"""
from __future__ import annotations

import pyqtgraph as pg
from PyQt6 import QtGui, QtWidgets

from gradviz.ui.views.items import ColourKey

AXIS_NAMES = ("left", "bottom", "right", "top")


def _round(x: float) -> float:
    return float(f"{float(x):.6g}")


def drawn_ticks(axis: pg.AxisItem) -> list[str]:
    """The tick labels ``axis`` draws at its present size and range (pyqtgraph drops
    those that would overlap; these are what is left)."""
    if not axis.isVisible() or axis.style.get("showValues", True) is False:
        return []
    image = QtGui.QImage(1, 1, QtGui.QImage.Format.Format_ARGB32)
    painter = QtGui.QPainter(image)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    if specs is None:
        return []
    vertical = axis.orientation in ("left", "right")
    # In reading order along the axis: left to right, bottom to top.
    placed = sorted(specs[2], key=lambda s: -s[0].center().y() if vertical else s[0].center().x())
    return [text for _rect, _flags, text in placed]


def plots_of(view) -> list[pg.PlotItem]:
    """The view's visible plots, top to bottom, then left to right."""
    if not hasattr(view, "graphics"):
        return []
    plots = [item for item in view.graphics.scene().items()
             if isinstance(item, pg.PlotItem) and item.isVisible() and item.scene() is not None
             and item.size().width() > 0]
    return sorted(plots, key=lambda p: (round(p.scenePos().y()), round(p.scenePos().x())))


def keys_of(view) -> list[ColourKey]:
    if not hasattr(view, "graphics"):
        return []
    return [item for item in view.graphics.scene().items()
            if isinstance(item, ColourKey) and item.isVisible() and item.labels]


def describe_axis(axis: pg.AxisItem) -> dict:
    lo, hi = axis.range
    return {"log": bool(axis.logMode), "range": [_round(lo), _round(hi)],
            "ticks": drawn_ticks(axis)}


def describe_view(window, key: str, focus: bool) -> dict:
    view = window.views[key]
    top_left = view.mapTo(window, view.rect().topLeft())
    axes: dict[str, dict] = {}
    for index, plot in enumerate(plots_of(view)):
        suffix = "" if index == 0 else f" {index + 1}"
        for name in AXIS_NAMES:
            axis = plot.getAxis(name)
            if axis.isVisible():
                axes[name + suffix] = describe_axis(axis)
    return {"key": key, "title": view.title,
            "rect": [top_left.x(), top_left.y(), view.width(), view.height()],
            "focus": focus,
            "legend": [label for item in keys_of(view) for label in item.labels],
            "axes": axes}


def shown_views(window) -> list[str]:
    """The keys of the views on screen now (on the page in front, not hidden)."""
    return [key for key, view in window.views.items()
            if view.isVisible() and view.width() > 0 and view.height() > 0]


def describe_window(window, scale: float = 1.0, keys: list[str] | None = None) -> dict:
    """The window as the schema above; ``keys``: only those views (default: those shown)."""
    focus = set(window.dashboard.focus)
    keys = shown_views(window) if keys is None else keys
    return {"size": [window.width(), window.height()], "scale": scale,
            "views": [describe_view(window, key, key in focus) for key in keys]}


__all__ = ["describe_window", "describe_view", "drawn_ticks", "plots_of", "keys_of",
           "shown_views"]
