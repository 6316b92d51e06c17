"""Bad input never breaks gradviz (issue 4, "Bad input"): out-of-range numbers typed into
the controls, text files that are missing, empty, binary, not UTF-8 or huge, run files
that are damaged or hostile, and paths that cannot be written.

This machine runs the tests as root, where file modes deny nothing, so "no permission"
and "disk full" are simulated: the module that writes gets an ``open`` whose files refuse
to be opened (PermissionError) or to take bytes (ENOSPC).
"""
from __future__ import annotations

import errno
import json
import math
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PyQt6 import QtCore, QtTest, QtWidgets

from gradviz import cli
from gradviz.config import LIMITS, RunConfig
from gradviz.engine.runs import files, runfile
from gradviz.engine.runs.runfile import RunFileError, load_run, save_run
from gradviz.engine.tasks import load_text
from gradviz.ui.controls import ControlPanel
from gradviz.ui.inprocess import InProcessWorker
from gradviz.ui.model import AppModel
from gradviz.ui.prefs import Prefs
from gradviz.ui.window import MainWindow

from helpers import settle

SMALL = RunConfig(task="adding", seq_len=12, cell="lstm", hidden=8, batch_size=8)
CLI_SMALL = ["--steps", "3", "--hidden", "8", "--seq-len", "10", "--batch-size", "8"]
START_TIMEOUT_MS = 30000
TEXT_CAP = 5_000_000  # what load_text reads of a text file at most


