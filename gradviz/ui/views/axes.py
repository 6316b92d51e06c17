"""Axes whose tick labels stay readable: :class:`FitAxis` never lets labels run into each
other, :class:`LogAxis` labels any range of a log scale; and the tick helpers they use."""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtGui

SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _superscript(exponent: int) -> str:
    return ("⁻" if exponent < 0 else "") + str(abs(exponent)).translate(SUPERSCRIPTS)


def format_magnitude(x: float, digits: int = 3) -> str:
    """0.02, 150, 10⁻⁵, 2·10⁻⁵: plain decimals where short, powers of ten elsewhere, to
    at most ``digits`` significant digits."""
    if 1e-3 <= abs(x) < 1e4:
        return np.format_float_positional(x, precision=digits, fractional=False, trim="-")
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return ("" if mantissa == "1" else mantissa + "·") + "10" + _superscript(int(exponent))


# Pixels a tick label may reach past the end of a heatmap's axis: the label of the first
# cell is centred on the image's edge, half of it outside.
EDGE_LABEL_PX = 20


class FitAxis(pg.AxisItem):
    """An axis whose tick labels never run into each other.

    pyqtgraph spaces ticks by the axis length alone, so on a narrow axis the labels of
    0, 200, …, 800 run together into one string; this one widens the major spacing (1, 2,
    5 × 10ᵏ) until the labels fit, with a gap between them.
    """

    LABEL_GAP = 6

    def tickSpacing(self, minVal, maxVal, size):
        levels = super().tickSpacing(minVal, maxVal, size)
        span = abs(maxVal - minVal)
        if not levels or size <= 0 or span == 0:
            return levels
        spacing = chosen = levels[0][0]
        while (span / spacing > 1.0
               and size * spacing / span < self._label_extent(minVal, maxVal, spacing)):
            spacing = next_round_spacing(spacing)
        if spacing == chosen:
            return levels
        return [(spacing, 0.0)] + ([(chosen, 0.0)] if self.style["maxTickLevel"] >= 1 else [])

    def tickStrings(self, values, scale, spacing):
        strings = super().tickStrings(values, scale, spacing)
        if self.logMode or not any(s and "e" in s for s in strings):
            return strings
        # pyqtgraph writes 1e+21 where a number does not print plainly: 10²¹ instead.
        return [format_magnitude(v * scale) if v else "0" for v in values]

    def _label_extent(self, lo: float, hi: float, spacing: float) -> float:
        """Pixels a tick label takes along the axis, gap included: its height on a vertical
        axis, the width of the widest end value printed at ``spacing`` on a horizontal one."""
        metrics = QtGui.QFontMetricsF(self.style["tickFont"] or QtGui.QFont())
        if self.orientation in ("left", "right"):
            return metrics.height() + self.LABEL_GAP
        places = max(0, math.ceil(-math.log10(spacing)))
        ends = (round(v / spacing) * spacing for v in (lo, hi))
        return max(metrics.horizontalAdvance(f"{v:.{places}f}") for v in ends) + self.LABEL_GAP


def next_round_spacing(spacing: float) -> float:
    """The next of 1, 2, 5, 10, 20, … × 10ᵏ above ``spacing``."""
    power = 10.0 ** math.floor(math.log10(spacing) + 1e-9)
    for step in (2.0, 5.0, 10.0):
        if step * power > spacing * (1 + 1e-9):
            return step * power
    return 20.0 * power


