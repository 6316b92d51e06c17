"""A notice in the window, above the plots: why training stopped or paused (it diverged, an
error), with the advice and the buttons a dialog would have had, but covering nothing the
class is looking at. It stays until closed, a Reset, or the next notice."""
from __future__ import annotations

import html

from PyQt6 import QtCore, QtWidgets

BACKGROUND = "#fde8e4"
BORDER = "#d01010"


class NoticeBar(QtWidgets.QFrame):
    """``title`` in bold (without a leading "gradviz: "), then ``text`` in one paragraph;
    a Reset button (``reset_requested``), a Details
    button where there are ``details`` (shown in a box below the text), and × to close
    (``closed``). The parts read like a message box's: :meth:`text`, :meth:`buttons`,
    :meth:`detailedText`."""

    reset_requested = QtCore.pyqtSignal()
    closed = QtCore.pyqtSignal()

    def __init__(self, title: str, text: str, details: str = "",
                 parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("notice")
        self.setStyleSheet(f"#notice {{ background: {BACKGROUND}; border: 2px solid {BORDER}; "
                           "border-radius: 3px; }")
        self._text = text
        self._details = details
        # One paragraph beside the buttons, a few lines high: the plots keep their room.
        self.message = QtWidgets.QLabel()
        self.message.setWordWrap(True)
        self.message.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.message.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                                   QtWidgets.QSizePolicy.Policy.Preferred)
        self.reset_button = QtWidgets.QPushButton("Reset")
        self.reset_button.setToolTip("A fresh model from the current settings (R)")
        self.reset_button.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.reset_button.clicked.connect(self.reset_requested)
        self.close_button = QtWidgets.QToolButton()
        self.close_button.setText("×")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Hide this notice")
        self.close_button.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.close_button.clicked.connect(self.close)
        self.details_box = QtWidgets.QPlainTextEdit(details)
        self.details_box.setReadOnly(True)
        self.details_box.setMaximumHeight(self.fontMetrics().lineSpacing() * 8)
        self.details_box.hide()
        self.details_button = QtWidgets.QPushButton("Details")
        self.details_button.setCheckable(True)
        self.details_button.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.details_button.toggled.connect(self.details_box.setVisible)
        self.details_button.setVisible(bool(details))

        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.message, 1)
        top.addWidget(self.details_button, 0, QtCore.Qt.AlignmentFlag.AlignTop)
        top.addWidget(self.reset_button, 0, QtCore.Qt.AlignmentFlag.AlignTop)
        top.addWidget(self.close_button, 0, QtCore.Qt.AlignmentFlag.AlignTop)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(8, 3, 4, 3)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.details_box)
        self.set_notice(title, text, details)

    def set_notice(self, title: str, text: str, details: str = "") -> None:
        """Say something else in the same place (no new layout of the plots below)."""
        self._text, self._details = text, details
        heading = title.removeprefix("gradviz: ")
        heading = heading[:1].upper() + heading[1:]
        # The paragraphs run on: the notice stays a few lines high.
        body = " ".join(part.strip() for part in text.split("\n\n") if part.strip())
        if body.lower().startswith(heading.lower()):    # the text names it already
            heading, body = body[:len(heading)], body[len(heading):]
            self.message.setText(f"<b>{html.escape(heading)}</b>{html.escape(body)}")
        else:
            self.message.setText(f"<b>{html.escape(heading)}.</b> {html.escape(body)}")
        self.message.setToolTip(text)
        self.details_box.setPlainText(details)
        self.details_button.setVisible(bool(details))
        if not details:
            self.details_button.setChecked(False)

    def text(self) -> str:
        return self._text

    def detailedText(self) -> str:  # noqa: N802 - named as QMessageBox's
        return self._details

    def buttons(self) -> list[QtWidgets.QAbstractButton]:
        return [b for b in (self.details_button, self.reset_button, self.close_button)
                if not b.isHidden()]

    def closeEvent(self, event) -> None:
        super().closeEvent(event)
        self.closed.emit()


def place_notice(bar: NoticeBar, above: QtWidgets.QWidget, fallback: QtWidgets.QWidget) -> None:
    """Put ``bar`` into the layout of ``above``'s parent, just after ``above`` (the
    description over the plots), so it sits above the plots; else at the top of
    ``fallback``'s layout."""
    parent = above.parentWidget()
    layout = parent.layout() if parent is not None else None
    if isinstance(layout, QtWidgets.QBoxLayout) and layout.indexOf(above) >= 0:
        layout.insertWidget(layout.indexOf(above) + 1, bar, 0)
    else:
        bar.setParent(fallback)
        if isinstance(fallback.layout(), QtWidgets.QBoxLayout):
            fallback.layout().insertWidget(0, bar, 0)
    bar.show()


__all__ = ["NoticeBar", "place_notice"]
