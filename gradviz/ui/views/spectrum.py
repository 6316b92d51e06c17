"""ρ(W_hh) and σ_max(W_hh) of each recurrent block over training, against 1 and 1/γ.

Pascanu, Mikolov & Bengio (2013): with γ the bound of the derivative of the nonlinearity
a block feeds (γ = 1 for tanh and ReLU, ¼ for the sigmoid), σ_max < 1/γ makes the
gradient through that block vanish for certain, and σ_max > 1/γ is necessary for it to
explode (ρ > 1/γ makes it likely). The values are the history's rows
(gradviz.engine.analysis.spectrum: σ_max of every captured step's weights; ρ decomposed as
often as that costs ~2% of the training time, every step for small blocks and at most 100
steps apart, a row between two decompositions keeping the last).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from gradviz.engine.analysis.bounds import BLOCK_GAMMA, GAMMA_WORDS, block_gamma
from gradviz.ui.views.data import finite_points
from gradviz.ui.views.items import ColourKey, WrappedText, curve
from gradviz.ui.views.style import colour, pen, style_plot
from gradviz.ui.views.view import View

LINE_GREY = "#7f7f7f"


class SpectrumView(View):
    key = "spectrum"
    title = "Spectrum of W_hh: ρ and σ_max"
    page = "Why"
    help_text = (
        "Each recurrent block W_h· of the chosen layer over training: its spectral radius ρ "
        "(solid) and its largest singular value σ_max (dashed), one colour per block, on a log "
        "axis against the training step. The grey lines are 1 and 1/γ, where γ bounds the "
        "derivative of the nonlinearity the block feeds: 1 for tanh and ReLU (W_hh of a plain "
        "RNN, W_hg, W_hn), ¼ for the sigmoid gates (W_hi, W_hf, W_ho, W_hr, W_hz), so 1/γ = 4 "
        "there. A block whose σ_max stays below 1/γ makes the gradient through it vanish for "
        "certain; only above 1/γ can it explode (Pascanu, Mikolov & Bengio 2013). σ_max is "
        "computed on every step; ρ, which costs more, as often as that takes about 2% of the "
        "training time: every step for small blocks, up to 100 steps apart for large blocks "
        "in short sequences, so there its line moves in steps. For the "
        "modern cells it shows what replaces W_hh: diag(|λ|) of the LRU, diag(u) of IndRNN, "
        "the factor per step at zero input of minGRU (1 − σ(b_z)) and minLSTM (f′), and the "
        "orthogonal RNN's W_hh, all of whose eigenvalues lie on the unit circle (ρ = σ_max "
        "= 1).")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.selector = self._add_selector()
        canvas = self._add_graphics()
        self.heading = WrappedText(size_pt=11)
        canvas.addItem(self.heading, row=0, col=0)
        self.key_item = ColourKey()
        canvas.addItem(self.key_item, row=1, col=0)
        self.plot = canvas.addPlot(row=2, col=0)
        style_plot(self.plot, "training step", "ρ, σ_max (log scale)", log_y=True)
        self.lines = {}
        for level in (1.0, 4.0):
            line = pg.InfiniteLine(pos=np.log10(level), angle=0,
                                   pen=pen(LINE_GREY, style=QtCore.Qt.PenStyle.DashDotLine),
                                   label=f"{'1' if level == 1 else '1/γ = 4'}",
                                   labelOpts={"position": 0.03, "color": LINE_GREY})
            self.plot.addItem(line, ignoreBounds=True)
            self.lines[level] = line
        self.rho_curves: list = []
        self.sigma_curves: list = []

    def _curves(self, n: int) -> None:
        while len(self.rho_curves) < n:
            i = len(self.rho_curves)
            self.rho_curves.append(curve(self.plot, pen(i, width=2.0)))
            self.sigma_curves.append(curve(self.plot, pen(i, style=QtCore.Qt.PenStyle.DashLine)))

    def _clear_items(self) -> None:
        for item in self.rho_curves + self.sigma_curves:
            item.setData([], [])
        self.key_item.set_entries([])
        self.heading.set_text("")

    def _names(self) -> tuple[str, ...]:
        latest = self._latest
        R = self._history.rho.shape[-1]
        if latest is not None and len(latest.rho_names) == R:
            return tuple(latest.rho_names)
        return tuple(f"block {j}" for j in range(R))

    def _redraw(self) -> None:
        history = self._history
        if history is None or len(history) == 0:
            self._clear_items()
            return
        K, L, D, R = history.rho.shape
        self.selector.set_shape(L, D)
        layer, direction = self.selector.layer_direction
        self._curves(R)
        steps = history.step.astype(np.float64)
        names = self._names()
        entries, gammas = [], set()
        for j in range(R):
            rho = history.rho[:, layer, direction, j]
            sigma = history.sigma_max[:, layer, direction, j]
            self.rho_curves[j].setData(*_positive(steps, rho))
            self.sigma_curves[j].setData(*_positive(steps, sigma))
            gamma = _gamma(names[j])
            gammas.add(gamma)
            entries.append((colour(j), "line", f"{names[j]} (γ = {gamma:g})"))
        for j in range(R, len(self.rho_curves)):
            self.rho_curves[j].setData([], [])
            self.sigma_curves[j].setData([], [])
        self.lines[4.0].setVisible(0.25 in gammas)
        self._fit(history.rho[:, layer, direction], history.sigma_max[:, layer, direction],
                  4.0 if 0.25 in gammas else 1.0)
        self.key_item.set_entries(entries, title="solid ρ, dashed σ_max")
        known = [n for n in names if n.removeprefix("W_h") in BLOCK_GAMMA]
        if not known:   # a diagonal cell: the factors replace W_hh, and γ has no part
            self.heading.set_text(f"{', '.join(names)} in place of W_hh: ρ is the largest "
                                  f"factor per step; below 1 every unit forgets")
            return
        self.heading.set_text("γ: " + "; ".join(
            f"{g:g} ({GAMMA_WORDS[g]}), 1/γ = {1 / g:g}" for g in sorted(gammas)))

    def _fit(self, rho: np.ndarray, sigma: np.ndarray, line: float) -> None:
        """A y range holding every value and the lines 1 and 1/γ: where the values sit
        against the lines is what the view is about."""
        values = np.concatenate([rho.ravel(), sigma.ravel(), [1.0, line]])
        values = values[np.isfinite(values) & (values > 0)]
        lo, hi = np.log10(values.min()), np.log10(values.max())
        margin = 0.05 * max(hi - lo, 0.1)
        self.plot.setYRange(lo - margin, hi + margin, padding=0.0)

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        """One row per history row: its step, then ρ and σ_max of every block."""
        history = self._history
        if history is None or len(history) == 0:
            return ["step"], np.zeros((0, 1))
        layer, direction = self.selector.layer_direction
        names = self._names()
        header = ["step"] + [f"rho {n}" for n in names] + [f"sigma_max {n}" for n in names]
        rows = np.column_stack([history.step, history.rho[:, layer, direction],
                                history.sigma_max[:, layer, direction]]).astype(np.float64)
        return header, rows


def _gamma(name: str) -> float:
    try:
        return block_gamma(name)
    except KeyError:
        return 1.0


def _positive(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite positive points only: a log axis has no place for 0."""
    x, y = finite_points(x, y)
    keep = y > 0
    return x[keep], y[keep]
