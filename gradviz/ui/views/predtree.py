"""The next-character prediction tree of a character model (Fig. 1–2 of the course text).

Left to right: the prefix the model read at the root, then its k most likely next
characters, each with the k most likely after it, to the depth chosen; each node says its
character and its probability given everything to its left, and the line into it is as
wide and as opaque as that probability. The tree comes from the training process
(:mod:`gradviz.engine.analysis.treereport`) and follows the timeline
(:mod:`gradviz.ui.treewire`); this module only draws it.
"""
from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.engine.analysis.treereport import VIEW_MAX_DEPTH, VIEW_MAX_K, TreeSettings
from gradviz.ui.views.items import WrappedText
from gradviz.ui.views.style import INK, PALETTE
from gradviz.ui.views.view import View

LABEL_PT, ROOT_PT, HEADING_PT = 17, 17, 12
MIN_PT = 10               # the smallest text of a crowded tree (at scale 1)
ROOT_CHARS = 24           # the root shows the prefix's last characters, at most
ROOT_SHARE = 0.3          # and takes at most this share of the width
ROOT_GAP_PX = 8           # between the root's text and its lines
LABEL_ROOM = 0.62         # of a column, taken by a node's text before its lines leave
# Characters that would not show, as the tree writes them.
SHOWN = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}
CROWDED = " <b>Crowded: F gives it the window, or lower k.</b>"
SHALLOWER = " <b>{shown} deep shown, to fit: F gives it the window, or lower k.</b>"
CSV_HEADER = ["prefix", "path", "character", "probability", "cumulative probability",
              "depth"]


def shown(text: str) -> str:
    """``text`` with blanks and control characters made visible."""
    return "".join(SHOWN.get(c, c if c.isprintable() else f"\\x{ord(c):02x}") for c in text)


def edge_style(p: float) -> tuple[float, int]:
    """Line width (px) and opacity (0-255) of the line into a node of probability ``p``."""
    p = min(1.0, max(0.0, p))
    return 1.0 + 9.0 * p, round(255 * (0.2 + 0.8 * p))


def place(rows) -> tuple[list[tuple[float, float, int]], int]:
    """Where each row's node goes: (x, y, index of its parent row or -1 under the root)
    for each of ``rows`` (depth first, parents before children), and the number of leaf
    slots. A leaf takes the next slot down; a parent sits midway between its first and
    last child."""
    index = {path + symbol: i for i, (_, path, symbol, *_r) in enumerate(rows)}
    parent = [index.get(path, -1) if path else -1 for _, path, *_r in rows]
    children: dict[int, list[int]] = {}
    for i, p in enumerate(parent):
        children.setdefault(p, []).append(i)
    y = [0.0] * len(rows)
    slots = 0

    def settle(i: int) -> float:
        nonlocal slots
        below = children.get(i, [])
        if below:
            ys = [settle(c) for c in below]
            y[i] = (ys[0] + ys[-1]) / 2
        else:
            y[i] = float(slots)
            slots += 1
        return y[i]

    for i in children.get(-1, []):
        settle(i)
    return [(float(rows[i][0]), y[i], parent[i]) for i in range(len(rows))], slots


