"""TensorBoard export, read back with TensorBoard's own event reader."""
import struct
import sys

import numpy as np
import pytest

from gradviz import cli
from gradviz.config import RunConfig
from gradviz.engine.training.session import Session

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from gradviz import tensorboard as tb  # noqa: E402

CONFIG = RunConfig(cell="lstm", task="adding", seq_len=12, hidden=6, layers=2,
                   bidirectional=True, batch_size=8, steps=30, seed=3)


def read(folder):
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def scalars(events, tag):
    return {e.step: e.value for e in events.Scalars(tag)}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])       # the IHDR chunk: width, height


@pytest.fixture(scope="module")
def session():
    s = Session(CONFIG)
    captures = []
    s.run(15, on_capture=captures.append)
    s.set_live(clip="norm", clip_threshold=1e-6)      # every step from here on is clipped
    s.run(15, on_capture=captures.append)
    return s, captures


def test_every_capture_becomes_scalars_and_an_image(session, tmp_path):
    s, captures = session
    with tb.BoardWriter(tmp_path) as board:
        for cap in captures:
            board.add_capture(cap)
    events = read(tmp_path)
    tags = set(events.Tags()["scalars"])
    names = captures[0].param_names
    layers = {"l0", "l0_reverse", "l1", "l1_reverse"}
    assert tags == ({"loss", "baseline", "lr", "grad_norm/pre_clip", "grad_norm/post_clip",
                     "clipped"} | {f"grad_norm/param/{n}" for n in names}
                    | {f"{w}/{layer}/{b}" for w in ("rho", "sigma_max") for layer in layers
                       for b in ("W_hi", "W_hf", "W_hg", "W_ho")}
                    | {f"dh_norm/{e}/{layer}" for e in ("first", "last") for layer in layers})
    steps = [c.step for c in captures]
    for tag, field in (("loss", "loss"), ("grad_norm/pre_clip", "grad_norm"),
                       ("grad_norm/post_clip", "grad_norm_clipped")):
        got = scalars(events, tag)
        assert sorted(got) == steps
        np.testing.assert_allclose([got[c.step] for c in captures],
                                   [getattr(c, field) for c in captures], rtol=1e-6)
    clipped = scalars(events, "clipped")
    assert [clipped[c.step] for c in captures] == [float(c.clipped) for c in captures]
    assert [c.clipped for c in captures] == [False] * 15 + [True] * 15
    p = names.index("weight_hh_l1_reverse")
    got = scalars(events, "grad_norm/param/weight_hh_l1_reverse")
    np.testing.assert_allclose([got[c.step] for c in captures],
                               [c.param_grad_norm[p] for c in captures], rtol=1e-6)
    first = scalars(events, "dh_norm/first/l1_reverse")
    np.testing.assert_allclose([first[c.step] for c in captures],
                               [c.dh_norm[1, 1, 0] for c in captures], rtol=1e-6)
    # ρ at the step whose weights it describes (rho_step), once each; σ_max at every step.
    rho = scalars(events, "rho/l0/W_hf")
    assert sorted(rho) == sorted({c.rho_step for c in captures})
    np.testing.assert_allclose([rho[c.rho_step] for c in captures],
                               [float(c.rho[0, 0, 1]) for c in captures], rtol=1e-6)
    sigma = scalars(events, "sigma_max/l0/W_hf")
    assert sorted(sigma) == steps
    np.testing.assert_allclose([sigma[c.step] for c in captures],
                               [float(c.sigma_max[0, 0, 1]) for c in captures], rtol=1e-6)
    images = events.Images("dh_norm/log10")
    assert [i.step for i in images] == steps
    assert (images[0].width, images[0].height) == (max(12 * 22, 256), 4 * tb.BAND)
    assert png_size(images[0].encoded_image_string) == (images[0].width, images[0].height)


