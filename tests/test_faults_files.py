"""Files that would hang gradviz, flood its memory or make it raise (issue 14).

A run folder whose run.json or capture.npz is a FIFO, or a link to one, to /dev/zero or to
/dev/urandom, and a text file that is a FIFO, are refused at once; capture.npz is read
header first, so that a zip bomb or an array declared far larger than the format allows is
refused before anything is decompressed; degenerate shapes, wrapped integers, byte order
marks, floats where integers belong and nesting that exhausts the parser's stack are
clear errors, never a hang, a MemoryError or a traceback.

A call that could hang runs where a regression fails instead of hanging: in a thread
joined with a timeout (a FIFO can be unblocked by opening it for writing), or, where a
regression would read without end (/dev/zero), in a child process with a memory limit and
a timeout.
"""
from __future__ import annotations

import errno
import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gradviz import cli
from gradviz.config import RunConfig
from gradviz.engine.runs.runformat import ROW_OPTIONAL, ROW_SPEC
from gradviz.engine.runs.runfile import RunFileError, load_run, load_run_config, save_run
from gradviz.engine.tasks import TaskInputError, load_text
from gradviz.engine.training.train import Trainer

REPO = Path(__file__).resolve().parents[1]
QUICK_S = 1.0            # "at once": each refusal takes well under this
GUARD_S = 10.0           # a call still running after this has hung
CONFIG = RunConfig(task="adding", seq_len=20, hidden=8)


# -- guards ---------------------------------------------------------------------------
def within(seconds: float, call, unblock: tuple[Path, ...] = ()):
    """``call()``'s result (or its exception) if it returns within ``seconds``; otherwise
    the test fails, after opening each FIFO of ``unblock`` for writing so that a reader
    stuck on it sees the end of the file and its thread ends."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:      # handed to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    start = time.perf_counter()
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in unblock:
            if fifo.exists() and stat.S_ISFIFO(fifo.stat().st_mode):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(seconds)
        pytest.fail(f"still running after {seconds} s: it hangs")
    outcome["seconds"] = time.perf_counter() - start
    return outcome


CHILD = """
import json, sys, time
from gradviz.engine.runs.runfile import load_run
start = time.perf_counter()
try:
    load_run(sys.argv[1])
    outcome = "loaded"
except BaseException as exc:
    outcome = f"{type(exc).__name__}: {exc}"
