"""The control panel: every setting of a run, bounded by :data:`gradviz.config.LIMITS` so
that it only ever produces valid configurations.

The panel knows nothing of training. It emits ``config_changed(RunConfig)`` when the
user changes something; the window decides whether that is a live change or a new model.
"""
from __future__ import annotations

import math
import os

from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.config import INITS, LIMITS, ConfigError, RunConfig

LSTM_CELLS = ("lstm", "lstm-peephole", "lstm-coupled")

TASK_LABELS = {
    "adding": "Adding problem",
    "copy": "Copy / memory",
    "recall": "Delayed recall",
    "series": "Time series",
    "text": "Text file (char LM)",
    "reber": "Embedded Reber grammar",
}
CELL_LABELS = {
    "rnn-tanh": "RNN (tanh)",
    "rnn-relu": "RNN (ReLU)",
    "lstm": "LSTM",
    "lstm-peephole": "LSTM, peephole",
    "lstm-coupled": "LSTM, coupled gates",
    "gru": "GRU",
}
FIELD_MIN_WIDTH = 80
OPTIMIZER_LABELS = {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop", "adagrad": "Adagrad"}
CLIP_LABELS = {"none": "none", "value": "by value", "norm": "by global norm"}


class LogSpinBox(QtWidgets.QDoubleSpinBox):
    """A spin box for quantities that span decades (learning rate, clipping threshold):
    shows ``1e-3`` style text, accepts scientific notation, and the arrows step through
    1, 2, 5, 10, 20, …"""

    def __init__(self, lo: float, hi: float, parent=None):
        super().__init__(parent)
        # QDoubleSpinBox rounds values to `decimals` places; keep enough for 1e-7.
        self.setDecimals(12)
        self.setRange(lo, hi)

    def textFromValue(self, value: float) -> str:
        return f"{value:.4g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        state = QtGui.QValidator.State
        stripped = text.strip()
        try:
            value = float(stripped)
        except ValueError:
            partial = stripped == "" or all(ch in "0123456789.eE+-" for ch in stripped)
            return (state.Intermediate if partial else state.Invalid), text, pos
        if math.isfinite(value) and self.minimum() <= value <= self.maximum():
            return state.Acceptable, text, pos
        return state.Intermediate, text, pos

    def stepBy(self, steps: int) -> None:
        value = self.value()
        for _ in range(abs(steps)):
            value = _next_125(value, up=steps > 0)
        self.setValue(min(max(value, self.minimum()), self.maximum()))


def _next_125(value: float, up: bool) -> float:
    """The next value of the 1-2-5 series above (or below) ``value``."""
    exponent = math.floor(math.log10(value)) if value > 0 else -12
    candidates = [m * 10.0 ** e for e in (exponent - 1, exponent, exponent + 1) for m in (1, 2, 5)]
    if up:
        return min(c for c in candidates if c > value * (1 + 1e-9))
    return max(c for c in candidates if c < value * (1 - 1e-9))


class _WheelGuard(QtCore.QObject):
    """Scrolling the panel must not change a spin box or list the pointer passes over
    (a changed cell type restarts training); the wheel only acts on the focused one."""

    def eventFilter(self, obj, event):
        if event.type() == QtCore.QEvent.Type.Wheel and not obj.hasFocus():
            event.ignore()
            return True
        return False


class ControlPanel(QtWidgets.QWidget):
    config_changed = QtCore.pyqtSignal(object)   # RunConfig

    def __init__(self, config: RunConfig | None = None, parent=None):
        super().__init__(parent)
        self._config = config or RunConfig()
        self._text_file = self._config.text_file
        self._text_note: str | None = None  # e.g. that only part of the file was read
        self._wheel_guard = _WheelGuard(self)
        self._updating = False
        self.w: dict[str, QtWidgets.QWidget] = {}
        self._build()
        self.set_config(self._config)

    # -- building ---------------------------------------------------------------------
    def _combo(self, name: str, labels: dict[str, str]) -> QtWidgets.QComboBox:
        box = QtWidgets.QComboBox()
        for value, label in labels.items():
            box.addItem(label, value)
        box.currentIndexChanged.connect(self._on_edit)
        return self._register(name, box)

    def _int(self, name: str, special: str | None = None) -> QtWidgets.QSpinBox:
        lo, hi = LIMITS[name]
        box = QtWidgets.QSpinBox()
        box.setRange(int(lo), int(hi))
        if special:
            box.setSpecialValueText(special)
        box.setKeyboardTracking(False)  # typing "128" is one change, not 1, 12, 128
        box.valueChanged.connect(self._on_edit)
        return self._register(name, box)

    def _float(self, name: str, decimals: int, step: float) -> QtWidgets.QDoubleSpinBox:
        lo, hi = LIMITS[name]
        box = QtWidgets.QDoubleSpinBox()
        box.setRange(lo, hi)
        box.setDecimals(decimals)
        box.setSingleStep(step)
        box.setKeyboardTracking(False)
        box.valueChanged.connect(self._on_edit)
        return self._register(name, box)

    def _log(self, name: str) -> LogSpinBox:
        box = LogSpinBox(*LIMITS[name])
        box.setKeyboardTracking(False)
        box.valueChanged.connect(self._on_edit)
        return self._register(name, box)

    def _check(self, name: str, text: str) -> QtWidgets.QCheckBox:
        box = QtWidgets.QCheckBox(text)
        box.toggled.connect(self._on_edit)
        return self._register(name, box)

    def _register(self, name: str, widget: QtWidgets.QWidget) -> QtWidgets.QWidget:
        widget.setObjectName(name)
        if isinstance(widget, (QtWidgets.QAbstractSpinBox, QtWidgets.QComboBox)):
            widget.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
            widget.installEventFilter(self._wheel_guard)
            # Their size hints fit the widest value (a seed of 2147483647); the panel
            # should leave the room to the plots.
            widget.setMinimumWidth(FIELD_MIN_WIDTH)
        if isinstance(widget, QtWidgets.QComboBox):
            widget.setSizeAdjustPolicy(
                QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            widget.setMinimumContentsLength(8)
        self.w[name] = widget
        return widget

    def _group(self, layout: QtWidgets.QVBoxLayout, title: str, rows) -> None:
        group = QtWidgets.QGroupBox(title)
        form = QtWidgets.QFormLayout(group)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for label, widget, tip in rows:
            widget.setToolTip(tip)
            if label is None:
                form.addRow(widget)
            else:
                form.addRow(label, widget)
        layout.addWidget(group)

    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)

        self.text_button = QtWidgets.QPushButton("Text file…")
        self.text_button.clicked.connect(self.choose_text_file)
        self.text_label = QtWidgets.QLabel()
        self.text_label.setWordWrap(True)
        self._group(layout, "Task", [
            ("Task", self._combo("task", TASK_LABELS), "The problem the network learns."),
            (None, self.text_button, "A UTF-8 text file for the character language model."),
            (None, self.text_label, "The text file in use."),
            ("Sequence length T", self._int("seq_len"),
             "Timesteps per sequence: the distance the gradient has to travel."),
        ])
        self._group(layout, "Model", [
            ("Cell", self._combo("cell", CELL_LABELS), "The recurrent cell."),
            ("Hidden units", self._int("hidden"), "Units per layer and direction."),
            ("Layers", self._int("layers"), "Stacked recurrent layers."),
            (None, self._check("bidirectional", "Bidirectional"),
             "A second recurrence reading the sequence backwards."),
        ])
        self._group(layout, "Optimiser", [
            ("Optimiser", self._combo("optimizer", OPTIMIZER_LABELS), ""),
            ("Learning rate", self._log("lr"), "Takes effect on the next step."),
            ("Momentum", self._float("momentum", 3, 0.05), "SGD only."),
        ])
        self._group(layout, "Gradient clipping", [
            ("Clipping", self._combo("clip", CLIP_LABELS),
             "By value: clamp every component. By norm: rescale the whole gradient so its "
             "global L2 norm is at most the threshold. Takes effect on the next step."),
            ("Threshold", self._log("clip_threshold"), "Takes effect on the next step."),
        ])
        rho_row = QtWidgets.QWidget()
        rho_layout = QtWidgets.QHBoxLayout(rho_row)
        rho_layout.setContentsMargins(0, 0, 0, 0)
        self.rho_check = QtWidgets.QCheckBox()
        self.rho_check.setObjectName("rho_on")
        self.rho_check.setToolTip("Off: keep the initialisation's own spectral radius.")
        self.rho_check.toggled.connect(self._on_edit)
        rho_layout.addWidget(self.rho_check)
        rho_layout.addWidget(self._float("rho", 3, 0.05), 1)
        self._group(layout, "Initialisation", [
            ("Recurrent init", self._combo("init", {i: i for i in INITS}),
             "How the recurrent matrices start."),
            ("Spectral radius ρ", rho_row,
             "Rescale every recurrent matrix to this spectral radius; > 1 tends to explode, "
             "< 1 to vanish."),
            ("Forget-gate bias", self._float("forget_bias", 2, 0.5),
             "LSTM cells only; 1 is the usual remedy for early forgetting."),
        ])
        self._group(layout, "Training", [
            ("Batch size", self._int("batch_size"), ""),
            ("Truncated BPTT", self._int("tbptt", special="full"),
             "Cut the gradient every k timesteps; full = backpropagate through all of T."),
            (None, self._check("stateful", "Stateful (carry state across batches)"), ""),
            ("Seed", self._int("seed"), "Same seed, same run."),
            ("Capture every", self._int("capture_every"),
             "Capture the full internals every n steps. Takes effect on the next step."),
        ])
        self.error_label = QtWidgets.QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c0392b;")
        self.error_label.hide()
        layout.addWidget(self.error_label)
        layout.addStretch(1)

    # -- state ------------------------------------------------------------------------
    def config(self) -> RunConfig:
        """The configuration the widgets show (validated; raises ConfigError)."""
        w = self.w
        return self._config.replace(
            task=w["task"].currentData(),
            seq_len=w["seq_len"].value(),
            cell=w["cell"].currentData(),
            hidden=w["hidden"].value(),
            layers=w["layers"].value(),
            bidirectional=w["bidirectional"].isChecked(),
            optimizer=w["optimizer"].currentData(),
            lr=w["lr"].value(),
            momentum=w["momentum"].value() + 0.0,   # + 0.0: a typed "-0.1" clamps to -0.0
            clip=w["clip"].currentData(),
            clip_threshold=w["clip_threshold"].value(),
            init=w["init"].currentData(),
            rho=w["rho"].value() if self.rho_check.isChecked() else None,
            forget_bias=w["forget_bias"].value() + 0.0,
            batch_size=w["batch_size"].value(),
            tbptt=w["tbptt"].value(),
            stateful=w["stateful"].isChecked(),
            seed=w["seed"].value(),
            capture_every=w["capture_every"].value(),
            text_file=self._text_file,
        )

    def set_config(self, config: RunConfig) -> None:
        """Show ``config`` without emitting ``config_changed``."""
        self._updating = True
        try:
            self._config = config
            if config.text_file != self._text_file:
                self._text_note = None
            self._text_file = config.text_file
            for name in ("task", "cell", "optimizer", "clip", "init"):
                box = self.w[name]
                box.setCurrentIndex(box.findData(getattr(config, name)))
            for name in ("seq_len", "hidden", "layers", "lr", "momentum", "clip_threshold",
                         "forget_bias", "batch_size", "tbptt", "seed", "capture_every"):
                self.w[name].setValue(getattr(config, name))
            for name in ("bidirectional", "stateful"):
                self.w[name].setChecked(getattr(config, name))
            self.rho_check.setChecked(config.rho is not None)
            self.w["rho"].setValue(config.rho if config.rho is not None else 1.0)
            self._sync_enabled()
            self.error_label.hide()
        finally:
            self._updating = False

    def _sync_enabled(self) -> None:
        w = self.w
        is_text = w["task"].currentData() == "text"
        self.text_button.setVisible(is_text)
        self.text_label.setVisible(is_text)
        name = os.path.basename(self._text_file or "") or "no file chosen"
        self.text_label.setText(self._text_note or name)
        w["momentum"].setEnabled(w["optimizer"].currentData() == "sgd")
        w["clip_threshold"].setEnabled(w["clip"].currentData() != "none")
        w["rho"].setEnabled(self.rho_check.isChecked())
        w["forget_bias"].setEnabled(w["cell"].currentData() in LSTM_CELLS)

    def _on_edit(self, *_args) -> None:
        if self._updating:
            return
        if self.w["task"].currentData() == "text" and not self._text_file:
            if not self.choose_text_file():
                self.set_config(self._config)  # no file: back to the previous task
                return
        self._sync_enabled()
        try:
            config = self.config()
        except ConfigError as exc:
            self.error_label.setText(str(exc))
            self.error_label.show()
            return
        self.error_label.hide()
        if config != self._config:
            self._config = config
            self.config_changed.emit(config)

    def choose_text_file(self) -> bool:
        """Ask for a text file for the language task; True if one was chosen."""
        start = os.path.dirname(self._text_file or "") or os.path.expanduser("~")
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Text file for the language model", start, "Text files (*.txt);;All files (*)")
        if not path:
            return False
        self._text_file = path
        self._text_note = None
        if self.w["task"].currentData() == "text":
            self._on_edit()
        return True

    def set_text_note(self, note: str | None) -> None:
        """Show ``note`` (which names the file: e.g. that only part of it was read) in
        place of the text file's name; None shows the name again."""
        self._text_note = note
        self._sync_enabled()