# -- simulated file-system failures ---------------------------------------------------
class FullDisk:
    """``open`` for a full disk: the file opens, and every write fails with ENOSPC."""

    def __init__(self, path, mode="r", *args, **kwargs):
        self._file = open(path, mode, *args, **kwargs)

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def no_permission(path, mode="r", *args, **kwargs):
    """``open`` where nothing may be written."""
    if any(flag in mode for flag in "wax+"):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    return open(path, mode, *args, **kwargs)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` (hidden temporary files included) and its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


class Touch:
    """Unpickling this creates ``path``: the proof that a pickle was executed."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


# == numeric controls =================================================================
# The settings of one cell only (the LRU's ring, IndRNN's bound) are typed with that cell.
CELL_NUMERIC = {"lru_r_min": "lru", "lru_r_max": "lru", "lru_max_phase": "lru",
                "indrnn_u_max": "indrnn"}
NUMERIC = ("seq_len", "hidden", "layers", "batch_size", "tbptt", "seed", "capture_every",
           "lr", "momentum", "clip_threshold", "rho", "forget_bias", *CELL_NUMERIC)
# Every control enabled: SGD (momentum), clipping (threshold), a spectral radius, an LSTM.
ALL_ON = SMALL.replace(optimizer="sgd", clip="norm", rho=1.0)


def all_on(name: str) -> RunConfig:
    """ALL_ON, with the cell whose setting ``name`` is where it is one cell's."""
    if name not in CELL_NUMERIC:
        return ALL_ON
    # IndRNN's bound is optional (2^(1/T) when unset): set, its field is enabled.
    extra = {"indrnn_u_max": 1.0} if name == "indrnn_u_max" else {}
    return ALL_ON.replace(cell=CELL_NUMERIC[name], **extra)


def out_of_range_texts(name: str) -> list[str]:
    lo, hi = LIMITS[name]
    if isinstance(getattr(SMALL, name), int):
        return [str(int(lo) - 1), str(int(hi) + 1), str(int(hi) * 10), "-" + str(int(hi))]
    return [f"{lo - 1:g}", f"{lo / 10:g}" if lo > 0 else f"{lo - 0.5:g}", f"{hi + 1:g}",
            f"{hi * 10:g}", "1e99", "-1e99", "nan", "inf"]


def shown_value(box) -> float:
    """The number the line edit shows, read as the user would read it."""
    text = box.lineEdit().text()
    if text == box.specialValueText() and text:
        return box.minimum()
    return float(text)


def type_into(qtbot, box, text: str, finish) -> None:
    """Select all, type ``text`` key by key, then end the edit (Return or leaving the field)."""
    box.window().activateWindow()
    box.setFocus()
    qtbot.waitUntil(box.hasFocus, timeout=2000)
    edit = box.lineEdit()
    edit.selectAll()
    qtbot.keyClicks(edit, text)
    with qtbot.waitSignal(box.editingFinished, timeout=1000):
        finish(box)


def press_return(box) -> None:
    QtTest.QTest.keyClick(box.lineEdit(), QtCore.Qt.Key.Key_Return)


def leave_field(box) -> None:
    box.window().findChild(QtWidgets.QComboBox, "task").setFocus()


def test_every_numeric_control_is_covered(qtbot):
    assert set(NUMERIC) == set(LIMITS) - {"steps"}  # steps is a CLI option, not a control
    for name in NUMERIC:
        panel = ControlPanel(all_on(name))
        qtbot.addWidget(panel)
        assert panel.w[name].isEnabled(), f"{name} must be enabled to be typed into"


@pytest.mark.parametrize("finish", [press_return, leave_field], ids=["return", "focus-out"])
@pytest.mark.parametrize("name", NUMERIC)
def test_typed_out_of_range_values_are_refused_at_the_widget(qtbot, name, finish):
    panel = ControlPanel(all_on(name))
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitExposed(panel)
    changes: list[RunConfig] = []
    panel.config_changed.connect(changes.append)
    box = panel.w[name]
    lo, hi = LIMITS[name]
    for text in out_of_range_texts(name):
        type_into(qtbot, box, text, finish)
        assert lo <= box.value() <= hi, f"{name}: typing {text!r} left {box.value()}"
        assert lo <= shown_value(box) <= hi, f"{name}: typing {text!r} shows " \
                                             f"{box.lineEdit().text()!r}"
        config = panel.config()
        assert config.validate() is config
        assert lo <= getattr(config, name) <= hi
    assert not panel.error_label.isVisible()
    for config in changes:  # whatever the panel sent on was valid
        assert config.validate() is config and lo <= getattr(config, name) <= hi


def test_a_typed_minus_that_clamps_to_zero_is_plus_zero(qtbot):
    """QDoubleSpinBox clamps "-0.1" to -0.0, which would reach run.json as -0.0."""
    panel = ControlPanel(ALL_ON)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitExposed(panel)
    type_into(qtbot, panel.w["momentum"], "-0.1", press_return)
    momentum = panel.config().momentum
    assert momentum == 0 and math.copysign(1.0, momentum) == 1.0


@pytest.fixture(scope="module")
def window(qapp, tmp_path_factory):
    """One window for the window tests of this file; it trains in-process (a thread, the
    training process's messages): these tests are about input, not the process."""
    prefs = Prefs(tmp_path_factory.mktemp("prefs") / "settings.ini")
    win = MainWindow(model=AppModel(SMALL, prefs, backend=InProcessWorker))
    win.dashboard.set_focus(())   # the plain grid of six views: these tests read them
    win.show()
    deadline = QtCore.QDeadlineTimer(START_TIMEOUT_MS)
    while win.worker.state != "paused" and not deadline.hasExpired():
        QtTest.QTest.qWait(20)
    assert win.worker.state == "paused"
    yield win
    win.close()


@pytest.fixture
def warnings_shown(window, monkeypatch) -> list[tuple[str, str]]:
    """(title, message) of every warning the window shows; no modal box blocks."""
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning", lambda parent, title, message:
                        shown.append((title.removeprefix("gradviz: "), message)))
    return shown


def filled(qtbot, window, captures: int = 4) -> None:
    """The window shows at least ``captures`` steps of training, paused."""
    if len(window.history) < captures:
        window.act_run.trigger()
        qtbot.waitUntil(lambda: len(window.history) >= captures, timeout=START_TIMEOUT_MS)
        window.act_run.trigger()
        qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    settle(qtbot, window)


def test_the_window_gets_only_valid_configs_from_typed_numbers(window, qtbot):
    received: list[RunConfig] = []
    window.controls.config_changed.connect(received.append)
    try:
        for name in ("seq_len", "hidden", "lr", "clip_threshold"):
            box = window.controls.w[name]
            box.setEnabled(True)
            for text in out_of_range_texts(name)[:3]:
                type_into(qtbot, box, text, press_return)
                assert window.config.validate() is window.config
                assert window.config == window.controls.config()
                lo, hi = LIMITS[name]
                assert lo <= getattr(window.config, name) <= hi
        assert all(c.validate() is c for c in received)
        qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    finally:
        window.controls.config_changed.disconnect(received.append)
        window.controls.set_config(SMALL)
        window.apply_config(SMALL)
        qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
    assert window.config == SMALL


# == run records ======================================================================
def saved_run(folder: Path, history) -> Path:
    save_run(folder, SMALL, history)
    return folder


def add_pickle(folder: Path, marker: Path) -> None:
    """Replace capture.npz by a copy whose 'loss' array holds a pickled Touch."""
    with np.load(folder / "capture.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["loss"] = np.array([Touch(marker)] * len(arrays["loss"]), dtype=object)
    np.savez(folder / "capture.npz", **arrays)


def as_npy(folder: Path, marker: Path) -> None:
    """Replace capture.npz by a bare .npy file of pickled objects."""
    with open(folder / "capture.npz", "wb") as handle:
        np.save(handle, np.array([Touch(marker)], dtype=object))


HOSTILE = {
    "npz member": add_pickle,
    "bare pickle": lambda folder, marker: (folder / "capture.npz").write_bytes(
        pickle.dumps({"loss": Touch(marker)})),
    "npy of objects": as_npy,
}


@pytest.mark.parametrize("how", sorted(HOSTILE))
def test_a_pickled_object_in_a_run_is_refused_and_never_executed(tmp_path, make_history, how):
    folder = saved_run(tmp_path / "run", make_history(6, T=12, H=8))
    marker = tmp_path / "pickle-was-executed"
    HOSTILE[how](folder, marker)
    assert not marker.exists()
    with pytest.raises(RunFileError, match="capture.npz: (holds pickled|damaged)") as error:
        load_run(folder)
    assert str(folder / "capture.npz") in str(error.value)
    assert not marker.exists(), "loading the run executed a pickle"


def test_the_hostile_file_really_executes_when_unpickled(tmp_path, make_history):
    """Proof that the test above would see an executed pickle."""
    folder = saved_run(tmp_path / "run", make_history(3, T=12, H=8))
    marker = tmp_path / "executed"
    add_pickle(folder, marker)
    with np.load(folder / "capture.npz", allow_pickle=True) as npz:
        npz["loss"]
    assert marker.exists()


def truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_damaged_capture_npz_is_not_left_open(tmp_path, make_history):
    folder = saved_run(tmp_path / "run", make_history(4, T=12, H=8))
    truncate(folder / "capture.npz", 0.5)
    with pytest.raises(RunFileError, match="damaged") as error:
        load_run(folder)
    assert error.traceback  # the error is still in hand: the file must be closed already
    open_files = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            open_files.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    assert str(folder / "capture.npz") not in open_files


def edit_json(folder: Path, change) -> None:
    doc = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    change(doc)
    (folder / "run.json").write_text(json.dumps(doc), encoding="utf-8")


BAD_RUNS = {
    "truncated npz": (lambda f, m: truncate(f / "capture.npz", 0.5), "capture.npz: damaged"),
    "truncated json": (lambda f, m: truncate(f / "run.json", 0.5), "not valid JSON"),
    "not a run": (lambda f, m: edit_json(f, lambda d: d.update(schema="photos")),
                  "not a gradviz run"),
    "schema version": (lambda f, m: edit_json(f, lambda d: d.update(schema_version=99)),
                       "schema_version 99 is not supported"),
    "pickled npz": (add_pickle, "holds pickled"),
    "wrong type": (lambda f, m: edit_json(f, lambda d: d["config"].update(hidden="many")),
                   "hidden: must be an integer"),
    "missing key": (lambda f, m: edit_json(f, lambda d: d.pop("summary")),
                    "\"summary\" is missing"),
}


def view_tables(window) -> dict[str, tuple[list[str], np.ndarray]]:
    return {key: view.csv_table() for key, view in window.views.items() if key != "text"}


def test_a_bad_run_leaves_the_run_on_screen_untouched(window, qtbot, tmp_path, monkeypatch,
                                                      warnings_shown):
    filled(qtbot, window)
    good = saved_run(tmp_path / "good", window.history)
    history = window.history
    rows = {name: np.array(getattr(history, name)) for name in
            ("step", "loss", "grad_norm", "dh_norm", "param_grad_norm")}
    tables = view_tables(window)
    image = window.views["gradflow"].image_array().copy()
    title, state = window.windowTitle(), window.state_label.text()
    marker = tmp_path / "pickle-was-executed"

    for case, (damage, expected) in BAD_RUNS.items():
        folder = tmp_path / case.replace(" ", "-")
        shutil.copytree(good, folder)
        damage(folder, marker)
        monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName",
                            lambda *a, f=folder, **k: (str(f / "run.json"), ""))
        window.act_open.trigger()
        window.draw_now()
        assert len(warnings_shown) == 1, case
        heading, message = warnings_shown.pop()
        assert heading == "Run not opened" and str(folder) in message, (case, message)
        assert expected in message, (case, message)
        assert window.history is history, case
        for name, array in rows.items():
            np.testing.assert_array_equal(getattr(window.history, name), array, err_msg=case)
        for key, (header, table) in view_tables(window).items():
            assert header == tables[key][0], (case, key)
            np.testing.assert_array_equal(table, tables[key][1], err_msg=f"{case}: {key}")
        np.testing.assert_array_equal(window.views["gradflow"].image_array(), image, case)
        assert window.config == SMALL and window.controls.config() == SMALL, case
        assert (window.windowTitle(), window.state_label.text()) == (title, state), case
    assert not marker.exists(), "opening a run executed a pickle"


# == text files =======================================================================
@pytest.fixture(scope="module")
def huge_text(tmp_path_factory) -> Path:
    """A 100 MB UTF-8 text file, written as one repeated 1 MB block (well under a second)."""
    line = "Le cœur a ses raisons que la raison ignore.\n"  # 45 bytes, 2 of them 'œ'
    block = (line * (1_000_000 // len(line.encode())) + "x" * (1_000_000 % 45)).encode()
    assert len(block) == 1_000_000
    path = tmp_path_factory.mktemp("huge") / "huge.txt"
    with open(path, "wb") as handle:
        for _ in range(100):
            handle.write(block)
    return path


def test_a_100_mb_text_is_read_in_part_and_says_so(huge_text):
    text, note = load_text(huge_text)
    assert len(text.encode("utf-8")) <= TEXT_CAP
    assert text.startswith("Le cœur a ses raisons")
    assert note == "huge.txt: read the first 5.0 MB of 100.0 MB"


def test_gradviz_run_on_a_100_mb_text_prints_a_one_line_note(huge_text, tmp_path, capsys):
    assert cli.main(["run", "--task", "text", "--text-file", str(huge_text), *CLI_SMALL,
                     "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == ["note: huge.txt: read the first 5.0 MB of 100.0 MB"]
    assert load_run(tmp_path / "run")[0].text_file == str(huge_text)


def bad_text(folder: Path, kind: str) -> Path:
    path = folder / f"{kind}.txt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 64)
    elif kind == "latin-1":
        path.write_bytes("Voilà un texte écrit en Latin-1, pas en UTF-8.".encode("latin-1"))
    return path  # "missing": never written


TEXT_ERRORS = {"missing": "does not exist", "empty": "is empty", "binary": "binary file",
               "latin-1": "not valid UTF-8"}


@pytest.mark.parametrize("kind", sorted(TEXT_ERRORS))
def test_gradviz_run_with_a_bad_text_file_says_why_in_one_line(tmp_path, capsys, kind):
    path = bad_text(tmp_path, kind)
    out = tmp_path / "run"
    assert cli.main(["run", "--task", "text", "--text-file", str(path), *CLI_SMALL,
                     "--out", str(out)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("gradviz run: --text-file: ") and str(path) in err
    assert TEXT_ERRORS[kind] in err
    assert not out.exists()


def use_text(qtbot, window, path: Path) -> None:
    config = SMALL.replace(task="text", text_file=str(path))
    window.controls.set_config(config)
    window.apply_config(config)  # as if chosen with the Text file… button


def test_the_app_reads_a_huge_text_in_part_and_shows_it(window, qtbot, huge_text, tmp_path):
    try:
        use_text(qtbot, window, huge_text)
        qtbot.waitUntil(lambda: "5.0 MB of 100.0 MB" in window.controls.text_label.text(),
                        timeout=START_TIMEOUT_MS)
        assert window.controls.text_label.text() == "huge.txt: read the first 5.0 MB of 100.0 MB"
        assert window.controls.text_label.isVisible()
        assert "read the first 5.0 MB" in window.statusBar().currentMessage()
        assert window.worker.state == "paused" and window.error_box is None

        small = tmp_path / "small.txt"
        small.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
        use_text(qtbot, window, small)
        qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)
        assert window.controls.text_label.text() == "small.txt"  # the old note is gone
    finally:
        window.controls.set_config(SMALL)
        window.apply_config(SMALL)
        qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)


def test_the_app_says_what_is_wrong_with_a_bad_text_file(window, qtbot, tmp_path):
    try:
        for kind, expected in TEXT_ERRORS.items():
            path = bad_text(tmp_path, kind)
            use_text(qtbot, window, path)
            qtbot.waitUntil(lambda: window.error_box is not None and window.error_box.isVisible(),
                            timeout=START_TIMEOUT_MS)
            box = window.error_box
            assert str(path) in box.text() and expected in box.text(), (kind, box.text())
            assert box.detailedText() == "", f"{kind}: a traceback was shown"
            assert "Traceback" not in box.text()
            assert window.state_label.text() == "error" and window.worker.is_alive()
            box.close()
            qtbot.waitUntil(lambda: window.error_box is None, timeout=5000)
    finally:
        window.controls.set_config(SMALL)
        window.apply_config(SMALL)
        qtbot.waitUntil(lambda: window.worker.state == "paused", timeout=START_TIMEOUT_MS)


# == paths that cannot be written =====================================================
SAVE_FAULTS = {
    "no permission": (lambda mp: mp.setattr(runfile, "open", no_permission, raising=False),
                      PermissionError),
    "disk full": (lambda mp: mp.setattr(runfile, "open", FullDisk, raising=False), OSError),
}


def fail_second_rename(monkeypatch):
    """The capture.npz rename succeeds, the run.json one fails."""
    real = os.replace

    def replace(src, dst):
        if Path(dst).name == "run.json":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("fault", ["no permission", "disk full", "second rename"])
def test_a_failed_save_run_keeps_the_old_run_and_leaves_no_temp_file(tmp_path, make_history,
                                                                    monkeypatch, fault):
    folder = saved_run(tmp_path / "run", make_history(5, T=12, H=8))
    before = snapshot(folder)
    if fault == "second rename":
        fail_second_rename(monkeypatch)
    else:
        SAVE_FAULTS[fault][0](monkeypatch)
    with pytest.raises(OSError):
        save_run(folder, SMALL.replace(seed=7), make_history(9, T=12, H=8))
    assert snapshot(folder) == before
    monkeypatch.undo()
    config, history, _ = load_run(folder)
    assert config == SMALL and len(history) == 5


@pytest.mark.parametrize("fault", sorted(SAVE_FAULTS))
def test_save_run_in_the_app_reports_the_folder_and_keeps_the_old_run(
        window, qtbot, tmp_path, monkeypatch, warnings_shown, fault):
    filled(qtbot, window)
    folder = tmp_path / "run"
    window.save_run_to(folder)
    before = snapshot(folder)
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(folder), ""))
    SAVE_FAULTS[fault][0](monkeypatch)
    window.act_save.trigger()
    assert len(warnings_shown) == 1
    title, message = warnings_shown[0]
    reason = os.strerror(errno.EACCES if fault == "no permission" else errno.ENOSPC)
    assert title == "Run not saved" and str(folder) in message and reason in message
    assert ".tmp" not in message  # names the folder asked for, not a temporary file
    assert snapshot(folder) == before


EXPORT_FAULTS = {
    "no permission": (no_permission, os.strerror(errno.EACCES)),
    "disk full": (FullDisk, os.strerror(errno.ENOSPC)),
}


def export_menu_action(window, key: str, suffix: str):
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&File")
    exports = next(a.menu() for a in file_menu.actions() if a.text() == "Export")
    sub = next(a.menu() for a in exports.actions() if a.text() == window.views[key].title)
    return next(a for a in sub.actions() if a.text() == f"{suffix.upper()}…")


@pytest.mark.parametrize("fault", sorted(EXPORT_FAULTS))
def test_view_export_that_cannot_write_keeps_the_old_file(window, qtbot, tmp_path, monkeypatch,
                                                          warnings_shown, fault):
    filled(qtbot, window)
    fake_open, reason = EXPORT_FAULTS[fault]
    for suffix in ("png", "svg", "csv"):
        target = tmp_path / f"loss.{suffix}"
        target.write_bytes(b"an earlier export")
        monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                            lambda *a, t=target, **k: (str(t), ""))
        monkeypatch.setattr(files, "open", fake_open, raising=False)
        export_menu_action(window, "loss", suffix).trigger()
        monkeypatch.delattr(files, "open")
        title, message = warnings_shown.pop()
        assert title == "Export failed" and str(target) in message and reason in message
        assert target.read_bytes() == b"an earlier export"
    assert not warnings_shown
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.csv", "loss.png", "loss.svg"]


def test_view_export_to_a_missing_folder_says_so(window, qtbot, tmp_path, monkeypatch,
                                                 warnings_shown):
    filled(qtbot, window)
    target = tmp_path / "gone" / "gradnorm.csv"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(target), ""))
    export_menu_action(window, "gradnorm", "csv").trigger()
    [(title, message)] = warnings_shown
    assert title == "Export failed" and str(target) in message and "does not exist" in message
    assert not target.parent.exists()


def test_dashboard_export_that_cannot_write_keeps_the_old_file(window, qtbot, tmp_path,
                                                               monkeypatch, warnings_shown):
    filled(qtbot, window)
    missing = tmp_path / "gone" / "dashboard.png"
    target = tmp_path / "dashboard.png"
    target.write_bytes(b"an earlier dashboard")
    cases = [(missing, None, "does not exist")] + [
        (target, fake_open, reason) for fake_open, reason in EXPORT_FAULTS.values()]
    for path, fake_open, reason in cases:
        monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                            lambda *a, p=path, **k: (str(p), ""))
        if fake_open is not None:
            monkeypatch.setattr(files, "open", fake_open, raising=False)
        window.act_dashboard.trigger()
        if fake_open is not None:
            monkeypatch.delattr(files, "open")
        title, message = warnings_shown.pop()
        assert title == "Export failed" and str(path) in message and reason in message, message
    assert target.read_bytes() == b"an earlier dashboard"
    assert [p.name for p in tmp_path.iterdir()] == ["dashboard.png"]


@pytest.mark.parametrize("fault", sorted(SAVE_FAULTS))
def test_gradviz_run_out_that_cannot_be_written_is_one_line_and_keeps_the_old_run(
        tmp_path, capsys, monkeypatch, fault):
    out = tmp_path / "run"
    assert cli.main(["run", *CLI_SMALL, "--quiet", "--out", str(out)]) == 0
    before = snapshot(out)
    SAVE_FAULTS[fault][0](monkeypatch)
    assert cli.main(["run", *CLI_SMALL, "--seed", "3", "--quiet", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    reason = os.strerror(errno.EACCES if fault == "no permission" else errno.ENOSPC)
    assert f"could not save the run to {out}: {reason}" in err and ".tmp" not in err
    assert snapshot(out) == before


def test_gradviz_run_figures_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    assert cli.main(["run", *CLI_SMALL, "--quiet", "--out", str(tmp_path / "r1"),
                     "--figures", str(blocker)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"--figures: could not write figures to {blocker}" in err
    assert (tmp_path / "r1" / "run.json").is_file()  # the run itself is saved

    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "gradflow.png").write_bytes(b"an earlier figure")
    for fake_open, reason in EXPORT_FAULTS.values():
        def figures_fail(path, mode="r", *args, fake=fake_open, **kwargs):
            # Only the figures' writes fail: the run folder itself is saved.
            opener = fake if Path(path).parent == figures else open
            return opener(path, mode, *args, **kwargs)
        monkeypatch.setattr(files, "open", figures_fail, raising=False)
        assert cli.main(["run", *CLI_SMALL, "--quiet", "--out", str(tmp_path / "r2"),
                         "--figures", str(figures)]) == 1
        monkeypatch.delattr(files, "open")
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert "--figures: could not write figures" in err and reason in err
        assert snapshot(figures) == {"gradflow.png": b"an earlier figure"}