print(json.dumps([outcome, time.perf_counter() - start]))
"""


def load_run_in_child(folder: Path) -> tuple[str, float]:
    """(outcome of load_run(folder) as "Type: message" or "loaded", seconds it took), in a
    child process limited to 2 GiB of memory that is killed after GUARD_S seconds."""
    def limit_memory():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))

    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(folder)], cwd=REPO,
                              capture_output=True, text=True, timeout=GUARD_S,
                              preexec_fn=limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"load_run({folder}) still running after {GUARD_S} s: it hangs")
    assert done.returncode == 0, done.stderr
    outcome, seconds = json.loads(done.stdout.splitlines()[-1])
    return outcome, seconds


# -- run folders ----------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path, make_history):
    folder = tmp_path / "run"
    save_run(folder, CONFIG, make_history(30, cell="lstm", L=2, D=2, T=20, H=8))
    return folder


SPECIAL = {
    "a FIFO": (lambda path: os.mkfifo(path), "a FIFO"),
    "a link to a FIFO": (lambda path: (os.mkfifo(path.with_name("fifo")),
                                       path.symlink_to(path.with_name("fifo"))), "a FIFO"),
    "a link to /dev/zero": (lambda path: path.symlink_to("/dev/zero"), "a character device"),
    "a link to /dev/urandom": (lambda path: path.symlink_to("/dev/urandom"),
                               "a character device"),
}


@pytest.mark.parametrize("kind", sorted(SPECIAL))
@pytest.mark.parametrize("name", ["run.json", "capture.npz"])
def test_a_run_file_that_is_not_a_regular_file_is_refused_at_once(saved, name, kind):
    make, what = SPECIAL[kind]
    (saved / name).unlink()
    make(saved / name)
    outcome, seconds = load_run_in_child(saved)
    assert outcome == f"RunFileError: {saved / name}: not a regular file ({what})"
    assert seconds < QUICK_S


def test_gradviz_run_config_on_a_fifo_says_so_in_one_line(saved, capsys):
    (saved / "run.json").unlink()
    os.mkfifo(saved / "run.json")
    done = within(GUARD_S, lambda: cli.main(["run", "--config", str(saved)]),
                  unblock=(saved / "run.json",))
    assert done.get("value") == cli.EXIT_USAGE, done
    err = capsys.readouterr().err
    assert err.splitlines() == [f"gradviz run: --config: {saved / 'run.json'}: not a regular "
                                "file (a FIFO)"]


def test_a_run_json_over_16_mb_is_refused_unread(saved):
    with open(saved / "run.json", "r+b") as f:
        f.truncate(16 * 2**20 + 1)                    # sparse: nothing to read but zeros
    with pytest.raises(RunFileError, match="run.json: 16777217 bytes, more than a run.json "
                                           "may have \\(16 MiB\\)"):
        load_run(saved)


def test_a_capture_npz_over_2_gib_is_refused_unread(saved):
    with open(saved / "capture.npz", "r+b") as f:
        f.truncate(2**31)
    with pytest.raises(RunFileError, match="capture.npz: 2147483648 bytes, more than a "
                                           "capture.npz may have \\(under 2 GiB\\)"):
        load_run(saved)


# -- capture.npz read header first ------------------------------------------------------
def members(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "capture.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def write_npz(folder: Path, arrays: dict[str, np.ndarray],
              declared: dict[str, tuple[str, tuple[int, ...]]] = (), extra=()) -> None:
    """capture.npz of ``arrays``, and for each ``declared`` name a member whose header
    says (dtype, shape) and whose data is that many zero bytes, written in chunks
    (compressed: a zip bomb), plus raw ``extra`` (name, bytes) members."""
    with zipfile.ZipFile(folder / "capture.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, arr, allow_pickle=False)
            zf.writestr(name + ".npy", buffer.getvalue())
        for name, (dtype, shape) in dict(declared).items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(
                    member, {"descr": dtype, "fortran_order": False, "shape": shape})
                left = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
                chunk = bytes(min(left, 2**24))
                while left > 0:
                    member.write(chunk[:left])
                    left -= len(chunk)
        for name, data in extra:
            zf.writestr(name, data)


# Every array of one row per capture (its first dimension K), as the format declares them.
ROWS = tuple(k for k, (_, dims) in {**ROW_SPEC, **ROW_OPTIONAL}.items() if dims[:1] == ("K",))


@pytest.mark.slow
def test_five_million_consistent_rows_are_refused_before_decompressing(tmp_path, make_history):
    """Hundreds of megabytes of rows declared in a file of about a megabyte: refused from
    the headers."""
    saved = tmp_path / "run"
    save_run(saved, CONFIG, make_history(30, cell="gru", T=2, H=2))
    arrays = members(saved)
    K = 5_000_000
    declared = {k: (arrays[k].dtype.str, (K, *arrays[k].shape[1:])) for k in ROWS if k in arrays}
    small = {k: v for k, v in arrays.items() if k not in ROWS and not k.startswith("latest_")}
    write_npz(saved, small, declared)
    assert (saved / "capture.npz").stat().st_size < 2**21
    outcome, seconds = load_run_in_child(saved)
    assert outcome.startswith(f"RunFileError: {saved / 'capture.npz'}: holds 5000000 rows; "
                              "a history of capacity 4096 keeps at most 4096 of this size")
    assert seconds < QUICK_S


@pytest.mark.parametrize("name,dtype,shape,expected", [
    ("loss", "<f8", (10**6, 10**6), "'loss' has shape \\(1000000, 1000000\\); expected 1"),
    ("dh_norm_all", "<f4", (30, 2, 2, 10**6),
     "'dh_norm_all' .* its T dimension \\(timesteps\\) is 1000000, more than the 5000 "),
    ("latest_gates", "<f4", (2, 2, 4, 20, 10**7),
     "'latest_gates' .* its H dimension \\(hidden units\\) is 10000000, more than the 1024 "),
    ("events", "<U100000", (3,), None),       # an unknown name: ignored, never read
    ("latest_events", "<U100000", (3,), "'latest_events' holds strings of 100000 characters"),
    ("latest_events", "|O", (1,), "holds pickled \\(object\\) data"),
    ("count", "<c16", (30,), "'count' holds complex128 values; expected integers"),
])
def test_a_member_declared_beyond_the_format_is_refused_from_its_header(
        saved, name, dtype, shape, expected):
    arrays = members(saved)
    arrays.pop(name, None)
    # Only the header is written: a reader that trusts it allocates first, then finds no data.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False,
                                                  "shape": shape})
    write_npz(saved, arrays, extra=[(name + ".npy", header.getvalue() + b"\0" * 64)])
    done = within(GUARD_S, lambda: load_run(saved))
    if expected is None:
        assert "error" not in done, done
        return
    assert isinstance(done.get("error"), RunFileError), done
    assert str(saved / "capture.npz") in str(done["error"])
    assert done["seconds"] < QUICK_S
    with pytest.raises(RunFileError, match=expected):
        raise done["error"]


def test_members_gradviz_does_not_know_are_ignored(saved):
    arrays = members(saved)
    write_npz(saved, arrays, declared={"future_bomb": ("<f8", (2**11, 2**11))},
              extra=[("notes.txt", b"\xff\xfe not an array"), ("a/b.npy", b"junk")])
    config, history, _ = load_run(saved)
    assert len(history) == 30 and config == CONFIG


def test_a_zip_with_a_huge_directory_is_refused_before_parsing_it(saved):
    arrays = members(saved)
    write_npz(saved, arrays, extra=[(f"x{i:06d}", b"") for i in range(30_000)])
    with pytest.raises(RunFileError, match="its zip directory .* more than gradviz reads"):
        load_run(saved)


# -- degenerate shapes ----------------------------------------------------------------
def cut(arrays: dict[str, np.ndarray], axis_of: dict[str, int]) -> None:
    """Make one named dimension 0: ``axis_of`` maps array names to that dimension's axis."""
    for name, axis in axis_of.items():
        if name in arrays:
            arrays[name] = np.take(arrays[name], [], axis=axis)


