"""The control panel: a widget for every RunConfig field the app shows, built from the
field's declaration (:func:`gradviz.config.settings`: label, help, limits, group, widget
hints) and the registry's names and labels (:mod:`gradviz.registry`), so that it
only ever produces valid configurations and a new setting or cell needs no code here.

The panel knows nothing of training. It emits ``config_changed(RunConfig)`` when the
user changes something; the window decides whether that is a live change or a new model.
"""
from __future__ import annotations

import math
import os

from PyQt6 import QtCore, QtGui, QtWidgets

from gradviz.config import GROUPS, ConfigError, RunConfig, Setting, settings
from gradviz import registry
from gradviz.engine.tasks.texts import CORPUS_LABEL
from gradviz.ui.dialogs import ask_text_file

FIELD_MIN_WIDTH = 80
LIVE_NOTE = "Takes effect on the next step."
# Settings that belong to one cell: their rows show only while that cell is chosen.
CELL_OWN_SETTINGS = {"lru_r_min": "lru", "lru_r_max": "lru", "lru_max_phase": "lru",
                     "indrnn_u_max": "indrnn"}


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
        # The check box of each optional setting (rho): off means None.
        self.on_checks: dict[str, QtWidgets.QCheckBox] = {}
        self._row_widgets: dict[str, QtWidgets.QWidget] = {}
        self._form_of: dict[QtWidgets.QWidget, QtWidgets.QFormLayout] = {}
        self._build()
        self.set_config(self._config)

    # -- building ---------------------------------------------------------------------
    def _widget(self, s: Setting) -> QtWidgets.QWidget:
        """The widget that edits setting ``s``, registered under its name."""
        if s.choices is not None:
            box = QtWidgets.QComboBox()
            for i, choice in enumerate(s.choices.values()):
                box.addItem(choice.label, choice.name)
                box.setItemData(i, choice.help, QtCore.Qt.ItemDataRole.ToolTipRole)
            box.currentIndexChanged.connect(self._on_edit)
        elif s.value_type is bool:
            box = QtWidgets.QCheckBox(s.label)
            box.toggled.connect(self._on_edit)
        else:
            box = self._spin_box(s)
            box.setKeyboardTracking(False)  # typing "128" is one change, not 1, 12, 128
            box.valueChanged.connect(self._on_edit)
        return self._register(s.name, box)

    @staticmethod
    def _spin_box(s: Setting) -> QtWidgets.QAbstractSpinBox:
        lo, hi = s.limits
        if s.log_scale:
            return LogSpinBox(lo, hi)
        if s.value_type is int:
            box = QtWidgets.QSpinBox()
            box.setRange(int(lo), int(hi))
        else:
            box = QtWidgets.QDoubleSpinBox()
            box.setRange(lo, hi)
            box.setDecimals(s.decimals)
            box.setSingleStep(s.step)
        if s.special:
            box.setSpecialValueText(s.special)
        return box

    def _optional(self, s: Setting, box: QtWidgets.QWidget) -> QtWidgets.QWidget:
        """``box`` behind a check box (object name ``<field>_on``): off means None."""
        row = QtWidgets.QWidget()
        layout = QtWidgets.QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        check = QtWidgets.QCheckBox()
        check.setObjectName(f"{s.name}_on")
        check.toggled.connect(self._on_edit)
        self.on_checks[s.name] = check
        layout.addWidget(check)
        layout.addWidget(box, 1)
        return row

    def _register(self, name: str, widget: QtWidgets.QWidget) -> QtWidgets.QWidget:
        widget.setObjectName(name)
        if isinstance(widget, (QtWidgets.QAbstractSpinBox, QtWidgets.QComboBox)):
            widget.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
            widget.installEventFilter(self._wheel_guard)
            # Their size hints fit the widest value (a seed of 2147483647); the panel
            # should leave the room to the plots.
            widget.setMinimumWidth(FIELD_MIN_WIDTH)
        if isinstance(widget, QtWidgets.QComboBox):
            # As wide as its longest choice: a cut "Embedded Reber g" reads as a bug.
            widget.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.w[name] = widget
        return widget

    def _row(self, s: Setting) -> tuple[str | None, QtWidgets.QWidget, str]:
        """(row label or None for a check box, widget, tooltip) of setting ``s``."""
        widget = self._widget(s)
        if s.optional:
            widget = self._optional(s, widget)
        self._row_widgets[s.name] = widget
        tip = f"{s.help}." + (f" {LIVE_NOTE}" if s.live else "")
        return (None if s.value_type is bool else s.label), widget, tip

    def _text_file_rows(self) -> list[tuple[None, QtWidgets.QWidget, str]]:
        """The file chooser of the tasks that read a file, shown only for those."""
        self.text_button = QtWidgets.QPushButton("Text file…")
        self.text_button.clicked.connect(self.choose_text_file)
        self.text_label = QtWidgets.QLabel()
        self.text_label.setWordWrap(True)
        return [(None, self.text_button, dict(settings())["text_file"].help + "."),
                (None, self.text_label, "The text file in use.")]

    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        rows: dict[str, list] = {group: [] for group in GROUPS}
        for name, s in settings():
            if s.shown:
                rows[s.group].append(self._row(s))
            if name == "task":
                rows[s.group] += self._text_file_rows()
        for title, group_rows in rows.items():
            if group_rows:
                self._group(layout, title, group_rows)
        self.error_label = QtWidgets.QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c0392b;")
        self.error_label.hide()
        layout.addWidget(self.error_label)
        layout.addStretch(1)

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
            self._form_of[widget] = form
        layout.addWidget(group)

    def _show_row(self, name: str, shown: bool) -> None:
        """Show or hide setting ``name``'s row, its label included."""
        widget = self._row_widgets[name]
        self._form_of[widget].setRowVisible(widget, shown)

    # -- state ------------------------------------------------------------------------
    def _shown(self) -> list[Setting]:
        return [s for _, s in settings() if s.shown]

    def _value(self, s: Setting):
        box = self.w[s.name]
        if s.optional and not self.on_checks[s.name].isChecked():
            return None
        if s.choices is not None:
            return box.currentData()
        if s.value_type is bool:
            return box.isChecked()
        # + 0.0: a typed "-0.1" clamps to -0.0, which would reach run.json as -0.0
        return box.value() + 0.0 if s.value_type is float else box.value()

    def _show(self, s: Setting, value) -> None:
        box = self.w[s.name]
        if s.optional:
            self.on_checks[s.name].setChecked(value is not None)
            if value is None:
                value = s.suggested
        if s.choices is not None:
            box.setCurrentIndex(box.findData(value))
        elif s.value_type is bool:
            box.setChecked(value)
        else:
            box.setValue(value)

    def config(self) -> RunConfig:
        """The configuration the widgets show (validated; raises ConfigError)."""
        values = {s.name: self._value(s) for s in self._shown()}
        return self._config.replace(text_file=self._text_file, **values)

    def set_config(self, config: RunConfig) -> None:
        """Show ``config`` without emitting ``config_changed``."""
        self._updating = True
        try:
            self._config = config
            if config.text_file != self._text_file:
                self._text_note = None
            self._text_file = config.text_file
            for s in self._shown():
                self._show(s, getattr(config, s.name))
            self._sync_enabled()
            self.error_label.hide()
        finally:
            self._updating = False

    def _needs_file(self) -> bool:
        return registry.task_spec(self.w["task"].currentData()).needs_file

    def _sync_enabled(self) -> None:
        w = self.w
        self.text_button.setVisible(self._needs_file())
        self.text_label.setVisible(self._needs_file())
        name = os.path.basename(self._text_file or "") or CORPUS_LABEL
        self.text_label.setText(self._text_note or name)
        w["momentum"].setEnabled(w["optimizer"].currentData() == "sgd")
        w["clip_threshold"].setEnabled(w["clip"].currentData() != "none")
        for field_name, check in self.on_checks.items():
            w[field_name].setEnabled(check.isChecked())
        w["forget_bias"].setEnabled(registry.cell_spec(w["cell"].currentData()).has_forget_gate)
        # The modern cells' own initialisations: shown only for their cell, so that the
        # panel of an LSTM does not list three greyed-out LRU rows.
        cell = w["cell"].currentData()
        for field_name, owner in CELL_OWN_SETTINGS.items():
            if field_name in self._row_widgets:
                self._show_row(field_name, cell == owner)

    def _on_edit(self, *_args) -> None:
        if self._updating:
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
        path = ask_text_file(self, self._text_file)
        if not path:
            return False
        self._text_file = path
        self._text_note = None
        if self._needs_file():
            self._on_edit()
        return True

    def set_text_note(self, note: str | None) -> None:
        """Show ``note`` (which names the file: e.g. that only part of it was read) in
        place of the text file's name; None shows the name again."""
        self._text_note = note
        self._sync_enabled()
