"""Global gradient norm per step, before and after clipping, with the clip threshold and
the clipped and non-finite steps marked; below it, the gradient norm of each tensor of the
chosen layer and direction, and of the readout.

Which layer and direction a tensor belongs to comes from the capture
(``Capture.param_owners``, filled by the trainer from the network that named the
tensors), never from parsing its name; where no capture says, every tensor is shown,
ungrouped."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from gradviz.ui.views.bands import binned, binned_column
from gradviz.ui.views.compare import ComparisonCurves, StepMarker, key_entries, run_key
from gradviz.ui.views.data import LOG_FLOOR, event_lines, positive_finite
from gradviz.ui.views.items import Band, ColourKey, Curve, curve, event_marks
from gradviz.ui.views.style import colour, pen, style_plot
from gradviz.ui.views.view import View

NONFINITE_COLOUR = "#d01010"
CLIPPED_COLOUR = "#e8730c"
# The threshold is a wide light band under the curves: with clipping by norm the norm
# after clipping runs along it, and a thin line there was hidden under that curve.
THRESHOLD_COLOUR = "#f5cfa8"
THRESHOLD_WIDTH = 7.0
BAND_COLOUR = "#c9d8ef"     # a light tint of the norm's blue
# Clipped steps are ticks along the bottom edge, where they cover no curve.
RUG_FRACTION = 0.03


def step_curve(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A staircase through (steps[k], values[k]) holding each value until the next step.

    (K,), (K,) -> (2K-1,), (2K-1,)."""
    steps = np.asarray(steps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if len(steps) < 2:
        return steps, values
    x = np.empty(2 * len(steps) - 1)
    y = np.empty_like(x)
    x[0::2] = steps
    x[1::2] = steps[1:]
    y[0::2] = values
    y[1::2] = values[:-1]
    return x, y


Owner = tuple[int, int] | None   # (layer, direction) of a tensor; None: of no layer


def tensor_kind(name: str, owner: Owner) -> str:
    """A tensor's name without the part that names its layer, which ``owner`` gives:
    ``"weight_hh_l1_reverse"`` of (1, 1) -> ``"weight_hh"``; a tensor of no layer keeps
    its name."""
    if owner is None:
        return name
    layer, direction = owner
    return name.removesuffix(f"_l{layer}" + ("_reverse" if direction else ""))


def tensor_symbol(name: str, owner: Owner) -> str:
    """The short name of a tensor as the equations write it: ``"weight_hh_l1_reverse"`` of
    (1, 1) -> ``"W_hh"``, ``"bias_ih_l0"`` of (0, 0) -> ``"b_ih"``, ``"readout.weight"``
    -> ``"readout W"`` (the key's title names the layer)."""
    kind = tensor_kind(name, owner)
    for long, short in (("weight", "W"), ("bias", "b")):
        if kind.startswith(long + "_"):
            return short + kind[len(long):]
        if kind.endswith("." + long):
            return kind[:-len(long) - 1] + " " + short
    return kind


def newest_note(norm: float) -> str:
    """What a tensor's key entry adds about a newest gradient norm the plot cannot show."""
    if not np.isfinite(norm):
        return " (not finite)"
    return " = 0" if norm == 0 else ""


class GradnormView(View):
    key = "gradnorm"
    title = "Gradient norm and clipping"
    help_text = (
        "Top: the global gradient norm of each step on a log axis, before clipping "
        "(solid), after clipping (dashed, only while clipping is on), and the clipping "
        "threshold (the wide light band, for clipping by norm). Orange ticks along the "
        "bottom mark the steps that were clipped, red lines the steps that were not "
        "finite. An explosion is the norm rising by decades over a few steps; with "
        "clipping by norm, the dashed line stays at the threshold while the solid one "
        "spikes. Bottom: the gradient norm of each weight and bias tensor of the chosen "
        "layer, and of the readout, so you can see which tensor carries the explosion. "
        "In a long run, whose old steps are kept in blocks, every curve is the mean of one "
        "block of steps, and a light band spans each block's smallest to largest global "
        "norm, the same everywhere.")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.selector = self._add_selector()
        self.selector.setToolTip("Whose tensors the lower plot shows (the readout's always)")
        canvas = self._add_graphics()
        # The keys go beside the plots: above them, they would take the height that two
        # stacked plots in a small panel cannot spare.
        self.plot = canvas.addPlot(row=0, col=0)
        style_plot(self.plot, "training step", "global ‖∇L‖", log_y=True)
        self.colour_key = ColourKey(column=True)
        canvas.addItem(self.colour_key, row=0, col=1)
        self.threshold = curve(self.plot, pen(THRESHOLD_COLOUR, width=THRESHOLD_WIDTH))
        self.nonfinite_marks = event_marks(self.plot, NONFINITE_COLOUR)
        self.before_band = Band(self.plot, BAND_COLOUR)
        self.before = curve(self.plot, pen(0, width=1.5))
        self.after = curve(self.plot, pen(2, width=1.5, style=QtCore.Qt.PenStyle.DashLine))
        self.clipped_marks = Curve(pen=None, symbol="|", symbolSize=9,
                                   symbolPen=pg.mkPen(CLIPPED_COLOUR, width=1.5),
                                   symbolBrush=pg.mkBrush(CLIPPED_COLOUR), skipFiniteCheck=True)
        # Placed by the view's range, not the data: it must not stretch the axes.
        self.plot.addItem(self.clipped_marks, ignoreBounds=True)
        self._clipped_steps = np.zeros(0)
        self.plot.getViewBox().sigYRangeChanged.connect(self._place_rug)
        self.params_plot = canvas.addPlot(row=1, col=0)
        style_plot(self.params_plot, "training step", "tensor ‖∇L‖", log_y=True)
        self.params_plot.setXLink(self.plot)
        self.params_key = ColourKey(column=True)
        canvas.addItem(self.params_key, row=1, col=1)
        self.param_curves: list[pg.PlotDataItem] = []
        self._params: tuple[tuple[str, Owner], ...] = ()   # (name, owner) of each tensor
        self.comparison_curves = ComparisonCurves(self.plot)
        self.markers = (StepMarker(self.plot), StepMarker(self.params_plot))

    def _clear_items(self) -> None:
        for item in (self.before, self.after, self.threshold, self.clipped_marks,
                     self.nonfinite_marks, *self.param_curves):
            item.setData([], [])
        self.before_band.clear()
        self._clipped_steps = np.zeros(0)
        self.comparison_curves.clear()
        for marker in self.markers:
            marker.set_step(None)
        self.colour_key.set_entries([])
        self.params_key.set_entries([])

    def _draw_comparisons(self) -> None:
        """Each comparison run's global norm before clipping, and the step mark."""
        self.comparison_curves.set_lazily(
            [(c.index, run_key(c),
              lambda c=c: positive_finite(*binned_column(c.history, c.history.grad_norm)))
             for c in self._comparisons])
        for marker in self.markers:
            marker.set_step(self._step)

    def _owners(self) -> tuple[Owner, ...]:
        """The (layer, direction) of each tensor of the history: from the newest capture,
        else from the history itself; all None (shown ungrouped) where neither says."""
        history = self._history
        owners = self._latest.param_owners if self._latest is not None else ()
        if len(owners) != len(history.param_names):
            owners = getattr(history, "param_owners", ())
        if len(owners) != len(history.param_names):
            owners = (None,) * len(history.param_names)
        return tuple(owners)

    def _set_params(self, params: tuple[tuple[str, Owner], ...]) -> None:
        """One curve per parameter tensor, coloured by its kind (weight_hh, bias_ih, …) so
        that a kind keeps its colour in every layer; made again only when the model changes."""
        if params == self._params:
            return
        for item in self.param_curves:
            self.params_plot.removeItem(item)
        kinds = [tensor_kind(name, owner) for name, owner in params]
        order = list(dict.fromkeys(kinds))
        self.param_curves = [curve(self.params_plot, pen(order.index(kind))) for kind in kinds]
        self._params = params

    def shown_params(self) -> list[int]:
        """Indices of the tensors drawn: those of the chosen layer and direction, and
        those of no layer (the readout)."""
        chosen = self.selector.layer_direction
        return [p for p, (_, owner) in enumerate(self._params) if owner in (None, chosen)]

    def _label(self, clipping: bool, threshold: bool, nonfinite: bool, newest: np.ndarray,
               block: int = 1) -> None:
        """Keys that name what is drawn; ``newest`` (P,) holds each tensor's newest gradient
        norm, to mark one that is exactly 0 (drawn below the plot's bottom edge) or not
        finite (not drawn)."""
        entries = key_entries(self._comparisons, self._live_label,
                              (colour(0), "line", "before" if clipping else "norm"))
        if block > 1:
            entries.append((BAND_COLOUR, "band", f"min–max of {block} steps"))
        if clipping:
            entries.append((colour(2), "dash", "after"))
        if threshold:
            entries.append((THRESHOLD_COLOUR, "band", "threshold"))
        if clipping:
            entries.append((CLIPPED_COLOUR, "tick", "clipped"))
        if nonfinite:
            entries.append((NONFINITE_COLOUR, "event", "not finite"))
        # One curve needs no key: the axis label names it.
        self.colour_key.set_entries(entries if len(entries) > 1 else [],
                                    title="clipping" if clipping else "")
        # "layer 1,\nforward": the column stays narrow.
        layer_direction = (self.selector.currentText().replace(", ", ",\n")
                           if self.selector.isVisibleTo(self) else "")
        self.params_key.set_entries(
            [(self.param_curves[p].opts["pen"].color().name(), "line",
              tensor_symbol(*self._params[p]) + newest_note(newest[p]))
             for p in self.shown_params()],
            title=layer_direction)

    def _place_rug(self, *_args) -> None:
        """The clipped steps' ticks, just above the bottom edge of the plot as it is now."""
        steps = self._clipped_steps
        if not len(steps):
            self.clipped_marks.setData([], [])
            return
        lo, hi = self.plot.getViewBox().viewRange()[1]    # log10 units: the y axis is log
        y = 10.0 ** (lo + RUG_FRACTION * (hi - lo))
        self.clipped_marks.setData(steps, np.full(len(steps), y))

    def clipped_ticks(self) -> np.ndarray:
        """The training steps the plot marks as clipped."""
        return self._clipped_steps.copy()

    def _norm_clipping(self) -> np.ndarray:
        """(K,) bool: rows whose clip threshold was a norm bound (the mode can change
        during a run, so this is per row)."""
        history = self._history
        return history.clip_by_norm & np.isfinite(history.clip_threshold)

    def _redraw(self) -> None:
        history = self._history
        if history is None or len(history) == 0:
            self._clear_items()
            self._draw_comparisons()
            self.colour_key.set_entries(key_entries(self._comparisons, "", ("", "", ""))[1:])
            return
        self._draw_comparisons()
        steps = history.step
        # Every curve over steps is the mean of blocks of equal length (gradviz.ui.views.bands).
        blocks = binned(history, "grad_norm")
        self.before.setData(*positive_finite(blocks.step, blocks.mean))
        if blocks.size > 1:
            keep = np.isfinite(blocks.mean)
            self.before_band.set_data(blocks.step[keep],
                                      np.maximum(blocks.low[keep], LOG_FLOOR),
                                      np.maximum(blocks.high[keep], LOG_FLOOR))
        else:
            self.before_band.clear()
        rows = self._norm_clipping()
        clipping = ((self._latest is not None and self._latest.clip != "none")
                    or bool(history.clipped.any()))
        if clipping:
            self.after.setData(*positive_finite(*binned_column(history,
                                                               history.grad_norm_clipped)))
        else:
            self.after.setData([], [])   # equal to the norm before clipping: drawn once
        if rows.any():
            self.threshold.setData(*positive_finite(*step_curve(steps[rows],
                                                                history.clip_threshold[rows])))
        else:
            self.threshold.setData([], [])
        # A non-finite step was skipped, not clipped: its red line says so.
        clipped = history.clipped & np.isfinite(history.grad_norm)
        self._clipped_steps = np.asarray(steps[clipped], dtype=np.float64)
        self._place_rug()
        bad = history.nonfinite | ~np.isfinite(history.grad_norm)
        self.nonfinite_marks.setData(*event_lines(steps[bad], history.grad_norm))
        owners = self._owners()
        self._set_params(tuple(zip(history.param_names, owners)))
        # The selector only chooses tensors; with none of them owned by a layer it has no
        # choice to offer.
        grouped = any(owner is not None for owner in owners)
        self.selector.set_shape(*(history.dh_norm.shape[1:3] if grouped else (1, 1)))
        norms = history.param_grad_norm
        shown = set(self.shown_params())
        for p, item in enumerate(self.param_curves):
            if p in shown:
                item.setData(*positive_finite(*binned_column(history, norms[:, p])))
            elif item.xData is not None and len(item.xData):
                item.setData([], [])
        self._label(clipping, bool(rows.any()), bool(bad.any()), norms[-1], blocks.size)

    def _run_table(self, history) -> tuple[list[str], np.ndarray]:
        """One row per history row of ``history`` (a run drawn): step, global norm before
        and after clipping, clip threshold (nan unless clipping by norm), clipped and
        non-finite flags, and the norm of every parameter's gradient."""
        header = ["step", "grad_norm", "grad_norm_clipped", "clip_threshold", "clipped",
                  "nonfinite"]
        if history is None or len(history) == 0:
            return header, np.zeros((0, len(header)))
        header += [f"grad_norm {name}" for name in history.param_names]
        by_norm = history.clip_by_norm & np.isfinite(history.clip_threshold)
        threshold = np.where(by_norm, history.clip_threshold, np.nan)
        rows = np.column_stack([history.step, history.grad_norm, history.grad_norm_clipped,
                                threshold, history.clipped, history.nonfinite,
                                history.param_grad_norm]).astype(np.float64)
        return header, rows
