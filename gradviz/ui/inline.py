"""A view as PNG bytes, for a notebook's inline display (``_repr_png_`` of a Capture or a
History, :mod:`gradviz.api.notebook`): the app's own view code, drawn offscreen."""
from __future__ import annotations

from PyQt6 import QtCore

from gradviz.engine.runs.capture import Capture
from gradviz.engine.runs.history import History

INLINE_SIZE = (900, 420)


def view_png(history: History, latest: Capture | None, key: str = "gradtime",
             size: tuple[int, int] = INLINE_SIZE, caption: str = "") -> bytes:
    """The view ``key`` ("gradtime", "gradflow", "gates", …) of ``history`` and ``latest``,
    drawn offscreen at ``size`` pixels, as PNG bytes."""
    from gradviz.ui.export import ExportError, render_image
    from gradviz.ui.figures import _application
    from gradviz.ui.views import VIEW_CLASSES

    _application()
    classes = {cls.key: cls for cls in VIEW_CLASSES}
    if key not in classes:
        raise ValueError(f"no view {key!r}; the views are {', '.join(classes)}")
    view = classes[key](None)
    try:
        view.resize(QtCore.QSize(*size))
        if caption:
            view.set_caption(caption)
        view.set_data(history, latest)
        image = render_image(view)
    except ExportError as err:
        raise ValueError(str(err)) from None
    finally:
        view.deleteLater()
    buffer = QtCore.QBuffer()
    buffer.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(buffer.data())


def capture_png(cap: Capture, key: str = "gradtime") -> bytes:
    """One capture, as the app draws it (gradient through time by default)."""
    history = History(capacity=2)
    history.append(cap)
    return view_png(history, cap if not cap.is_light else None, key)


def history_png(history: History, key: str = "gradflow") -> bytes:
    """A history, as the app draws it (gradient flow over training by default)."""
    return view_png(history, history.latest, key)


__all__ = ["view_png", "capture_png", "history_png", "INLINE_SIZE"]
