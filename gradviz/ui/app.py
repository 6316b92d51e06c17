"""Start the desktop app: ``run_app()`` is what ``gradviz`` (no arguments) and main.py call."""
from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.display import no_display_message
from gradviz.engine.training.launch import prestart
from gradviz.resources import icon_bytes
from gradviz.ui.collector import SafePointCollector

if TYPE_CHECKING:
    from gradviz.ui.window import MainWindow


def run_app(argv: list[str] | None = None, experiment: str | None = None,
            run: str | None = None) -> int:
    """Open the main window (on the guided ``experiment`` if named, or on the saved run in
    the folder ``run``) and run the event loop; returns the exit status: 2, with one line
    on stderr, where there is no display to open it on (:mod:`gradviz.display`).

    The training process is started first, before the window's modules are imported
    (:func:`~gradviz.engine.training.launch.prestart`): it imports PyTorch and warms up on
    the other core while the window is built, and the window's worker hands it the model
    to train as its first command."""
    no_display = None if QtWidgets.QApplication.instance() else no_display_message()
    if no_display:
        print(no_display, file=sys.stderr)
        return 2
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(
        list(sys.argv if argv is None else argv))
    app.setApplicationName("gradviz")
    app.setOrganizationName("gradviz")
    collector = SafePointCollector(app)     # no collection inside a PyQt wrapping
    # Before the process starts: a Ctrl+C from now on closes both.
    signalled = close_on_signals(app)
    training = prestart()
    try:
        from gradviz.ui.window import MainWindow
        from gradviz.ui.worker import TrainingWorker

        app.setWindowIcon(app_icon())
        window = MainWindow(backend=lambda config, parent: TrainingWorker(
            config, parent, process=training))
    except BaseException:
        training.close()    # no window took it over: no process left behind
        raise
    window.show()
    if experiment is not None:
        from gradviz.experiments import load_experiment

        window.load_experiment(load_experiment(experiment))
    if signalled["requested"]:
        # Asked to quit while the window was built: close it as soon as the loop runs.
        QtCore.QTimer.singleShot(0, window.close)
        run = None
    if run is not None:
        # Inside the event loop: a warning shown before it started would run a loop of its
        # own that a signal's close cannot end (the app then never exited on SIGTERM).
        QtCore.QTimer.singleShot(0, lambda: _open_or_warn(window, run))
    status = app.exec()
    collector.stop()
    # Destroy the widgets while the QApplication still exists: left to the interpreter's
    # exit, the order of destruction is arbitrary, and under X11 that crashed now and then.
    window.deleteLater()
    app.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    return status


def _open_or_warn(window: MainWindow, run: str) -> None:
    from gradviz.engine.runs.runformat import RunFileError

    try:
        window.open_run(run)
    except RunFileError as exc:
        window.dialogs.warn("Run not opened", str(exc))


def app_icon() -> QtGui.QIcon:
    """The app's icon, from the package's data (so an installed wheel has it too)."""
    pixmap = QtGui.QPixmap()
    pixmap.loadFromData(icon_bytes(), "SVG")
    return QtGui.QIcon(pixmap)


def close_on_signals(app: QtWidgets.QApplication) -> dict[str, bool]:
    """Ctrl+C in the terminal (SIGINT) and SIGTERM close the windows as their close
    button would: settings saved, the training process stopped, a save or an export under
    way finished first. Without this, SIGTERM killed the app on the spot (a half-written
    temporary file left behind, the training process orphaned) and Ctrl+C only printed a
    KeyboardInterrupt from whatever Python code it hit. A second signal acts as usual.

    Python runs its handler between two of its own instructions in the main thread; the
    training worker's poll timer runs Python code every few milliseconds, so that is soon.
    Returns ``{"requested": bool}``: a signal that came while the window was still being
    built (the training process starts first) found no window to close, so the caller
    closes the window it then shows (:func:`run_app`).
    """
    asked = {"requested": False}

    def handler(signum, _frame) -> None:
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT
                      else signal.default_int_handler)
        asked["requested"] = True
        QtCore.QTimer.singleShot(0, app.closeAllWindows)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
    return asked
