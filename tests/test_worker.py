"""The training process: its command loop (driven in-process with plain queues) and the
Qt handle that runs it in a real "spawn" child."""
from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time

import pytest

from gradviz.config import RunConfig
from gradviz.engine.training import messages as msg
from gradviz.engine.training.process import serve
from gradviz.ui.worker import TrainingWorker

import helpers
from helpers import kind, quit_and_drain

SMALL = RunConfig(task="adding", seq_len=12, cell="lstm", hidden=8, batch_size=8)


def run_serve(commands: list, config: RunConfig = SMALL) -> list:
    """Feed ``commands`` (then quit) to the loop in this process; return its messages."""
    cmd, res = queue.Queue(), queue.Queue()
    for command in commands:
        cmd.put(command)
    cmd.put(msg.Quit())
    serve(cmd, res, 7, config.to_dict())
    messages = []
    while not res.empty():
        messages.append(res.get())
    return messages


def of_kind(messages: list, name: str) -> list:
    return [m for m in messages if kind(m) == name]


def test_single_steps_send_one_full_capture_each_and_live_changes_apply_next_step():
    messages = run_serve([msg.Step(), msg.Step(),
                          msg.Live({"clip": "norm", "clip_threshold": 0.01}),
                          msg.Step()])
    assert all(m.run_id == 7 for m in messages)
    assert messages[0] == msg.Ready(run_id=7, language=False)
    data = of_kind(messages, "data")
    assert [m.step for m in data] == [1, 2, 3]
    captures = [m.captures for m in data]
    assert all(len(c) == 1 and not c[0].is_light for c in captures)
    assert [c[0].step for c in captures] == [0, 1, 2]
    before, after = captures[1][0], captures[2][0]
    assert before.clip == "none" and after.clip == "norm"
    assert after.grad_norm > 0.01  # otherwise the check below would prove nothing
    assert after.grad_norm_clipped <= 0.01 * (1 + 1e-6)
    assert not of_kind(messages, "error")


def test_running_loop_batches_captures_light_but_the_newest(monkeypatch):
    from gradviz.engine.training import train

    asked_full: list = []
    original = train.Trainer.step
    monkeypatch.setattr(train.Trainer, "step",
                        lambda self, full=True: (asked_full.append(full), original(self, full))[1])
    cmd, res = queue.Queue(), queue.Queue()
    thread = threading.Thread(target=serve, args=(cmd, res, 1, SMALL.to_dict()))
    thread.start()
    cmd.put(msg.Start())
    messages, deadline = [], time.monotonic() + 20
    while len(of_kind(messages, "data")) < 5 and time.monotonic() < deadline:
        messages.append(res.get(timeout=20))
    cmd.put(msg.Pause())
    messages += quit_and_drain(cmd, res, thread, 10)
    states = [m.state for m in of_kind(messages, "state")]
    assert states[:2] == ["paused", "running"] and states[-1] == "paused"
    data = of_kind(messages, "data")
    batches = [m.captures for m in data if m.captures]
    assert sum(len(b) for b in batches) > len(batches), "captures were never batched"
    for batch in batches[:-1]:  # the last one comes from the pause, whenever that came
        assert all(c.is_light for c in batch[:-1]) and not batch[-1].is_light
    assert all(c.is_light for c in batches[-1][:-1])
    steps = [c.step for b in batches for c in b]
    assert steps == list(range(len(steps))), "a capture was lost or repeated"
    assert data[-1].step == len(steps)
    assert any(m.steps_per_s > 0 for m in data)
    # The per-unit arrays were computed only for steps expected to end a message (a step
    # quicker than expected leaves the next one to do it).
    assert sum(asked_full) <= 2 * len(batches) + 1
    assert sum(asked_full) < len(asked_full) / 2


def test_capture_every_sends_only_captured_steps():
    messages = run_serve([msg.Step()] * 5, SMALL.replace(capture_every=2))
    data = of_kind(messages, "data")
    assert [m.step for m in data] == [1, 2, 3, 4, 5]
    assert [c.step for m in data for c in m.captures] == [0, 2, 4]


