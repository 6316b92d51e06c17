"""Saves whole and exclusive (gradviz/engine/runs/runsave.py, gradviz/clisignals.py): a run
folder changes from one complete run to the next as a unit, even when the saving process is
killed between two renames; a second writer is refused in one line; leftovers of killed
saves are removed; SIGTERM on ``gradviz run`` saves what was done; a TensorBoard that cannot
be written is one line and the run is saved regardless."""
import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gradviz import cli
from gradviz.config import RunConfig
from gradviz.engine.runs.runfile import RunFileError, open_run, save_run
from gradviz.engine.runs.runsave import JOURNAL, RunFolderBusy, folder_lock
from gradviz.engine.training.session import Session

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--task", "adding", "--cell", "gru", "--hidden", "3", "--seq-len", "5",
        "--batch-size", "2"]


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}


def run_cli(*args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli.main(["run", "--quiet", *TINY, *args])
    return status, err.getvalue()


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))


# -- a kill between two renames ---------------------------------------------------------
KILLED_SAVE = textwrap.dedent("""
    import os, sys
    from gradviz.config import RunConfig
    from gradviz.engine.training.session import Session
    folder, kill_at = sys.argv[1], int(sys.argv[2])
    session = Session(RunConfig(task="adding", cell="gru", hidden=3, seq_len=5, batch_size=2))
    session.run(30)
    session.save(folder)                       # the run at step 30, whole
    session.run(1)
    calls = [0]
    real = os.replace
    def dying(a, b):
        calls[0] += 1
        if calls[0] == kill_at:                # killed: nothing after this runs
            os._exit(9)
        real(a, b)
    os.replace = dying
    session.save(folder)                       # the run at step 31
    os._exit(0)
""")


@pytest.mark.parametrize("kill_at", [
    2,                                                    # after state.npz's rename
    pytest.param(1, marks=pytest.mark.slow),              # before the journal is in place
    pytest.param(3, marks=pytest.mark.slow),              # after capture.npz's
    pytest.param(4, marks=pytest.mark.slow),              # before run.json's
])
def test_a_kill_between_renames_leaves_one_whole_run(tmp_path, kill_at):
    """Before: run.json at step 30, state.npz at 31, and it resumed silently with a gap."""
    folder = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(folder), str(kill_at)],
                          env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 9, done.stderr
    run = open_run(folder)                   # finishes the killed save or drops it
    steps = run.summary["steps_done"]
    assert steps == (30 if kill_at == 1 else 31)
    assert leftovers(folder) == []           # no journal, no temporary file
    resumed = Session.resume(folder)
    assert resumed.steps_done == steps
    assert int(resumed.history.step[-1]) == steps - 1 and len(resumed.history) == steps
    resumed.run(2)
    assert resumed.history.step.tolist() == list(range(steps + 2))     # no gap


def test_files_of_two_saves_side_by_side_are_refused_on_opening(tmp_path):
    session = Session(RunConfig(task="adding", cell="gru", hidden=3, seq_len=5, batch_size=2))
    session.run(3)
    session.save(tmp_path / "a")
    session.run(1)
    session.save(tmp_path / "b")
    (tmp_path / "a" / "capture.npz").write_bytes((tmp_path / "b" / "capture.npz").read_bytes())
    with pytest.raises(RunFileError, match="capture.npz: from another save"):
        open_run(tmp_path / "a")
    (tmp_path / "b" / "state.npz").write_bytes((tmp_path / "a" / "state.npz").read_bytes())
    with pytest.raises(RunFileError, match="state.npz: from another save"):
        Session.resume(tmp_path / "b")


def test_a_run_folder_of_the_format_before_generations_still_opens_and_resumes(tmp_path):
    session = Session(RunConfig(task="adding", cell="gru", hidden=3, seq_len=5, batch_size=2))
    session.run(3)
    session.save(tmp_path)
    doc = json.loads((tmp_path / "run.json").read_text())
    del doc["generation"]
    (tmp_path / "run.json").write_text(json.dumps(doc))
    for name in ("capture.npz", "state.npz"):
        arrays = dict(np.load(tmp_path / name))
        del arrays["generation"]
        np.savez_compressed(tmp_path / name, **arrays)
    assert open_run(tmp_path).summary["steps_done"] == 3
    assert Session.resume(tmp_path).run(2) == 2


# -- one writer at a time -------------------------------------------------------------
HOLD = ("import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n")


@contextlib.contextmanager
def held_by_another_process(folder):
    folder.mkdir(parents=True, exist_ok=True)
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        yield
    finally:
        other.kill()
        other.wait()