class LogAxis(FitAxis):
    """Axis for log-scale plots whose labels stay readable at any range.

    Over a decade or more, decades are labelled (thinned to fit), and 2× and 5× too where
    a decade is tall enough (5× alone where only one decade is in view); over less than a
    decade, where pyqtgraph's own log axis leaves the axis nearly unlabelled, evenly spaced
    values are labelled instead.
    """

    PIXELS_PER_LABEL = 45
    PIXELS_PER_DECADE_FOR_2_5 = 150
    # Where fewer than two decades are in view, 5× is labelled from this height on (it sits
    # 0.3 decade below the next decade: 18 px here), so that no axis shows a single label.
    PIXELS_PER_DECADE_FOR_5 = 60

    def __init__(self, orientation: str = "left", **kw):
        super().__init__(orientation, **kw)
        # pyqtgraph would pick an SI prefix from the log10 values, not from the magnitudes.
        self.enableAutoSIPrefix(False)
        self._narrow = False
        self._minor_labels: tuple[float, ...] = ()   # mantissas labelled on the minor level
        self._narrow_spacing_used = 1.0

    def _narrow_spacing(self, lo: float, hi: float, size: float) -> float:
        """Evenly spaced values for a log axis over less than a decade: the round spacing
        (1, 2, 5 x 10^k) nearest to one label per PIXELS_PER_LABEL that gives at least two
        labels, and for which the two labels closest together on screen (the top two:
        the log scale squeezes evenly spaced values there) keep a gap."""
        v_lo, v_hi = 10.0 ** lo, 10.0 ** hi
        span = hi - lo
        # Half the usual gap: the squeeze is at one end only.
        extent = self._label_extent(lo, hi, 1.0) - self.LABEL_GAP / 2
        raw = (v_hi - v_lo) / max(1.0, size / self.PIXELS_PER_LABEL)

        def fits(s: float) -> bool:
            top = math.floor(v_hi / s + 1e-9) * s          # the two highest ticks
            below = top - s
            return below < v_lo or size * math.log10(top / below) / span >= extent

        def count(s: float) -> int:
            return math.floor(v_hi / s + 1e-9) - math.ceil(v_lo / s - 1e-9) + 1

        candidates = []
        spacing = 10.0 ** math.floor(math.log10(raw / 20))
        while spacing <= 10 * (v_hi - v_lo):
            if fits(spacing):
                candidates.append(spacing)
            spacing = next_round_spacing(spacing)
        two = [c for c in candidates if count(c) >= 2]
        if two:
            return min(two, key=lambda c: abs(math.log(c / raw)))
        return min(candidates) if candidates else spacing

    def logTickValues(self, minVal, maxVal, size, stdTicks):
        lo, hi = sorted((minVal, maxVal))
        span = hi - lo
        self._narrow = span < 1.0
        if self._narrow:
            v_lo, v_hi = 10.0 ** lo, 10.0 ** hi
            spacing = self._narrow_spacing(lo, hi, size)
            first = math.ceil(v_lo / spacing) * spacing
            values = first + spacing * np.arange(int((v_hi - first) / spacing + 1e-9) + 1)
            values = values[(values > 0) & (values <= v_hi * (1 + 1e-12))]
            self._narrow_spacing_used = spacing
            return [(spacing, list(np.log10(values)))]
        room = max(2, int(size / self.PIXELS_PER_LABEL))
        if span >= 3 and size >= 3 * self._label_extent(lo, hi, 1.0):
            room = max(room, 3)    # three decades or more: never fewer than three labels
        every = max(1, math.ceil(span / room))
        decades = np.arange(math.ceil(lo), math.floor(hi) + 1)
        # Of the ``every`` ways to thin the decades, the one with the most labels clear
        # of the axis's ends (pyqtgraph drops a label that would stick out).
        margin = span * self._label_extent(lo, hi, 1.0) / 2 / max(size, 1.0)
        offset = max(range(every), key=lambda k: (
            sum(1 for d in decades if d % every == k and lo + margin <= d <= hi - margin), -k))
        major = [float(d) for d in decades if d % every == offset]
        if every > 1:
            minor = [float(d) for d in decades if d % every != offset]
        else:
            minor = [float(d + math.log10(m)) for d in range(math.floor(lo), math.ceil(hi))
                     for m in range(2, 10) if lo <= d + math.log10(m) <= hi]
        per_decade = size / span
        if every == 1 and per_decade >= self.PIXELS_PER_DECADE_FOR_2_5:
            self._minor_labels = (2.0, 5.0)
        elif every == 1 and len(major) < 2 and per_decade >= self.PIXELS_PER_DECADE_FOR_5:
            self._minor_labels = (5.0,)
        else:
            self._minor_labels = ()
        return [(float(every), major), (None, minor)]

    def logTickStrings(self, values, scale, spacing):
        # logTickValues gives the minor level of a wide range no spacing (None).
        major = self._narrow or spacing is not None
        strings = []
        for v in values:
            x = 10.0 ** v * scale
            if self._narrow:
                # As many digits as the spacing needs: 2.085 and 2.09 are two labels, and
                # "2.08, 2.08" (three digits of both) would read as one value twice.
                step = self._narrow_spacing_used * scale
                digits = max(1, math.floor(math.log10(abs(x)) + 1e-9)
                             - math.floor(math.log10(step) + 1e-9) + 1)
                strings.append(format_magnitude(x, max(digits, 1)))
                continue
            mantissa = x / 10.0 ** math.floor(v + 1e-9)
            if major or any(abs(mantissa - m) < 1e-6 for m in self._minor_labels):
                strings.append(format_magnitude(x))
            else:
                strings.append(None)   # pyqtgraph skips None, and does not count it as text
        return strings

