"""The dashboard's views, one module per view (gradflow, gradtime, gates, states, loss,
gradnorm, text; on the "Why" page spectrum, decay, saturation, celldiagram, cliffview;
on the "Language" page, shown for character models, predtree),
built from shared parts:

* :mod:`.view`: the :class:`~.view.View` contract every panel follows, and the
  layer/direction selector;
* :mod:`.style`: colours, pens, fonts, the styling of plots and colour bars;
* :mod:`.axes`: axes whose tick labels stay readable (linear and log);
* :mod:`.items`: wrapping text, colour keys, curves for sanitised data;
* :mod:`.data`: data made safe to plot (numpy only);
* :mod:`.bounds`: the theory drawn over the gradient-through-time plot;
* :mod:`.cellpictures`: the pictures of the cells, as data.
"""
from __future__ import annotations

from PyQt6 import QtWidgets

from gradviz.ui.views.celldiagram import CellDiagramView
from gradviz.ui.views.cliffview import CliffView
from gradviz.ui.views.decay import DecayView
from gradviz.ui.views.gates import GatesView
from gradviz.ui.views.gradflow import GradflowView
from gradviz.ui.views.gradnorm import GradnormView
from gradviz.ui.views.gradtime import GradtimeView
from gradviz.ui.views.loss import LossView
from gradviz.ui.views.predtree import PredictionTreeView
from gradviz.ui.views.saturation import SaturationView
from gradviz.ui.views.spectrum import SpectrumView
from gradviz.ui.views.states import StatesView
from gradviz.ui.views.text import TextView
from gradviz.ui.views.view import View

VIEW_CLASSES: list[type[View]] = [GradflowView, GradtimeView, GatesView, StatesView, LossView,
                                  GradnormView, TextView, SpectrumView, DecayView,
                                  SaturationView, CellDiagramView, CliffView,
                                  PredictionTreeView]


def make_views(parent: QtWidgets.QWidget | None = None) -> dict[str, View]:
    """One instance of every view, keyed by ``View.key``, in dashboard order."""
    return {cls.key: cls(parent) for cls in VIEW_CLASSES}


__all__ = ["View", "VIEW_CLASSES", "make_views"]
