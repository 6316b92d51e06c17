"""The panel above the plots: the chosen experiment's title, what to watch and what to
expect, a button for its "now change this" step, and, while nothing has been trained, the
hint to press Space. Hidden when there is nothing to say (no experiment and data on
screen) or when the user closes it (View ▸ Description brings it back)."""
from __future__ import annotations

from PyQt6 import QtCore, QtWidgets

from gradviz.config import RunConfig

EMPTY_HINT = "Press Space to train"
NO_EXPERIMENT = ("these settings, or choose a guided experiment from the Experiments menu: "
                 "what to watch in it will show here.")
RECORDED_WATCH = ("Its own training loop trained it, not gradviz, so nothing here names a "
                  "gradviz task or its settings, and Space does not train it. Reset (R) "
                  "trains a new gradviz model with the control panel's settings (this run "
                  "then waits in the Runs menu, under Set aside).")
# The paragraph keeps to a few lines on a projector's 720 lines; the whole of it is in the
# tooltip.
WATCH_LINES = 4


class Banner(QtWidgets.QFrame):
    then_requested = QtCore.pyqtSignal(object)   # the Experiment whose second step to run
    closed_changed = QtCore.pyqtSignal(bool)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("banner")
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        self.setStyleSheet("#banner { background: #fffbe6; }")
        self.experiment = None
        self._empty = True
        self._closed = False
        self._config: RunConfig | None = None
        self._recorded: str | None = None

        self.hint = QtWidgets.QLabel(EMPTY_HINT)
        font = self.hint.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        self.hint.setFont(font)
        self.title = QtWidgets.QLabel()
        bold = self.title.font()
        bold.setBold(True)
        bold.setPointSizeF(bold.pointSizeF() * 1.15)
        self.title.setFont(bold)
        self.watch = QtWidgets.QLabel()
        self.watch.setWordWrap(True)
        self.watch.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.watch.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop)
        # A longer paragraph scrolls within its few lines instead of running under the
        # line below it.
        self.watch_area = QtWidgets.QScrollArea()
        self.watch_area.setWidget(self.watch)
        self.watch_area.setWidgetResizable(True)
        self.watch_area.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.watch_area.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.watch_area.setStyleSheet("background: transparent;")
        self.expected = QtWidgets.QLabel()
        self.expected.setWordWrap(True)
        self.expected.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                                    QtWidgets.QSizePolicy.Policy.Preferred)
        self.then_button = QtWidgets.QPushButton()
        self.then_button.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.then_button.clicked.connect(lambda: self.then_requested.emit(self.experiment))
        close = QtWidgets.QToolButton()
        close.setText("×")
        close.setAutoRaise(True)
        close.setToolTip("Hide the description (View ▸ Description shows it again)")
        close.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        close.clicked.connect(lambda: self.set_closed(True))

        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.hint, 0)
        top.addWidget(self.title, 1)
        top.addWidget(close, 0)
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(self.expected, 1)
        bottom.addWidget(self.then_button, 0)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.watch_area)
        layout.addLayout(bottom)
        self._update()

    # -- what it shows -------------------------------------------------------------------
    def show_experiment(self, experiment) -> None:
        """Describe ``experiment`` (a gradviz.experiments.Experiment), or nothing if None."""
        self.experiment = experiment
        self._update()
        self.set_closed(False)

    def set_empty(self, empty: bool) -> None:
        """Whether the live run has no data yet (the hint to press Space shows)."""
        if empty != self._empty:
            self._empty = empty
            self._update()

    def set_config(self, config: RunConfig) -> None:
        """The settings now in use: the description says when they are no longer the
        experiment's."""
        self._config = config
        self._update()

    def set_recorded(self, text: str | None) -> None:
        """The live run is one recorded from Python, named by ``text`` (None: it is not):
        the banner says so in place of the experiment's description."""
        if text != self._recorded:
            self._recorded = text
            self._update()

    def set_closed(self, closed: bool) -> None:
        if closed != self._closed:
            self._closed = closed
            self._update()
            self.closed_changed.emit(closed)

    @property
    def closed(self) -> bool:
        return self._closed

    def _changed_since(self) -> bool:
        exp = self.experiment
        return (exp is not None and self._config is not None
                and self._config not in (exp.config, exp.then_config))

    def watch_text(self) -> str:
        """What to watch: in the experiment's second configuration (after its "Now: …"
        button), that run's own text where the experiment has one."""
        exp = self.experiment
        if exp is None:
            return ""
        if exp.then_watch and self._config is not None and self._config == exp.then_config:
            return exp.then_watch
        return exp.watch

    def _update(self) -> None:
        exp = self.experiment
        self.hint.setVisible(self._empty and not self._recorded)
        if self._recorded:
            self.title.setWordWrap(True)
            self.title.setText(self._recorded)
            self.watch.setText(RECORDED_WATCH)
            self.watch.setToolTip(RECORDED_WATCH)
            self.watch_area.show()
            for widget in (self.expected, self.then_button):
                widget.hide()
        elif exp is None:
            self.title.setText(NO_EXPERIMENT if self._empty else "")
            self.title.setWordWrap(True)
            for widget in (self.watch_area, self.expected, self.then_button):
                widget.hide()
        else:
            self.title.setWordWrap(False)
            self.title.setText(exp.title + ("  (settings changed since)"
                                            if self._changed_since() else ""))
            watch = self.watch_text()
            self.watch.setText(watch)
            self.watch.setToolTip(f"<p>{watch}</p><p><i>Source:</i> {exp.source}</p>")
            self.expected.setText(f"Expected: {exp.expected}")
            self.watch_area.show()
            self.expected.show()
            self.then_button.setVisible(exp.then_config is not None)
            # Once its run is the one on screen, the button has done its job.
            self.then_button.setEnabled(self._config is None or self._config != exp.then_config)
            if exp.then_label:
                self.then_button.setText(f"Now: {exp.then_label}")
                self.then_button.setToolTip("A fresh model with this one change; the run on "
                                            "screen stays for comparison")
        self.fit_watch()
        wanted = not self._closed and (self._empty or exp is not None or bool(self._recorded))
        # Shown only inside the window: a parentless widget shown is a window of its own.
        if self.parent() is not None or not wanted:
            self.setVisible(wanted)

    # -- the paragraph's height -----------------------------------------------------------
    def fit_watch(self) -> None:
        """Make the paragraph's area exactly as tall as its lines, up to WATCH_LINES whole
        lines (never a line cut through the middle), scrolling a line at a time beyond.
        Measured again whenever the width or the font changes (View ▸ Bigger)."""
        if "watch_area" not in self.__dict__:       # a style change while being built
            return
        line = self.watch.fontMetrics().lineSpacing()
        width = self.watch_area.viewport().width() or self.watch_area.width()
        if not self.watch.text() or width <= 0:
            return
        margins = self.watch.contentsMargins()
        text_height = self.watch.heightForWidth(width) - margins.top() - margins.bottom()
        lines = max(1, min(WATCH_LINES, round(text_height / line)))
        height = lines * line + margins.top() + margins.bottom()
        if self.watch_area.height() != height or self.watch_area.maximumHeight() != height:
            self.watch_area.setFixedHeight(height)
        self.watch_area.verticalScrollBar().setSingleStep(line)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit_watch()

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() in (QtCore.QEvent.Type.FontChange, QtCore.QEvent.Type.StyleChange):
            self.fit_watch()


__all__ = ["Banner", "EMPTY_HINT", "NO_EXPERIMENT", "RECORDED_WATCH"]
