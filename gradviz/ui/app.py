"""Start the desktop app: ``run_app()`` is what ``gradviz`` (no arguments) and main.py call."""
from __future__ import annotations

import sys

from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.ui.window import RESOURCES, MainWindow


def run_app(argv: list[str] | None = None) -> int:
    """Open the main window and run the event loop; returns the exit status."""
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(
        list(sys.argv if argv is None else argv))
    app.setApplicationName("gradviz")
    app.setOrganizationName("gradviz")
    app.setWindowIcon(QtGui.QIcon(str(RESOURCES / "gradviz.svg")))
    window = MainWindow()
    window.show()
    status = app.exec()
    # Destroy the widgets while the QApplication still exists: left to the interpreter's
    # exit, the order of destruction is arbitrary, and under X11 that crashed now and then.
    window.deleteLater()
    app.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    return status
