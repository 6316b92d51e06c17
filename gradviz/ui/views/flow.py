"""A row of widgets that wraps to a new row where the width runs out: the views' toolbars,
so that a narrow panel (three in a row on a 1024-pixel projector) shows every choice in full
on two rows instead of cutting "layer 2, backward" to "layer 2, b".

It is a widget that places its children itself, not a QLayout subclass. A layout written in
Python is handed every QWidgetItem that Qt creates for it, so PyQt wraps each item as it is
added; when Python's garbage collector runs inside that wrapping and a collected object's
destructor wraps another Qt object, sip loses the wrapping in progress and raises
"QWidgetItem(w: QWidget|None): not enough arguments" from Qt's event loop (seen now and then
while a window was built). Here no layout item ever reaches Python.
"""
from __future__ import annotations

from PyQt6 import QtCore, QtWidgets


class FlowBar(QtWidgets.QWidget):
    """Widgets at their size hints, left-aligned, in as many rows as the width needs."""

    def __init__(self, parent: QtWidgets.QWidget | None = None, spacing: int = 6):
        super().__init__(parent)
        self._widgets: list[QtWidgets.QWidget] = []
        self._gap = spacing
        policy = QtWidgets.QSizePolicy(QtWidgets.QSizePolicy.Policy.Preferred,
                                       QtWidgets.QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def addWidget(self, widget: QtWidgets.QWidget) -> None:
        """Add ``widget`` at the end of the rows (it becomes this bar's child)."""
        hidden = widget.isHidden() and widget.testAttribute(
            QtCore.Qt.WidgetAttribute.WA_WState_ExplicitShowHide)
        widget.setParent(self)
        self._widgets.append(widget)
        if not hidden:
            widget.show()
        self._changed()

    def widgets(self) -> list[QtWidgets.QWidget]:
        """The widgets still in the bar, in order (those deleted since are left out)."""
        self._widgets = [w for w in self._widgets if _alive(w) and w.parent() is self]
        return list(self._widgets)

    # -- sizes ---------------------------------------------------------------------------
    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._place(width, apply=False)

    def sizeHint(self) -> QtCore.QSize:
        """Everything on one row."""
        shown = [w.sizeHint() for w in self._shown()]
        m = self.contentsMargins()
        width = sum(s.width() for s in shown) + self._gap * max(0, len(shown) - 1)
        height = max((s.height() for s in shown), default=0)
        return QtCore.QSize(width + m.left() + m.right(), height + m.top() + m.bottom())

    def minimumSizeHint(self) -> QtCore.QSize:
        """The widest widget alone on its row."""
        size = QtCore.QSize(0, 0)
        for widget in self._shown():
            size = size.expandedTo(widget.minimumSizeHint())
        m = self.contentsMargins()
        return size + QtCore.QSize(m.left() + m.right(), m.top() + m.bottom())

    # -- keeping the rows up to date -----------------------------------------------------
    def event(self, event: QtCore.QEvent) -> bool:
        # A child shown, hidden or resized asks its parent for a new layout.
        if event.type() == QtCore.QEvent.Type.LayoutRequest:
            self._changed()
            return True
        if event.type() == QtCore.QEvent.Type.ChildRemoved:
            self._changed()
        return super().event(event)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._place(self.width(), apply=True)

    def showEvent(self, event) -> None:
        # A child whose size hint changed while the bar was hidden (a combo box filled on a
        # page not shown) asked no one for a new layout: Qt posts that request only to a
        # visible parent.
        super().showEvent(event)
        self.relayout()

    def relayout(self) -> None:
        """Place the widgets again at their size hints now, if one is not at its hint: for
        a child whose hint changed while the bar was not visible, when Qt asks no one for a
        new layout. (Where all are, nothing moves and no new layout is asked for.)"""
        if any(w.geometry().size() != w.sizeHint() for w in self._shown()):
            self._changed()

    def _changed(self) -> None:
        self.updateGeometry()
        self._place(self.width(), apply=True)

    def _shown(self) -> list[QtWidgets.QWidget]:
        return [w for w in self.widgets() if not w.isHidden()]

    def _place(self, width: int, apply: bool) -> int:
        """Place the widgets in rows ``width`` wide (when ``apply``); returns the height."""
        m = self.contentsMargins()
        left, right = m.left(), width - m.right()
        x, y, row_height = left, m.top(), 0
        for widget in self._shown():
            hint = widget.sizeHint()
            if x > left and x + hint.width() > right:
                x, y = left, y + row_height + self._gap
                row_height = 0
            if apply:
                widget.setGeometry(QtCore.QRect(QtCore.QPoint(x, y), hint))
            x += hint.width() + self._gap
            row_height = max(row_height, hint.height())
        return y + row_height + m.bottom()


def _alive(widget: QtWidgets.QWidget) -> bool:
    """False for a widget whose C++ object Qt has already deleted."""
    try:
        widget.objectName()
    except RuntimeError:
        return False
    return True


__all__ = ["FlowBar"]
