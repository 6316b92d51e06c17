"""Text sampled from a character language model as it trains."""
from __future__ import annotations

import numpy as np
from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.ui.views.view import View

FONT_PT = 12


class TextView(View):
    key = "text"
    title = "Generated text"
    help_text = (
        "Text sampled from the character language model as it trains, one character at "
        "a time from the model's own predictions, starting from the newest hidden "
        "state. At first it is random characters; then the spaces and the common "
        "letters appear, then words, then the look of the training text. Sampling is "
        "not training: it shows what the model has learned so far.")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.editor = QtWidgets.QPlainTextEdit(self)
        self.editor.setReadOnly(True)
        font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        font.setPointSize(FONT_PT)
        self.editor.setFont(font)
        self.editor.setPlaceholderText("Text sampled from the model appears here while it trains.")
        # The export context menu is the view's; the editor's own (copy/select all) would hide it.
        self.editor.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.NoContextMenu)
        self.layout().addWidget(self.editor, 1)

    def set_text(self, text: str) -> None:
        self.editor.setPlainText(text)

    def text(self) -> str:
        return self.editor.toPlainText()

    def set_data(self, history, latest) -> None:
        """The text arrives through :meth:`set_text`; the history holds no text."""
        self._history = history
        self._latest = latest

    def _clear_items(self) -> None:
        self.editor.clear()

    def figure_widget(self) -> QtWidgets.QWidget:
        return self.editor

    def set_caption(self, text: str) -> None:
        """The text view has no plot area to caption."""

    def csv_table(self) -> tuple[list[str], np.ndarray]:
        """The text as a single row."""
        return ["text"], np.array([[self.text()]], dtype=object)
