"""The dashboard's views, one module per view; see :class:`base.View` for the contract."""
from __future__ import annotations

from PyQt6 import QtWidgets

from gradviz.ui.views.base import View
from gradviz.ui.views.gates import GatesView
from gradviz.ui.views.gradflow import GradflowView
from gradviz.ui.views.gradnorm import GradnormView
from gradviz.ui.views.gradtime import GradtimeView
from gradviz.ui.views.loss import LossView
from gradviz.ui.views.states import StatesView
from gradviz.ui.views.text import TextView

VIEW_CLASSES: list[type[View]] = [GradflowView, GradtimeView, GatesView, StatesView, LossView,
                                  GradnormView, TextView]


def make_views(parent: QtWidgets.QWidget | None = None) -> dict[str, View]:
    """One instance of every view, keyed by ``View.key``, in dashboard order."""
    return {cls.key: cls(parent) for cls in VIEW_CLASSES}


__all__ = ["View", "VIEW_CLASSES", "make_views"]