def test_the_image_is_log10_over_eight_decades_below_the_largest():
    dh = np.array([[[1e-12, 1e-6, 1e-4, 1.0], [0.0, np.nan, 10.0, 1e-1]]], np.float32)
    image = tb.dh_image(dh)
    assert image.shape == (2 * tb.BAND, 256) and image.dtype == np.uint8
    top = np.log10(10.0)
    expect = [[max(0.0, (np.log10(v) - top) / 8 + 1) if v > 0 else 0.0 for v in row]
              for row in (dh[0, 0], [0.0, 0.0, 10.0, 1e-1])]
    np.testing.assert_array_equal(image[::tb.BAND, ::64], np.round(np.array(expect) * 255))
    assert (image[:tb.BAND] == image[0]).all() and (image[:, :64] == image[:, :1]).all()


def test_a_history_exports_its_rows_and_rho_at_every_row(session, tmp_path):
    s, _ = session
    history = s.history
    tb.export_history(history, tmp_path)
    events = read(tmp_path)
    loss = scalars(events, "loss")
    assert sorted(loss) == list(history.step)
    np.testing.assert_allclose([loss[k] for k in history.step], history.loss, rtol=1e-6)
    baseline = scalars(events, "baseline")
    assert sorted(baseline) == list(history.step)
    np.testing.assert_allclose(list(baseline.values()), history.baseline, rtol=1e-6)
    rho = scalars(events, "rho/l1/W_ho")
    assert sorted(rho) == list(history.step)
    np.testing.assert_allclose([rho[k] for k in history.step], history.rho[:, 1, 0, 3],
                               rtol=1e-6)
    sigma = scalars(events, "sigma_max/l0/W_hi")
    np.testing.assert_allclose([sigma[k] for k in history.step], history.sigma_max[:, 0, 0, 0],
                               rtol=1e-6)
    assert len(events.Images("dh_norm/log10")) == len(history)


def test_an_empty_history_is_refused(tmp_path):
    from gradviz.engine.runs.history import History
    with pytest.raises(ValueError, match="nothing to export"):
        tb.export_history(History(), tmp_path / "board")


def test_gradviz_run_writes_event_files(tmp_path, capsys):
    status = cli.main(["run", "--cell", "gru", "--seq-len", "8", "--hidden", "4", "--steps",
                       "4", "--out", str(tmp_path / "run"), "--tensorboard",
                       str(tmp_path / "board")])
    assert status == 0
    assert f"TensorBoard event files written to {tmp_path / 'board'}" in capsys.readouterr().err
    events = read(tmp_path / "board")
    assert sorted(scalars(events, "loss")) == [0, 1, 2, 3]


def test_without_tensorboard_the_message_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)     # import fails
    with pytest.raises(tb.TensorBoardMissing, match="pip install tensorboard"):
        tb.BoardWriter(tmp_path / "board")
    status = cli.main(["run", "--steps", "1", "--out", str(tmp_path / "run"),
                       "--tensorboard", str(tmp_path / "board")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("gradviz run: --tensorboard: TensorBoard export needs the tensorboard "
                          "package") and not (tmp_path / "run").exists()


# -- File ▸ Export ▸ TensorBoard… ---------------------------------------------------------
def test_the_window_exports_the_run_on_screen(session, qtbot, tmp_path, monkeypatch):
    from PyQt6 import QtWidgets

    from gradviz.ui.prefs import Prefs
    from gradviz.ui.window import MainWindow

    s, _ = session
    s.save(tmp_path / "run")
    window = MainWindow(CONFIG, Prefs(tmp_path / "settings.ini"))
    qtbot.addWidget(window)
    window.open_run(tmp_path / "run")
    file_menu = window.menuBar().actions()[0].menu()
    export = next(a for a in file_menu.actions() if a.text() == "Export").menu()
    assert window.act_tensorboard in export.actions()
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *args: (str(tmp_path / "board"), ""))
    warnings = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning", lambda *args: warnings.append(args))
    window.act_tensorboard.trigger()
    assert not warnings
    assert window.statusBar().currentMessage() == \
        f"TensorBoard event files written to {tmp_path / 'board'}"
    loss = scalars(read(tmp_path / "board"), "loss")
    assert sorted(loss) == list(s.history.step)

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    window.act_tensorboard.trigger()
    assert len(warnings) == 1 and tb.INSTALL_HINT in warnings[0][2]
    window.close()
