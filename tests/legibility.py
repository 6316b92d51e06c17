"""The legibility rules of issue 19, checked on a real window from its widgets and graphics
items (not from pixels); each check returns a list of what breaks the rule."""
from __future__ import annotations

import re

import pyqtgraph as pg
from PyQt6 import QtWidgets

from gradviz.ui.describe import describe_window, keys_of, plots_of
from gradviz.ui.focus import MIN_SHARE, area_share

MIN_PT = 9.0
SLACK = 2   # px


def focus_share(window) -> list[str]:
    share = area_share(window, window.dashboard.focus)
    return [] if share >= MIN_SHARE else [f"focus views cover {share:.0%} of the window"]


def log_ticks(window) -> list[str]:
    bad = []
    for view in describe_window(window)["views"]:
        for name, axis in view["axes"].items():
            lo, hi = axis["range"]
            if axis["log"] and hi - lo >= 3 and len(axis["ticks"]) < 3:
                bad.append(f"{view['key']} {name}: {hi - lo:.1f} decades, ticks {axis['ticks']}")
    return bad


def legends_clear(window) -> list[str]:
    bad = []
    for key, view in window.views.items():
        if not view.isVisible():
            continue
        if not hasattr(view, "graphics"):
            continue
        boxes = [item.sceneBoundingRect() for item in view.graphics.scene().items()
                 if isinstance(item, pg.ViewBox) and item.isVisible()]
        for legend in keys_of(view):
            rect = legend.sceneBoundingRect().adjusted(SLACK, SLACK, -SLACK, -SLACK)
            if any(rect.intersects(box) for box in boxes):
                bad.append(f"{key}: key {legend.labels} over a plot")
            area = view.graphics.viewport().rect()
            shown = view.graphics.mapFromScene(legend.sceneBoundingRect()).boundingRect()
            if shown.right() > area.right() + SLACK or shown.bottom() > area.bottom() + SLACK:
                bad.append(f"{key}: key {legend.labels} cut off")
    return bad


def titles_whole(window) -> list[str]:
    bad = []
    for key, view in window.views.items():
        if not view.isVisible():
            continue
        for plot in plots_of(view):
            for name in ("left", "bottom", "right", "top"):
                axis = plot.getAxis(name)
                if not axis.isVisible() or not axis.labelText or not axis.label.isVisible():
                    continue
                length = axis.height() if name in ("left", "right") else axis.width()
                text = axis.label.boundingRect().width()
                if text > length + SLACK:
                    bad.append(f"{key} {name}: title {axis.labelText!r} {text:.0f} px "
                               f"on {length:.0f}")
    for combo in window.findChildren(QtWidgets.QComboBox):
        if not combo.isVisible():
            continue
        option = QtWidgets.QStyleOptionComboBox()
        combo.initStyleOption(option)
        style = QtWidgets.QStyle
        field = combo.style().subControlRect(style.ComplexControl.CC_ComboBox, option,
                                             style.SubControl.SC_ComboBoxEditField, combo)
        need = combo.fontMetrics().horizontalAdvance(combo.currentText())
        if need > field.width() + SLACK:
            bad.append(f"combo {combo.currentText()!r}: {need} px in {field.width()}")
    return bad


def _html_pt(html: str) -> list[float]:
    return [float(v) for v in re.findall(r"font-size:\s*([\d.]+)pt", html)]


def text_sizes(window) -> list[str]:
    bad = []
    for widget in [window] + window.findChildren(QtWidgets.QWidget):
        if widget.isVisible() and 0 < widget.font().pointSizeF() < MIN_PT:
            bad.append(f"{type(widget).__name__} {widget.objectName()}: "
                       f"{widget.font().pointSizeF()} pt")
    for key, view in window.views.items():
        if not view.isVisible() or not hasattr(view, "graphics"):
            continue
        for item in view.graphics.scene().items():
            if not item.isVisible():
                continue
            sizes = []
            if isinstance(item, pg.AxisItem):
                font = item.style["tickFont"]
                sizes.append((font or QtWidgets.QApplication.font()).pointSizeF())
                sizes += _html_pt(item.label.toHtml()) if item.labelText else []
            elif isinstance(item, QtWidgets.QGraphicsTextItem) and item.toPlainText():
                sizes.append(item.font().pointSizeF())
                sizes += _html_pt(item.toHtml())
            small = [s for s in sizes if 0 < s < MIN_PT]
            if small:
                bad.append(f"{key}: {type(item).__name__} at {min(small)} pt")
    return bad


RULES = {"focus": focus_share, "log ticks": log_ticks, "legends": legends_clear,
         "not elided": titles_whole, "text size": text_sizes}


def broken(window, scale: float) -> dict[str, list[str]]:
    """Every rule's failures (text size is a rule at scale 1 only)."""
    found = {name: rule(window) for name, rule in RULES.items()
             if not (name == "text size" and scale != 1.0)}
    return {name: bad for name, bad in found.items() if bad}