def test_an_exception_is_reported_and_a_reset_recovers(monkeypatch):
    from gradviz.engine.training import train

    def broken_step(self, full=True):
        raise RuntimeError("engine exploded")

    monkeypatch.setattr(train.Trainer, "step", broken_step)
    cmd, res = queue.Queue(), queue.Queue()
    cmd.put(msg.Step())
    cmd.put(msg.Step())  # ignored: no model until a reset
    thread = threading.Thread(target=serve, args=(cmd, res, 1, SMALL.to_dict()))
    thread.start()
    messages = [res.get(timeout=20) for _ in range(4)]
    assert [kind(m) for m in messages] == ["ready", "state", "error", "state"]
    error = messages[2]
    assert error.message == "RuntimeError: engine exploded"
    assert "broken_step" in error.traceback
    assert messages[3].state == "error"
    monkeypatch.undo()
    cmd.put(msg.Reset(2, SMALL.to_dict()))
    cmd.put(msg.Step())
    rest = quit_and_drain(cmd, res, thread, 20)
    assert [kind(m) for m in rest] == ["ready", "state", "data"]
    assert all(m.run_id == 2 for m in rest)
    assert rest[2].captures[0].step == 0


def test_a_bad_setting_is_a_plain_message_without_traceback(tmp_path):
    missing = tmp_path / "missing.txt"
    messages = run_serve([msg.Step()], RunConfig(task="text", text_file=str(missing),
                                                seq_len=10, hidden=8, batch_size=4))
    errors = of_kind(messages, "error")
    assert len(errors) == 1
    assert "missing.txt" in errors[0].message
    assert errors[0].traceback == ""
    assert not of_kind(messages, "data")


def test_language_task_sends_generated_text():
    messages = run_serve([msg.Step()], RunConfig(task="reber", seq_len=20, cell="gru",
                                                hidden=8, batch_size=4))
    assert messages[0].language is True
    texts = of_kind(messages, "text")
    assert len(texts) == 1 and isinstance(texts[0].text, str) and texts[0].text


@pytest.mark.slow
def test_process_worker_trains_resets_and_closes_fast(qtbot):
    worker = TrainingWorker(SMALL)
    try:
        received: list = []
        worker.captures_ready.connect(received.extend)
        statuses: list = []
        worker.status.connect(statuses.append)
        with qtbot.waitSignal(worker.ready, timeout=30000) as ready:
            pass
        assert ready.args == [False]
        qtbot.waitUntil(lambda: worker.state == "paused", timeout=5000)
        worker.start()
        qtbot.waitUntil(lambda: len(received) >= 10, timeout=20000)
        assert worker.state == "running"
        assert statuses[-1]["step"] >= received[-1].step + 1
        assert [c.step for c in received] == list(range(len(received)))

        # Results of the old model still in the pipe must not reach the new one.
        worker.reset(SMALL.replace(hidden=4))
        received.clear()
        qtbot.waitUntil(lambda: worker.state == "paused", timeout=20000)
        worker.step()
        qtbot.waitUntil(lambda: len(received) >= 1, timeout=10000)
        qtbot.wait(200)
        assert [c.step for c in received] == [0]
        assert received[0].gates.shape[-1] == 4

        worker.start()
        qtbot.waitUntil(lambda: len(received) >= 5, timeout=10000)
    finally:
        started = time.monotonic()
        worker.close()
        elapsed = time.monotonic() - started
    assert elapsed < 1.0
    assert not worker.is_alive()
    assert worker.state == "stopped"


@pytest.mark.slow
def test_process_worker_reports_a_dead_child_and_a_reset_revives_it(qtbot):
    worker = TrainingWorker(SMALL)
    errors: list = []
    worker.error.connect(lambda message, details: errors.append(message))
    try:
        qtbot.waitUntil(lambda: worker.state == "paused", timeout=30000)
        os.kill(worker.pid, signal.SIGKILL)
        qtbot.waitUntil(lambda: worker.state == "stopped", timeout=5000)
        assert errors and "ended unexpectedly" in errors[0]

        # A reset brings a new process.
        received: list = []
        worker.captures_ready.connect(received.extend)
        worker.reset(SMALL)
        qtbot.waitUntil(lambda: worker.state == "paused", timeout=30000)
        assert worker.is_alive()
        worker.step()
        qtbot.waitUntil(lambda: len(received) == 1, timeout=10000)
        assert received[0].step == 0
    finally:
        worker.close()