class PredictionTreeView(View):
    key = "predtree"
    title = "Prediction tree (next characters)"
    page = "Language"
    help_text = (
        "What the character model expects after the prefix at the left: its most likely "
        "next characters with their probabilities, and for each the most likely after it, "
        "up to three characters ahead. A line's width and darkness show the probability "
        "of the character it leads to, given all before it; ␣ is a space, ↵ a new line. "
        "Branches whose probability along the whole path is below 0.001 are left out. An "
        "untrained model spreads its bets evenly; as it learns, one or two branches "
        "thicken. The probabilities are those the text sampler draws from, at the "
        "temperature set here. The tree follows the timeline: it was computed every time "
        "text was sampled.")

    settings_changed = QtCore.pyqtSignal(object)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.prefix_edit = QtWidgets.QLineEdit(self)
        self.prefix_edit.setPlaceholderText("a line of the training text")
        self.prefix_edit.setToolTip("The text the model reads before it predicts; empty: a "
                                    "line of the training text. Enter applies it.")
        self.prefix_edit.setMinimumWidth(220)
        self.k_box = self._spin("k", 1, VIEW_MAX_K, 2,
                                "How many of the most likely characters each node keeps")
        self.depth_box = self._spin("depth", 1, VIEW_MAX_DEPTH, 3,
                                    "How many characters ahead the tree goes")
        self.temperature_box = QtWidgets.QDoubleSpinBox(self)
        self.temperature_box.setRange(0.1, 5.0)
        self.temperature_box.setSingleStep(0.1)
        self.temperature_box.setDecimals(2)
        self.temperature_box.setValue(1.0)
        self.temperature_box.setToolTip("Divides the model's scores before the softmax, as "
                                        "the text sampler does: below 1 sharper, above 1 "
                                        "flatter")
        for label, widget in (("prefix", self.prefix_edit), ("k", self.k_box),
                              ("depth", self.depth_box), ("temperature", self.temperature_box)):
            box = QtWidgets.QWidget(self)
            row = QtWidgets.QHBoxLayout(box)
            row.setContentsMargins(0, 0, 6, 0)
            row.addWidget(QtWidgets.QLabel(label, box))
            row.addWidget(widget)
            self.toolbar.addWidget(box)
        self.prefix_edit.editingFinished.connect(self._changed)
        for box in (self.k_box, self.depth_box, self.temperature_box):
            box.valueChanged.connect(self._changed)
        self._asked = self.settings()
        canvas = self._add_graphics()
        self.heading = WrappedText(size_pt=HEADING_PT)
        canvas.addItem(self.heading, row=0, col=0)
        self.box = canvas.addViewBox(row=1, col=0)
        self.box.setMouseEnabled(False, False)
        self.box.setMenuEnabled(False)
        self.box.invertY(True)
        self.box.sigResized.connect(lambda *_: self._draw())
        self.tree = None              # the TreeSnapshot drawn, or None
        self._heading = ""
        self.nodes: list[tuple[str, str, float, float, int, str]] = []  # drawn: path,
        #   symbol, probability, path probability, depth, label text
        self.edges: list[tuple[float, int]] = []    # drawn: (width px, opacity 0-255)
        self._items: list[QtWidgets.QGraphicsItem] = []

    def _spin(self, name: str, lo: int, hi: int, value: int, tip: str) -> QtWidgets.QSpinBox:
        box = QtWidgets.QSpinBox(self)
        box.setRange(lo, hi)
        box.setValue(value)
        box.setToolTip(tip)
        return box

    # -- settings --------------------------------------------------------------------
    def settings(self) -> TreeSettings:
        """What the controls ask for."""
        return TreeSettings(self.prefix_edit.text(), self.k_box.value(),
                            self.depth_box.value(), round(self.temperature_box.value(), 2))

    def set_settings(self, settings: TreeSettings) -> None:
        """Show ``settings`` in the controls (and ask for them)."""
        for widget in (self.prefix_edit, self.k_box, self.depth_box, self.temperature_box):
            widget.blockSignals(True)
        self.prefix_edit.setText(settings.prefix)
        self.k_box.setValue(settings.k)
        self.depth_box.setValue(settings.depth)
        self.temperature_box.setValue(settings.temperature)
        for widget in (self.prefix_edit, self.k_box, self.depth_box, self.temperature_box):
            widget.blockSignals(False)
        self._changed()

    def _changed(self) -> None:
        settings = self.settings()
        if settings != self._asked:
            self._asked = settings
            self.settings_changed.emit(settings)

    # -- drawing ---------------------------------------------------------------------
    def set_data(self, history, latest) -> None:
        """The tree arrives through :meth:`show_tree`; the history holds none."""
        self._history = history
        self._latest = latest

    def _redraw(self) -> None:
        """Drawn when a tree arrives (:meth:`show_tree`)."""

    def show_tree(self, tree, why_empty: str = "") -> None:
        """Draw ``tree`` (a TreeSnapshot), or with None, say ``why_empty`` in one line."""
        self._remove_items()
        self.tree = tree
        if tree is not None and tree.settings.prefix == "" and tree.prefix:
            self.prefix_edit.setPlaceholderText(tree.prefix)
        if tree is None or not tree.rows:
            text = tree.error if tree is not None and tree.error else why_empty
            self.heading.set_text(text[:1].upper() + text[1:])
            return
        settings = tree.settings
        self._heading = (
            f"After “{html.escape(shown(tree.prefix))}”: the {settings.k} likeliest next "
            f"character{'s' * (settings.k > 1)}, {settings.depth} deep; "
            f"{tree.steps_done:,} steps trained, temperature {settings.temperature:g}.")
        self._draw()

    def _draw(self) -> None:
        """Lay the tree out in the box as large as its height allows (at least MIN_PT)."""
        tree = self.tree
        self._remove_items()
        if tree is None or not tree.rows:
            return
        # As deep as fits with labels of at least MIN_PT (a label needs a line of
        # MIN_PT, pt -> px), down to one level; the export keeps every row.
        full_depth = max(r[0] for r in tree.rows)
        for shown_depth in range(full_depth, 0, -1):
            rows = [r for r in tree.rows if r[0] <= shown_depth]
            places, slots = place(rows)
            slot_px = self.box.height() / max(slots, 1) if self.box.height() > 0 else 40.0
            if slot_px / self._scale() >= MIN_PT * 4 / 3:
                break
        size = max(MIN_PT, min(LABEL_PT, 0.5 * slot_px / self._scale()))
        crowded = slot_px / self._scale() < MIN_PT * 4 / 3      # even one level is too many
        note = CROWDED if crowded else (SHALLOWER.format(shown=shown_depth)
                                        if shown_depth < full_depth else "")
        self.heading.set_html(self._heading + note)
        depth = shown_depth
        root_y = float(np.mean([y for (x, y, parent) in places if parent == -1]))
        # The root's text gets the room it needs left of x = 0; the columns share the rest.
        root, root_px = self._root_text(tree.prefix)
        right = depth + 0.9
        unit_px = max(max(self.box.width(), 200.0) - root_px, 1.0) / right
        left, gap = root_px / unit_px, ROOT_GAP_PX / unit_px
        self._add_text(html.escape(root), -gap, root_y, (1.0, 0.5), ROOT_PT)
        for (x, y, parent), (d, path, symbol, p, joint) in zip(places, rows):
            x0, y0 = (gap, root_y) if parent == -1 else (places[parent][0] + LABEL_ROOM,
                                                           places[parent][1])
            width, alpha = edge_style(p)
            colour = QtGui.QColor(PALETTE[0])
            colour.setAlpha(alpha)
            line = pg.PlotCurveItem([x0, x - 0.03], [y0, y], pen=pg.mkPen(colour, width=width))
            self._add(line)
            self.edges.append((width, alpha))
            number = f"{p:.2f}" if p >= 0.01 else f"{p:.3f}"
            self._add_text(f"<b>{html.escape(shown(symbol))}</b>&nbsp;{number}", x, y,
                           (0.0, 0.5), size)
            self.nodes.append((path, symbol, p, joint, d, f"{shown(symbol)}  {number}"))
        self.box.setRange(xRange=(-left, right), yRange=(-0.6, slots - 0.4), padding=0.0)
        presentation = getattr(self.window(), "presentation", None)
        if presentation is not None:       # the new labels at the window's scale now
            from gradviz.ui.theme import apply_to_scene   # (theme imports the views' style)
            apply_to_scene(self.graphics.scene(), presentation.scale, presentation.theme)

    def _root_text(self, prefix: str) -> tuple[str, float]:
        """The prefix as the root shows it (its end, at most ROOT_CHARS characters and
        ROOT_SHARE of the box's width) and its width in pixels."""
        font = QtGui.QFont()
        font.setPointSizeF(ROOT_PT * self._scale())
        metrics = QtGui.QFontMetricsF(font)
        room = ROOT_SHARE * max(self.box.width(), 200.0)
        for chars in range(min(ROOT_CHARS, len(prefix)), 0, -1):
            cut = prefix[-chars:]
            # Spaces inside the prefix read as spaces; one at its end must be seen.
            plain = cut.rstrip(" ")
            text = (("…" if chars < len(prefix) else "") + shown(plain).replace("␣", " ")
                    + "␣" * (len(cut) - len(plain)))
            px = metrics.horizontalAdvance(text) + 2 * ROOT_GAP_PX + 8   # + the item's margins
            if px <= room or chars == 1:
                return text, px
        return "", 2.0 * ROOT_GAP_PX

    def _add(self, item) -> None:
        self.box.addItem(item)
        self._items.append(item)

    def _scale(self) -> float:
        """How much the window's scale and theme enlarge the text (View ▸ Presentation)."""
        presentation = getattr(self.window(), "presentation", None)
        if presentation is None:
            return 1.0
        return presentation.scale * presentation.theme.font

    def _add_text(self, text_html: str, x: float, y: float, anchor, size: float) -> None:
        item = pg.TextItem(anchor=anchor, color=INK)
        font = QtGui.QFont()
        font.setPointSizeF(size)
        item.setFont(font)
        item.setHtml(text_html)
        item.setPos(x, y)
        self._add(item)

    def _remove_items(self) -> None:
        for item in self._items:
            self.box.removeItem(item)
        self._items = []
        self.nodes = []
        self.edges = []

    def _clear_items(self) -> None:
        self._remove_items()
        self.tree = None
        self.heading.set_text("")

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        """One row per node of the tree shown, parents before their children."""
        tree = self.tree
        if tree is None or not tree.rows:
            return CSV_HEADER, np.empty((0, len(CSV_HEADER)), dtype=object)
        rows = [(tree.prefix, path, symbol, p, joint, d)
                for d, path, symbol, p, joint in tree.rows]
        return CSV_HEADER, np.array(rows, dtype=object)
