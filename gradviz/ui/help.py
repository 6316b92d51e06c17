"""The Help menu: the keyboard shortcuts (read from the window's own actions, so the list
cannot fall behind them), a one-page guide to what the plots show and why gradients vanish
and explode, and About (versions, and whether the compiled loops are in use)."""
from __future__ import annotations

import platform
import sys
from html import escape

from PyQt6 import QtCore, QtGui, QtWidgets

# Keys that act without an action of their own (the plots' mouse gestures among them).
EXTRA_KEYS = (
    ("Mouse wheel on a plot", "Zoom; right click: export, or View All to undo the zoom"),
    ("Double-click a view", "It fills the plots' room; again, or Esc, brings the layout back"),
)

GUIDE = """
<h2>What the plots show</h2>
<p>A recurrent network reads a sequence x<sub>1</sub> … x<sub>T</sub> one step at a time and
keeps a hidden state h<sub>t</sub>. Training needs the gradient of the loss L with respect
to every weight, and backpropagation through time computes it by passing a gradient
backwards along the sequence: <b>‖∂L/∂h<sub>t</sub>‖</b> is the size of the gradient that
reaches the hidden state at step t. It says how much the loss can still “hear” what the
network did at t. If it is tiny, whatever happened at t cannot be learned from.</p>

<h2>Why it vanishes, or explodes</h2>
<p>Each step back multiplies the gradient by the Jacobian ∂h<sub>t+1</sub>/∂h<sub>t</sub>
= diag(f′) W<sub>hh</sub> of the recurrence. Over k steps that is a product of k such
matrices, so its size behaves like a number raised to the k-th power. With
‖diag(f′)‖ ≤ γ (γ = 1 for tanh, ¼ for the sigmoid), the gradient is certain to vanish when
the largest singular value of W<sub>hh</sub> is below 1/γ (Pascanu, Mikolov &amp; Bengio
2013): ‖∂L/∂h<sub>t</sub>‖ falls by a constant factor per step, a straight line on the log
axes of the “Gradient through time” plot, and the dark band in “Gradient flow”. When the
recurrent weights are large and the units do not saturate (ReLU, identity-like
W<sub>hh</sub>), the same product can grow instead: the gradient explodes, the loss jumps,
and a step becomes not finite.</p>

<h2>What the LSTM and the GRU change</h2>
<p>An LSTM adds a cell state c<sub>t</sub> updated additively, c<sub>t</sub> = f ⊙
c<sub>t−1</sub> + i ⊙ g: along it the Jacobian is the forget gate itself, so with f near 1
the gradient ‖∂L/∂c<sub>t</sub>‖ is carried over long spans (the “constant error carousel”
of Hochreiter &amp; Schmidhuber 1997). A forget-gate bias of 1 starts f near 1 (Gers et
al. 2000; Jozefowicz et al. 2015). The GRU does the same with its update gate.</p>

<h2>What clipping does</h2>
<p>Clipping bounds each update. <b>By norm</b>: when the global gradient norm passes the
threshold, the whole gradient is scaled down to it, keeping its direction (Pascanu et al.
2013 suggest a threshold near the average norm). <b>By value</b>: each component is cut
to ±threshold, which can change the direction. Clipping tames an explosion's single
enormous step; it does nothing for vanishing gradients, which need another cell, another
initialisation or a shorter dependency.</p>

<h2>A lecture in five keys</h2>
<p>Choose an experiment from the Experiments menu, press <b>Space</b> and read its
description above the plots; <b>S</b> trains one step; change one setting (a change of
cell or size starts a fresh model, the old run stays on screen to compare with);
<b>R</b> starts the same model again from its seed; File ▸ Export writes a figure.</p>
"""


def shortcuts_html(window: QtWidgets.QWidget) -> str:
    """A table of every action of ``window`` that has a shortcut, then the other keys."""
    rows = []
    seen = set()
    for action in window.actions():
        keys = action.shortcut().toString(QtGui.QKeySequence.SequenceFormat.NativeText)
        name = action.text().replace("&", "").rstrip("…").strip()
        if keys and (name, keys) not in seen:
            seen.add((name, keys))
            rows.append((keys, action.toolTip() or name))
    rows += list(EXTRA_KEYS)
    body = "".join(f"<tr><td><b>{escape(k)}</b>&nbsp;&nbsp;</td><td>{escape(v)}</td></tr>"
                   for k, v in rows)
    return f"<table cellspacing='4'>{body}</table>"


def versions() -> list[tuple[str, str]]:
    """(name, version) of gradviz and of what it runs on, and the compiled loops' state."""
    import numpy
    import pyqtgraph
    import torch

    import gradviz
    from gradviz.engine import native

    native.load()
    return [("gradviz", gradviz.__version__),
            ("Python", f"{platform.python_version()} ({sys.platform})"),
            ("PyTorch", torch.__version__), ("NumPy", numpy.__version__),
            ("Qt", QtCore.qVersion()), ("PyQt6", QtCore.PYQT_VERSION_STR),
            ("pyqtgraph", pyqtgraph.__version__),
            ("Compiled loops", native.status())]


def about_html() -> str:
    rows = "".join(f"<tr><td><b>{escape(k)}</b>&nbsp;&nbsp;</td><td>{escape(v)}</td></tr>"
                   for k, v in versions())
    return ("<h3>gradviz</h3><p>Watch gradients flow, vanish and explode through recurrent "
            f"networks while they train.</p><table>{rows}</table>")


class HelpDialog(QtWidgets.QDialog):
    """A non-modal page of rich text, scrollable, closed with Esc."""

    def __init__(self, title: str, html: str, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.browser = QtWidgets.QTextBrowser()
        self.browser.setHtml(html)
        self.browser.setOpenExternalLinks(True)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        self.resize(640, 560)


def build_help_menu(window: QtWidgets.QMainWindow) -> QtWidgets.QMenu:
    """The Help menu of ``window``; each page opens in a dialog kept as
    ``window.help_dialogs[title]`` (one of each, brought to the front when asked again)."""
    window.help_dialogs = {}

    def show(title: str, html) -> None:
        dialog = window.help_dialogs.get(title)
        if dialog is None:
            dialog = window.help_dialogs[title] = HelpDialog(f"gradviz — {title}", html(),
                                                             window)
        else:
            dialog.browser.setHtml(html())
        dialog.show()
        dialog.raise_()

    menu = window.menuBar().addMenu("&Help")
    guide = menu.addAction("Guide: why gradients vanish…")
    guide.setShortcut(QtGui.QKeySequence("F1"))
    guide.setToolTip("What ‖∂L/∂hₜ‖ is, why it vanishes and explodes, what clipping does")
    guide.triggered.connect(lambda: show("Guide", lambda: GUIDE))
    window.addAction(guide)
    keys = menu.addAction("Keyboard shortcuts…")
    keys.triggered.connect(lambda: show("Keyboard shortcuts", lambda: shortcuts_html(window)))
    whats_this = menu.addAction("What's this?")
    whats_this.setShortcut(QtGui.QKeySequence("Shift+F1"))
    whats_this.setToolTip("Click a view to read how to read it (as its “?” button)")
    whats_this.triggered.connect(QtWidgets.QWhatsThis.enterWhatsThisMode)
    window.addAction(whats_this)
    menu.addSeparator()
    about = menu.addAction("About gradviz…")
    about.triggered.connect(lambda: show("About", about_html))
    return menu


__all__ = ["GUIDE", "HelpDialog", "build_help_menu", "shortcuts_html", "versions"]
