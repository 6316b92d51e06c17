"""Inline display in Jupyter: :class:`~gradviz.engine.runs.capture.Capture` and
:class:`~gradviz.engine.runs.history.History` get a ``_repr_png_`` that draws the app's
own view offscreen (:mod:`gradviz.ui.inline`): gradient through time for a capture,
gradient flow over training for a history. Qt is imported only when one is displayed.
``import gradviz`` installs them when ``Capture``, ``History``, ``Session`` or any
``gradviz.api`` name is first used.
"""
from __future__ import annotations

from gradviz.engine.runs.capture import Capture
from gradviz.engine.runs.history import History


def _capture_png(self: Capture) -> bytes:
    from gradviz.ui.inline import capture_png
    return capture_png(self)


def _history_png(self: History) -> bytes | None:
    if len(self) == 0:
        return None                     # nothing to draw: the notebook shows its repr
    from gradviz.ui.inline import history_png
    return history_png(self)


def install() -> None:
    """Give Capture and History their ``_repr_png_`` (idempotent)."""
    Capture._repr_png_ = _capture_png
    History._repr_png_ = _history_png


install()

__all__ = ["install"]
