"""The views' toolbar row: wraps where the width runs out, skips hidden widgets, and is not
a QLayout written in Python (PyQt's wrapping of the items Qt hands such a layout failed now
and then under the garbage collector; flow.py's docstring says how)."""
import ast
from pathlib import Path

from PyQt6 import QtWidgets

from gradviz.ui.views.flow import FlowBar

PACKAGE = Path(__file__).resolve().parents[1] / "gradviz"


def _bar(qtbot, labels):
    bar = FlowBar()
    qtbot.addWidget(bar)
    buttons = [QtWidgets.QPushButton(text) for text in labels]
    for button in buttons:
        bar.addWidget(button)
    return bar, buttons


def test_one_row_when_wide_and_wrapped_rows_when_narrow(qtbot):
    bar, buttons = _bar(qtbot, ["layer 2, backward", "gate: forget", "compare", "bounds"])
    wide = bar.sizeHint().width() + 10
    bar.resize(wide, bar.heightForWidth(wide))
    bar.show()
    qtbot.waitExposed(bar)
    assert len({b.geometry().top() for b in buttons}) == 1
    row = max(b.sizeHint().height() for b in buttons)
    assert bar.heightForWidth(wide) == row

    narrow = max(b.sizeHint().width() for b in buttons) + 4
    bar.resize(narrow, bar.heightForWidth(narrow))
    qtbot.wait(10)
    tops = [b.geometry().top() for b in buttons]
    assert len(set(tops)) == len(buttons)               # one per row
    assert bar.heightForWidth(narrow) > 3 * row
    for button in buttons:                              # each shown whole
        assert button.geometry().width() == button.sizeHint().width()
        assert button.geometry().right() < narrow


def test_hidden_and_deleted_widgets_take_no_room(qtbot):
    bar, buttons = _bar(qtbot, ["one", "two", "three"])
    bar.show()
    width = bar.sizeHint().width()
    buttons[1].hide()
    qtbot.waitUntil(lambda: bar.sizeHint().width() < width)
    shown = bar.sizeHint().width()
    buttons[2].setParent(None)
    buttons[2].deleteLater()
    qtbot.waitUntil(lambda: len(bar.widgets()) == 2)
    assert bar.sizeHint().width() < shown


def test_an_explicitly_hidden_widget_stays_hidden_when_added(qtbot):
    bar = FlowBar()
    qtbot.addWidget(bar)
    bar.show()
    hidden, plain = QtWidgets.QLabel("hidden"), QtWidgets.QLabel("plain")
    hidden.hide()
    bar.addWidget(hidden)
    bar.addWidget(plain)
    assert hidden.isHidden() and not plain.isHidden()


def test_no_qlayout_is_written_in_python():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    name = ast.unparse(base)
                    if name.endswith("QLayout") or name.endswith("QLayoutItem"):
                        offenders.append(f"{path.name}:{node.name}({name})")
    assert offenders == []


def test_a_combo_filled_while_the_bar_is_hidden_shows_whole_when_it_is_shown(qtbot):
    # Qt asks a hidden parent for no new layout when a child's size hint changes: a view's
    # gate box filled on a page not shown kept the width of its empty self ("i — in").
    bar = FlowBar()
    qtbot.addWidget(bar)
    combo = QtWidgets.QComboBox()
    combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
    bar.addWidget(combo)
    bar.resize(600, 40)
    bar.show()
    qtbot.waitExposed(bar)
    bar.hide()
    combo.addItem("i — input gate, a long name")
    bar.show()
    qtbot.wait(10)
    assert combo.geometry().width() == combo.sizeHint().width()
    combo.addItem("f — forget gate, a longer name still")
    combo.setCurrentIndex(1)
    bar.relayout()
    assert combo.geometry().width() == combo.sizeHint().width()