def test_the_loop_ends_when_the_window_process_is_gone():
    cmd, res = queue.Queue(), queue.Queue()
    alive = [True]
    thread = threading.Thread(target=serve, args=(cmd, res, 1, SMALL.to_dict()),
                              kwargs={"parent_alive": lambda: alive[0]})
    thread.start()
    cmd.put(msg.Start())
    while not any(kind(m) == "data" and m.captures for m in [res.get(timeout=20)]):
        pass
    alive[0] = False  # no quit will ever come
    thread.join(3)
    assert not thread.is_alive()


def test_a_cell_without_its_compiled_loops_is_noticed_once_per_process(monkeypatch):
    from gradviz.engine import native
    monkeypatch.setattr(native, "_loaded", True)
    monkeypatch.setattr(native, "_kernels", None)
    monkeypatch.setattr(native, "_status", "no C compiler found (set CC or install gcc); "
                        "using PyTorch operations")
    messages = run_serve([msg.Step(), msg.Reset(8, SMALL.to_dict()), msg.Step()])
    notices = of_kind(messages, "notice")
    assert [m.text for m in notices] == [
        "no C compiler found (set CC or install gcc); using PyTorch operations, which is slower"]
    assert of_kind(messages, "data")        # and training goes on


def test_with_the_compiled_loops_there_is_no_notice():
    from gradviz.engine import native
    if native.kernels() is None:
        import pytest
        pytest.skip(native.status())
    assert not of_kind(run_serve([msg.Step()]), "notice")


@pytest.mark.slow
def test_the_training_process_imports_no_qt():
    """The process the window spawns trains without loading Qt (DESIGN.md, rule 1)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=helpers.modules_after_one_step, args=(SMALL.to_dict(), out))
    child.start()
    try:
        kinds, modules = out.get(timeout=60)
    finally:
        child.join(10)
    assert "data" in kinds and "error" not in kinds      # it did train
    assert "gradviz.engine.training.process" in modules and "torch" in modules
    assert not [name for name in modules if name.startswith(("PyQt6", "pyqtgraph"))]


@pytest.mark.slow
def test_a_stopped_training_process_is_noticed_and_reset_replaces_it(qtbot):
    worker = TrainingWorker(SMALL)
    changes: list = []
    worker.responding_changed.connect(changes.append)
    try:
        qtbot.waitUntil(lambda: worker.state == "paused", timeout=30000)
        assert worker.responding
        stopped = worker.pid
        os.kill(stopped, signal.SIGSTOP)           # hung, as far as the window can tell
        qtbot.waitUntil(lambda: not worker.responding, timeout=10000)
        assert changes == [False] and worker.is_alive() and worker.state == "paused"
        worker.reset(SMALL)                         # ends it, and starts a fresh one
        assert worker.pid != stopped
        qtbot.waitUntil(lambda: worker.state == "paused" and worker.responding, timeout=30000)
        received: list = []
        worker.captures_ready.connect(received.extend)
        worker.step()
        qtbot.waitUntil(lambda: len(received) == 1, timeout=10000)
        assert changes == [False, True]
    finally:
        worker.close()
    with pytest.raises(ProcessLookupError):
        os.kill(stopped, 0)   # not left behind, stopped


@pytest.mark.slow
def test_training_waits_while_the_window_leaves_its_reports_unread():
    import types

    from gradviz.engine.training.process import MAX_UNREAD

    cmd, res = queue.Queue(), queue.Queue()
    window_read = types.SimpleNamespace(value=0)
    thread = threading.Thread(target=serve, args=(cmd, res, 1, SMALL.to_dict()),
                              kwargs={"window_read": window_read})
    thread.start()

    def data_waiting() -> list:
        return [m for m in list(res.queue) if kind(m) == "data"]

    try:
        cmd.put(msg.Start())
        deadline = time.monotonic() + 30
        while msg.State(1, "running") not in list(res.queue) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)    # a stalled window: ~60 reports' worth of training at full speed
        assert len(data_waiting()) == MAX_UNREAD
        steps = data_waiting()[-1].step
        time.sleep(0.3)
        assert len(data_waiting()) == MAX_UNREAD       # nothing more trained or queued
        window_read.value = MAX_UNREAD                 # the window catches up
        deadline = time.monotonic() + 10
        while len(data_waiting()) < MAX_UNREAD + 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert data_waiting()[-1].step > steps          # and training goes on
    finally:
        quit_and_drain(cmd, res, thread, 10)
