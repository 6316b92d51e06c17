"""The Session: one owner of a run, used by the CLI, the training process and notebooks."""
from __future__ import annotations

import numpy as np
import pytest

from gradviz.config import RunConfig
from gradviz.engine.runs.runfile import load_run
from gradviz.engine.training.session import Session
from gradviz.engine.training.train import Trainer

SMALL = RunConfig(task="adding", seq_len=10, cell="gru", hidden=6, batch_size=4, steps=7)


def test_run_trains_the_configured_steps_into_its_history_as_a_bare_trainer_would():
    captured = []
    session = Session(SMALL)
    assert session.run(on_capture=captured.append) == 7
    trainer = Trainer(SMALL)
    losses = [trainer.step().loss for _ in range(7)]
    assert [c.loss for c in captured] == losses            # same seed, same code path
    assert session.history.loss.tolist() == losses
    assert session.steps_done == 7 and session.counts.captured == 7
    summary = session.summary()
    assert summary["steps_done"] == 7 and summary["captured_steps"] == 7
    assert summary["final_loss"] == losses[-1] and summary["interrupted"] is False


def test_should_stop_is_asked_before_every_step_and_steps_is_an_iterator():
    session = Session(SMALL)
    assert session.run(100, should_stop=lambda: session.steps_done >= 3) == 3
    reports = list(session.steps(2, full=False))
    assert [r.step for r in reports] == [3, 4]
    assert all(r.capture is not None and r.capture.is_light for r in reports)
    assert session.history.step.tolist() == [0, 1, 2, 3, 4]


def test_capture_every_counts_only_captured_steps():
    session = Session(SMALL.replace(capture_every=3))
    reports = list(session.steps(7))
    assert [r.capture is not None for r in reports] == [True, False, False, True, False,
                                                        False, True]
    assert session.counts.captured == 3 and len(session.history) == 3
    assert session.summary()["steps_done"] == 7


def test_an_interrupt_keeps_what_was_done_and_marks_the_session(monkeypatch):
    session = Session(SMALL)
    real = session.trainer.step

    def step(full=True):
        if session.trainer.step_index == 2:
            raise KeyboardInterrupt
        return real(full)

    monkeypatch.setattr(session.trainer, "step", step)
    with pytest.raises(KeyboardInterrupt):
        session.run()
    assert session.interrupted and session.summary()["steps_done"] == 2
    assert len(session.history) == 2


def test_save_writes_a_run_that_loads_with_its_summary(tmp_path):
    session = Session(SMALL)
    session.run(4)
    session.save(tmp_path / "run", note="x")
    config, history, summary = load_run(tmp_path / "run")
    assert config == SMALL
    assert np.array_equal(history.loss, session.history.loss)
    assert summary["steps_done"] == 4 and summary["note"] == "x"


def test_a_session_without_history_trains_and_refuses_to_save(tmp_path):
    session = Session(SMALL, history=False)
    assert session.step().capture is not None and session.history is None
    with pytest.raises(ValueError, match="no history"):
        session.save(tmp_path / "run")


def test_small_models_train_on_one_thread_and_large_products_on_every_core(tmp_path,
                                                                          monkeypatch):
    import os

    import torch

    from gradviz import cli
    from gradviz.engine.training.train import threads_for

    assert threads_for(RunConfig()) == 1
    assert threads_for(RunConfig(cell="rnn-tanh", hidden=128, batch_size=32)) == 1
    assert threads_for(RunConfig(hidden=512, batch_size=1024)) == max(1, os.cpu_count() or 1)
    asked = []
    monkeypatch.setattr(torch, "set_num_threads", asked.append)
    assert cli.main(["run", "--steps", "1", "--seq-len", "5", "--hidden", "4", "--quiet",
                     "--out", str(tmp_path / "run")]) == 0
    assert asked == [1]