DIMS = {"dh_norm_all": ("T", 3), "dh_norm": ("T", 1), "dc_norm_all": ("T", 3), "dc_norm": ("T", 1),
        "latest_dh_norm": ("T", 2), "latest_dc_norm": ("T", 2), "latest_gates": ("T", 3),
        "latest_sat_low": ("T", 3), "latest_sat_high": ("T", 3), "latest_probe_h": ("T", 2),
        "latest_probe_c": ("T", 2)}
DEGENERATE = {
    "T": {k: axis for k, (dim, axis) in DIMS.items()},
    "L": {k: 0 if k.startswith("latest_") else 1 for k in
          ("dh_norm_all", "dc_norm_all", "latest_dh_norm", "latest_dc_norm", "latest_gates",
           "latest_sat_low", "latest_sat_high", "latest_probe_h", "latest_probe_c",
           "latest_rho", "latest_sigma_max")},
    "H": {"latest_gates": 4, "latest_probe_h": 3, "latest_probe_c": 3},
    "G": {"gate_names": 0, "latest_gate_names": 0, "latest_gate_ranges": 0, "latest_gates": 2,
          "latest_sat_low": 2, "latest_sat_high": 2, "sat_low": 3, "sat_high": 3},
}


@pytest.mark.parametrize("dim", sorted(DEGENERATE))
def test_a_run_with_a_zero_dimension_is_refused(saved, dim):
    arrays = members(saved)
    cut(arrays, DEGENERATE[dim])
    if dim == "L":
        arrays["param_owner"][:] = -1        # owners of no layer: else refused for them
    write_npz(saved, arrays)
    if dim == "G":
        # A run of gradviz.trace with no gate marks has no gates: it opens, with none.
        assert load_run(saved)[1].gate_names == ()
        return
    with pytest.raises(RunFileError, match=f"its {dim} dimension .* is 0; a run has at least "
                                           "one"):
        load_run(saved)


# -- integers, encodings, schema, nesting ---------------------------------------------
def test_a_count_stored_as_uint64_is_read_safely(saved):
    arrays = members(saved)
    arrays["count"] = arrays["count"].astype(np.uint64)
    write_npz(saved, arrays)
    _, history, _ = load_run(saved)
    assert history.count.dtype == np.int64 and np.all(history.count == 1)
    arrays["count"][3] = np.iinfo(np.uint64).max          # -1 as an int64
    write_npz(saved, arrays)
    with pytest.raises(RunFileError, match="'count' holds values too large"):
        load_run(saved)


def test_counts_whose_sum_overflows_are_refused(saved):
    arrays = members(saved)
    arrays["count"][:2] = 2**62
    write_npz(saved, arrays)
    with pytest.raises(RunFileError, match="'count' adds up to more than"):
        load_run(saved)


def test_a_run_json_with_a_byte_order_mark_loads(saved):
    text = (saved / "run.json").read_text(encoding="utf-8")
    (saved / "run.json").write_text(text, encoding="utf-8-sig")
    assert load_run(saved)[0] == CONFIG