@pytest.mark.slow
def test_a_second_writer_of_the_same_out_is_refused_in_one_line(tmp_path):
    """Before: two processes writing one --out mixed their files, and both exited 0."""
    out = tmp_path / "run"
    with held_by_another_process(out):
        status, err = run_cli("--steps", "3", "--out", str(out))
        assert status == 2 and len(err.strip().splitlines()) == 1, err
        assert "--out" in err and "another gradviz process is writing" in err
        assert list(out.iterdir()) == []
        history = Session(RunConfig(task="adding", cell="gru", hidden=3, seq_len=5,
                                    batch_size=2)).history
        started = time.monotonic()
        with pytest.raises(RunFolderBusy, match="another gradviz process"):
            save_run(out, RunConfig(), history)
        assert time.monotonic() - started >= 1.5                # it waited for it first
    status, err = run_cli("--steps", "3", "--out", str(out))   # the lock went with it
    assert status == 0, err


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with folder_lock(tmp_path), folder_lock(tmp_path):
        session = Session(RunConfig(task="adding", cell="gru", hidden=3, seq_len=5,
                                    batch_size=2))
        session.run(2)
        session.save(tmp_path)
    assert open_run(tmp_path).summary["steps_done"] == 2


# -- leftovers ------------------------------------------------------------------------
def test_leftovers_of_a_killed_save_are_removed_by_the_next_open_or_save(tmp_path):
    """Before: the hidden temporary files of killed saves (~33 MB each) stayed for ever."""
    session = Session(RunConfig(task="adding", cell="gru", hidden=3, seq_len=5, batch_size=2))
    session.run(2)
    session.save(tmp_path)
    junk = [".capture.npz.k1l2e3d4.tmp", ".state.npz.abcd_123.tmp", ".run.json.zz9.tmp"]
    mine = tmp_path / ".my-notes.txt"
    mine.write_text("not gradviz's")
    for name in junk:
        (tmp_path / name).write_bytes(b"\0" * 100_000)
    open_run(tmp_path)
    assert leftovers(tmp_path) == [".my-notes.txt"]
    for name in junk:
        (tmp_path / name).write_bytes(b"\0" * 100)
    with held_by_another_process(tmp_path):       # a writer's temporary files are its own
        open_run(tmp_path)
        assert len(leftovers(tmp_path)) == 4
    session.save(tmp_path)
    assert leftovers(tmp_path) == [".my-notes.txt"]


def test_a_journal_that_is_damaged_is_dropped(tmp_path):
    session = Session(RunConfig(task="adding", cell="gru", hidden=3, seq_len=5, batch_size=2))
    session.run(2)
    session.save(tmp_path)
    (tmp_path / JOURNAL).write_text('{"rename": [["../../etc/passwd", "run.json"]]}')
    assert open_run(tmp_path).summary["steps_done"] == 2
    assert not (tmp_path / JOURNAL).exists()


# -- SIGTERM ------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_on_gradviz_run_saves_what_was_done(tmp_path):
    """Before: SIGTERM saved nothing and left an empty --out."""
    out = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-m", "gradviz", "run", "--quiet", *TINY,
                              "--steps", "1000000", "--out", str(out)], env=env(),
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not out.exists() and time.monotonic() < deadline:   # made just before training
        time.sleep(0.1)
    time.sleep(1.0)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "terminated (SIGTERM) after" in err and "saved what was done" in err
    run = open_run(out)
    assert run.summary["interrupted"] is True and run.summary["steps_done"] > 0
    assert Session.resume(out).steps_done == run.summary["steps_done"]


# -- TensorBoard --------------------------------------------------------------------------
def test_a_full_disk_under_tensorboard_is_one_line_and_the_run_is_saved(tmp_path, monkeypatch):
    """Before: two OSError tracebacks, exit 1, and the run not saved."""
    pytest.importorskip("tensorboard")
    from tensorboard.summary.writer import record_writer

    real, calls = record_writer.RecordWriter.write, [0]

    def full(self, data):
        calls[0] += 1
        if calls[0] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, data)

    monkeypatch.setattr(record_writer.RecordWriter, "write", full)
    status, err = run_cli("--steps", "20", "--out", str(tmp_path / "run"),
                          "--tensorboard", str(tmp_path / "board"))
    assert status == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "--tensorboard" in err and os.strerror(errno.ENOSPC) in err
    assert open_run(tmp_path / "run").summary["steps_done"] == 20
