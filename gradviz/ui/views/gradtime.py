"""Gradient through time: ‖∂L/∂h_t‖ against timestep t on a log axis.

The newest recorded step is drawn bold; up to five earlier steps, spread over the
history, are drawn fainter the older they are, so the eye sees the profile change as the
network trains. LSTM cells get a second plot with ‖∂L/∂c_t‖. A choice in the toolbar
draws, instead of the whole ∂L/∂h_t, its local part (dout_t, from the loss at t) or the
part carried back through the recurrence (gradviz.engine.analysis.bounds.carried_gradient).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtWidgets

from gradviz.engine.runs.capture import Capture
from gradviz.ui.views.bounds import BoundsOverlay
from gradviz.ui.views.compare import ComparisonCurves, comparison_colour
from gradviz.ui.views.data import positive_finite
from gradviz.ui.views.inputgrad import InputOverlay
from gradviz.ui.views.items import ColourKey, curve
from gradviz.ui.views.style import INK, LABEL_STYLE, TICK_FONT_PT, pen, style_plot
from gradviz.ui.views.view import View

EARLIER = 5
NEWEST_COLOUR = "#1f5fbf"
# In a plot left empty because no step shown has a finite gradient (a diverged run).
NOTHING_FINITE = "not finite at any t\nin the steps shown"


def underflow_text(zeros: np.ndarray) -> str:
    """The note for timesteps whose whole gradient is exactly 0 (below float range)."""
    span = (f"t = {zeros[0]}" if len(zeros) == 1 else
            f"t = {zeros[0]}…{zeros[-1]}" if zeros[-1] - zeros[0] + 1 == len(zeros) else
            f"{len(zeros)} timesteps")
    return f"0 at {span}: below float range, not drawn"
# The parts of ∂L/∂h_t the h plot can draw: (menu text, capture/history field, axis label,
# CSV column name).
H_PARTS = (("total ∂L/∂hₜ", "dh_norm", "‖∂L/∂hₜ‖ (log scale)", "dL/dh"),
           ("local part (loss at t)", "dout_norm", "‖doutₜ‖, local part (log scale)",
            "local dL/dh"),
           ("carried part (through time)", "carried_norm",
            "‖∂L/∂hₜ − doutₜ‖, carried (log scale)", "carried dL/dh"))


def earlier_grey(i: int) -> str:
    """Colour of earlier curve i (0 = oldest): lighter the older, opaque (fast to draw)."""
    level = round(210 - 120 * (i + 1) / EARLIER)
    return f"#{level:02x}{level:02x}{level:02x}"


def shown_rows(K: int) -> list[int]:
    """History rows drawn, oldest first: the newest row K-1 and, before it, the last
    EARLIER multiples of a power-of-two stride that spreads them over the history.

    The earlier rows stay the same while training adds rows (until the stride doubles),
    so a frame redraws only the newest curve.
    """
    if K == 0:
        return []
    stride = 1
    while stride * EARLIER < K - 1:
        stride *= 2
    earlier = list(range(0, K - 1, stride))[-EARLIER:]
    return earlier + [K - 1]


class GradtimeView(View):
    key = "gradtime"
    title = "Gradient through time ‖∂L/∂hₜ‖"
    help_text = (
        "The newest step's gradient ‖∂L/∂hₜ‖ against the timestep t, on a log axis; "
        "earlier steps are drawn fainter behind it. Read it from right to left, as "
        "backpropagation runs: each step back multiplies the gradient by the recurrent "
        "Jacobian. A straight falling line means a constant factor below 1 per step "
        "(vanishing: a slope of one decade per 10 steps is a factor of about 0.8); a "
        "rising line means a factor above 1 (exploding). LSTM cells get a second plot "
        "with ‖∂L/∂cₜ‖, the gradient along the cell state, which the forget gate can "
        "keep flat over long spans. The toolbar's choice splits ∂L/∂hₜ in two: the local "
        "part arrives from the loss at t itself, the carried part comes back from later "
        "steps through the recurrence. With a loss at every step the local part keeps the "
        "total up; the carried part is the one that vanishes.")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.selector = self._add_selector()
        self.part = QtWidgets.QComboBox()
        self.part.addItems([text for text, *_ in H_PARTS])
        self.part.setToolTip("Draw the whole gradient reaching hₜ, the part that arrives "
                             "from the loss at t, or the part carried back through time")
        self.toolbar.addWidget(self.part)
        canvas = self._add_graphics()
        # One key for both plots: their curves are the same training steps.
        self.colour_key = ColourKey()
        canvas.addItem(self.colour_key, row=0, col=0, colspan=2)
        self.plot_h = canvas.addPlot(row=1, col=0)
        style_plot(self.plot_h, "timestep t", "‖∂L/∂hₜ‖ (log scale)", log_y=True)
        self.plot_c = canvas.addPlot(row=1, col=1)
        style_plot(self.plot_c, "timestep t", "‖∂L/∂cₜ‖ (log scale)", log_y=True)
        self.curves_h = self._make_curves(self.plot_h)
        self.curves_c = self._make_curves(self.plot_c)
        self.bounds = BoundsOverlay(self.plot_h, self.plot_c, self.toolbar)
        canvas.addItem(self.bounds.key, row=2, col=0, colspan=2)
        self.bounds.toggle.toggled.connect(self._redraw)
        self.part.currentIndexChanged.connect(self._part_changed)
        self.notes = {"h": self._make_note(self.plot_h), "c": self._make_note(self.plot_c)}
        self._zeros: dict[str, np.ndarray] = {}       # the bold curve's exact zeros, by plot
        self.underflow = {"h": self._make_underflow(self.plot_h),
                          "c": self._make_underflow(self.plot_c)}
        self._c_shown = True
        self._show_cell_plot(False)
        self._drawn: dict[int, tuple] = {}   # id of a curve -> what it shows
        self.comparison_h = ComparisonCurves(self.plot_h)
        self.comparison_c = ComparisonCurves(self.plot_c)
        self.input_overlay = InputOverlay(self.plot_h)   # ‖∂L/∂x_t‖, where recorded

    def h_part(self) -> tuple[str, str, str, str]:
        """(menu text, field, axis label, CSV name) of the part of ∂L/∂h_t drawn."""
        return H_PARTS[max(0, self.part.currentIndex())]

    def _part_changed(self) -> None:
        self.plot_h.setLabel("left", self.h_part()[2], **LABEL_STYLE)
        self._redraw()

    def _h_rows(self, source) -> np.ndarray | None:
        """The drawn part's (…, L, D, T) rows of a history or capture; None where it lacks
        them (an older capture), NaN rows for an older file's history."""
        return getattr(source, self.h_part()[1], None)

    def _drawable(self, values: np.ndarray, part: bool, bold: str | None = None) -> np.ndarray:
        """Exact zeros are left out rather than drawn at the log axis's floor. A part's
        zeros (nothing carried into the last step, no loss at t) are structure; the whole
        gradient's zeros are a gradient that fell below the float range, which the note
        of the ``bold`` curve's plot ("h" or "c") says in words."""
        zeros = np.flatnonzero(values == 0)
        if bold is not None:
            self._zeros[bold] = zeros if not part else np.empty(0, dtype=np.intp)
        return np.where(values == 0, np.nan, values)

    def _make_curves(self, plot: pg.PlotItem) -> list[pg.PlotDataItem]:
        """EARLIER faint curves (oldest first, faintest) then the bold newest one."""
        items = [curve(plot, pen(earlier_grey(i))) for i in range(EARLIER)]
        items.append(curve(plot, pen(NEWEST_COLOUR, width=2.5)))
        return items

    @staticmethod
    def _make_note(plot: pg.PlotItem) -> pg.TextItem:
        """A note in the middle of ``plot``, shown while nothing in it is finite."""
        note = pg.TextItem(NOTHING_FINITE, color=INK, anchor=(0.5, 0.5))
        font = note.textItem.font()
        font.setPointSize(TICK_FONT_PT + 1)
        note.setFont(font)
        plot.addItem(note, ignoreBounds=True)
        note.hide()
        plot.sigRangeChanged.connect(lambda *_: GradtimeView._centre(plot, note))
        return note

    @staticmethod
    def _make_underflow(plot: pg.PlotItem) -> pg.TextItem:
        """A note in the lower left of ``plot``: where the bold curve is exactly 0."""
        note = pg.TextItem("", color=INK, anchor=(0, 1))
        font = note.textItem.font()
        font.setPointSize(TICK_FONT_PT)
        note.setFont(font)
        plot.addItem(note, ignoreBounds=True)
        note.hide()
        plot.sigRangeChanged.connect(
            lambda *_: note.setPos(*(r[0] for r in plot.getViewBox().viewRange())))
        return note

    @staticmethod
    def _centre(plot: pg.PlotItem, note: pg.TextItem) -> None:
        (x0, x1), (y0, y1) = plot.getViewBox().viewRange()
        note.setPos((x0 + x1) / 2, (y0 + y1) / 2)

    def _show_notes(self, has_c: bool) -> None:
        """Say so in a plot whose curves are all empty because nothing was finite."""
        for name, plot, items in (("h", self.plot_h, self.curves_h),
                                  ("c", self.plot_c, self.curves_c if has_c else [])):
            empty = bool(items) and all(i.xData is None or len(i.xData) == 0 for i in items)
            zeros = self._zeros.get(name) if items else None
            underflow = zeros is not None and len(zeros) > 0
            self.notes[name].setVisible(empty and not underflow)
            if empty and not underflow:
                self._centre(plot, self.notes[name])
            note = self.underflow[name]
            note.setVisible(underflow)
            if underflow:
                note.setText(underflow_text(zeros))
                note.setPos(*(r[0] for r in plot.getViewBox().viewRange()))

    def _clear_items(self) -> None:
        for item in self.curves_h + self.curves_c:
            item.setData([], [])
        for note in list(self.notes.values()) + list(self.underflow.values()):
            note.hide()
        self._zeros.clear()
        self._drawn.clear()
        self.comparison_h.clear()
        self.comparison_c.clear()
        self.input_overlay.update(None)
        self.colour_key.set_entries([])
        self.bounds.clear()

    def _chosen(self) -> Capture | None:
        """The full capture of the step the timeline shows; None while it follows the
        newest step (then the newest history row is the bold curve)."""
        latest = self._latest
        return latest if self._step is not None and latest is not None else None

    def _rows(self) -> list[int]:
        """The history rows drawn, oldest first: :func:`shown_rows`, or with a step chosen,
        earlier rows spread over the history before it (its own curve is the chosen
        capture's, exact where old rows were merged)."""
        chosen = self._chosen()
        if chosen is None:
            return shown_rows(len(self._history))
        before = int(np.searchsorted(self._history.step, chosen.step, side="left"))
        return shown_rows(before + 1)[:-1]

    def _redraw(self) -> None:
        history = self._history
        if history is None or len(history) == 0:
            self._clear_items()
            self._draw_comparisons()
            return
        K, L, D, T = history.dh_norm.shape
        self.selector.set_shape(L, D)
        layer, direction = self.selector.layer_direction
        rows = self._rows()
        chosen = self._chosen()
        t = np.arange(T, dtype=np.float64)
        has_c = history.dc_norm is not None
        self._show_cell_plot(has_c)
        # The newest (or chosen) row always goes to the last (bold) curve.
        drawn = len(rows) + (chosen is not None)
        unused = EARLIER + 1 - drawn
        field = self.h_part()[1]
        for items, data, own in ((self.curves_h, self._h_rows(history),
                                  self._h_rows(chosen) if chosen is not None else None),
                                 (self.curves_c, history.dc_norm if has_c else None,
                                  chosen.dc_norm if chosen is not None else None)):
            for item in items[:unused]:
                self._show(item, None, t)
            if data is None:
                continue
            slots = items[unused:]
            part = items is self.curves_h and field != "dh_norm"
            name = "h" if items is self.curves_h else "c"
            for index, (item, k) in enumerate(zip(slots, rows)):
                bold = name if own is None and index == len(rows) - 1 else None
                values = self._drawable(data[k, layer, direction], part, bold)
                # The last value tells a refilled history's row from the old one it replaced.
                what = (field, layer, direction, T, int(history.step[k]),
                        int(history.count[k]), float(data[k, layer, direction, -1]))
                self._show(item, what, t, values)
            if own is not None:
                values = self._drawable(own[layer, direction], part, name)
                self._show(slots[-1], (field, layer, direction, T, "chosen",
                                       int(chosen.step), float(own[layer, direction, -1])),
                           t, values)
        self._show_notes(has_c)
        self.bounds.update(self._latest, layer, direction)
        drawn_h = self.bounds.curves["h"].xData
        if field != "dh_norm" and drawn_h is not None and len(drawn_h):
            self.bounds.clear()          # the bound is on the whole ∂L/∂h_t, not a part
        steps = [int(history.step[k]) for k in rows]
        if chosen is not None:
            steps.append(int(chosen.step))
        self._label(steps, self.curves_h[unused:], "shown" if chosen is not None else "newest")
        dx = chosen.dx_norm if chosen is not None else history.dx_norm[-1]
        if self.input_overlay.update(dx):
            self.colour_key.set_entries(self.colour_key.entries + [self.input_overlay.entry],
                                        title="step")
        self._draw_comparisons()

    def _draw_comparisons(self) -> None:
        """Each comparison run's profile at the step shown (its nearest keyframe), or its
        newest, dimmed; named in the key."""
        layer, direction = self.selector.layer_direction
        for plot_curves, name in ((self.comparison_h, self.h_part()[1]),
                                  (self.comparison_c, "dc_norm")):
            curves = []
            for c in self._comparisons:
                values = getattr(c.capture, name, None) if c.capture is not None else None
                if values is not None and layer < values.shape[0] and direction < values.shape[1]:
                    row = values[layer, direction]
                    curves.append((c.index, *positive_finite(np.arange(len(row), dtype=np.float64),
                                                             row)))
            plot_curves.set(curves)
        if self._comparisons:
            entries = self.colour_key.entries
            entries += [(comparison_colour(c.index), "line",
                         c.label + (f" @ {c.capture.step}" if c.capture is not None else ""))
                        for c in self._comparisons]
            self.colour_key.set_entries(entries, title="step")

    def _show(self, item: pg.PlotDataItem, what: tuple | None, t: np.ndarray,
              values: np.ndarray | None = None) -> None:
        """Give ``item`` the history row described by ``what`` unless it shows it already."""
        if self._drawn.get(id(item)) == what:
            return
        if what is None:
            item.setData([], [])
        else:
            item.setData(*positive_finite(t, values))
        self._drawn[id(item)] = what

    def _label(self, steps: list[int], slots: list[pg.PlotDataItem], last: str) -> None:
        """The key names each drawn curve by its training step, the last (``last``: the
        newest, or the one shown) first; with comparisons, the bold one names the live run."""
        entries = []
        for index, (item, step) in enumerate(zip(slots, steps)):
            notes = [last] if index == len(steps) - 1 else []
            if notes and self._comparisons:
                notes.append(self._live_label)
            if item.xData is None or len(item.xData) == 0:
                notes.append("not finite")   # a skipped step: nothing to draw
            label = str(step) + (f" ({', '.join(notes)})" if notes else "")
            entries.append((item.opts["pen"].color().name(), "line", label))
        self.colour_key.set_entries(entries[::-1], title="step")

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        """One row per timestep t: the ‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖) curves drawn, unfloored."""
        history = self._history
        if history is None or len(history) == 0:
            return ["t"], np.zeros((0, 1))
        layer, direction = self.selector.layer_direction
        T = history.dh_norm.shape[3]
        rows = self._rows()
        chosen = self._chosen()
        header = ["t"]
        columns = [np.arange(T, dtype=np.float64)]
        _, field, _, name = self.h_part()
        sources = [(name, self._h_rows(history), field)]
        if history.dc_norm is not None:
            sources.append(("dL/dc", history.dc_norm, "dc_norm"))
        for name, data, field in sources:
            for k in rows:
                header.append(f"{name} step {int(history.step[k])}")
                columns.append(data[k, layer, direction].astype(np.float64))
            if chosen is not None:
                own = getattr(chosen, field)
                header.append(f"{name} step {int(chosen.step)}")
                columns.append(own[layer, direction].astype(np.float64) if own is not None
                               else np.full(T, np.nan))
            # Each comparison run's profile drawn, named by the run's label.
            for c in self._comparisons:
                values = getattr(c.capture, field, None) if c.capture is not None else None
                if values is not None and layer < values.shape[0] \
                        and direction < values.shape[1] and values.shape[2] == T:
                    header.append(f"{c.label}: {name} step {int(c.capture.step)}")
                    columns.append(values[layer, direction].astype(np.float64))
        if self._comparisons:
            header[1:] = [name if ": " in name else f"{self._live_label}: {name}"
                          for name in header[1:]]
        return header, np.column_stack(columns)