@pytest.mark.parametrize("version", [1.0, True, "1"])
def test_schema_version_must_be_the_integer_1(saved, version):
    doc = json.loads((saved / "run.json").read_text(encoding="utf-8"))
    doc["schema_version"] = version
    (saved / "run.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(RunFileError, match=f"schema_version {version!r} is not supported"):
        load_run(saved)


def deeply_nested(folder: Path) -> Path:
    path = folder / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    return path


def test_a_run_json_nested_too_deeply_is_a_run_file_error(tmp_path):
    path = deeply_nested(tmp_path)
    with pytest.raises(RunFileError, match="deep.json: nested too deeply"):
        load_run_config(path)


def test_gradviz_run_config_nested_too_deeply_is_one_line(tmp_path, capsys):
    path = deeply_nested(tmp_path)
    assert cli.main(["run", "--config", str(path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines() == [f"gradviz run: --config: {path}: nested too deeply (a gradviz "
                                "run.json is only a few levels deep)"]


def test_the_spectral_radius_of_huge_float64_weights_is_kept_finite(tmp_path):
    trainer = Trainer(RunConfig(task="adding", cell="rnn-tanh", seq_len=5, hidden=4,
                                batch_size=2, dtype="float64"))
    w = dict(trainer.net.recurrent_parameters())["weight_hh_l0"]
    with torch.no_grad():
        w.mul_(1e40)                       # beyond float32 (3.4e38), ordinary in float64
    expected = torch.linalg.eigvals(w.detach()).abs().max().item()
    cap = trainer.step()
    assert np.isfinite(cap.rho).all() and np.isfinite(cap.sigma_max).all()
    np.testing.assert_allclose(cap.rho[0, 0, 0], expected, rtol=1e-12)
    from gradviz.engine.runs.history import History
    history = History()
    history.append(cap)
    save_run(tmp_path / "run", trainer.config, history)
    np.testing.assert_allclose(load_run(tmp_path / "run")[1].latest.rho, cap.rho, rtol=0)


def test_a_save_failing_to_create_its_folder_leaves_none_behind(tmp_path, monkeypatch, make_history):
    """A full disk refuses a new folder as it refuses a file."""
    real = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path).name == "deeper" and Path(path).parent.exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    with pytest.raises(OSError, match="No space left"):
        save_run(tmp_path / "runs" / "new" / "deeper", CONFIG, make_history(3))
    assert list(tmp_path.iterdir()) == []


# -- text files -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(SPECIAL))
def test_a_text_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
    make, what = SPECIAL[kind]
    path = tmp_path / "text.txt"
    make(path)
    done = within(GUARD_S, lambda: load_text(path), unblock=(tmp_path / "fifo", path))
    assert isinstance(done.get("error"), TaskInputError), done
    assert str(done["error"]) == (f"The text file {path} is not a regular file ({what}); choose "
                                  "a plain UTF-8 text file.")
    assert done["seconds"] < QUICK_S


def test_gradviz_run_on_a_fifo_text_file_says_so_in_one_line(tmp_path, capsys):
    path = tmp_path / "text.txt"
    os.mkfifo(path)
    done = within(GUARD_S, lambda: cli.main(["run", "--task", "text", "--text-file", str(path),
                                             "--out", str(tmp_path / "out")]), unblock=(path,))
    assert done.get("value") == cli.EXIT_USAGE, done
    err = capsys.readouterr().err
    assert err.splitlines() == [f"gradviz run: --text-file: The text file {path} is not a "
                                "regular file (a FIFO); choose a plain UTF-8 text file."]
    assert not (tmp_path / "out").exists()


TEXT = "Le cœur a ses raisons que la raison ignore. 𝄞 " * 40


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-16-le", "utf-32", "utf-8-sig"])
def test_a_text_with_a_byte_order_mark_is_read_in_its_encoding(tmp_path, encoding):
    path = tmp_path / "text.txt"
    bom = {"utf-16-be": "\ufeff", "utf-16-le": "\ufeff"}.get(encoding, "")
    path.write_bytes((bom + TEXT).encode(encoding))
    assert load_text(path) == (TEXT, None)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-8"])
def test_a_text_read_in_part_ends_on_a_whole_character(tmp_path, encoding):
    """The cut falls inside 𝄞 (a surrogate pair in UTF-16, four bytes in UTF-8)."""
    path = tmp_path / "text.txt"
    data = TEXT.encode(encoding)
    path.write_bytes(data)
    clef = TEXT.index("𝄞")
    prefix = len(TEXT[:clef].encode(encoding)) + 2           # two bytes into the character
    text, note = load_text(path, max_bytes=prefix)
    assert text == TEXT[:clef].removeprefix("\ufeff")
    assert note.startswith("text.txt: read the first")


@pytest.mark.parametrize("at", [100, 10_000, 4_999_999])
def test_a_nul_byte_anywhere_in_what_is_read_makes_it_binary(tmp_path, at):
    path = tmp_path / "text.txt"
    data = bytearray(b"a" * 6_000_000)
    data[at] = 0
    path.write_bytes(bytes(data))
    with pytest.raises(TaskInputError, match="binary file"):
        load_text(path)


def test_a_nul_character_in_utf16_text_makes_it_binary(tmp_path):
    path = tmp_path / "text.txt"
    path.write_bytes(("text" * 1000 + "\0" + "more").encode("utf-16"))
    with pytest.raises(TaskInputError, match="binary file"):
        load_text(path)
