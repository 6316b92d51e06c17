"""The guided experiments: every file loads and trains, a wrong file is named with its field,
and the fast lessons (vanishing, clipped, forget bias, embedded Reber) hold on captured
numbers. The slower lessons (an LSTM, an IRNN or a GRU learning to remember, min-char-rnn,
stateless against stateful) are checked by benchmarks/experiments.py."""
import dataclasses
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gradviz.config import RunConfig
from gradviz.engine.training.session import Session
from gradviz.experiments import (LAST, THEMES, Experiment, ExperimentError, experiment_names,
                                 list_experiments, load_experiment, read_experiment)
from gradviz.experiments.lessons import CHECKS, check_lesson

ROOT = Path(__file__).resolve().parent.parent
NAMES = experiment_names()


@pytest.fixture(autouse=True)
def one_thread():
    """The lessons are tuned for one torch thread, as the app trains models this small."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_required_experiments_are_there_and_each_has_a_lesson_check():
    assert {"vanishing-tanh", "exploding-relu", "clipped-relu", "lstm-remembers",
            "forget-bias", "irnn-adding", "copy-gru", "min-char-rnn", "stateful-series",
            "reber-lstm"} <= set(NAMES)
    assert set(CHECKS) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_experiment_file_loads_and_validates(name):
    exp = load_experiment(name)
    assert isinstance(exp, Experiment) and exp.name == name
    assert isinstance(exp.config, RunConfig)
    assert exp.config == RunConfig.from_dict(exp.config.to_dict())
    for text in (exp.title, exp.theme, exp.watch, exp.expected, exp.source):
        assert text.strip()
    # The watch paragraph says how long to wait, in seconds.
    assert re.search(r"\d+ seconds?\b", exp.watch), exp.watch
    assert (exp.then_label is None) == (exp.then_config is None)
    if exp.then_config is not None:
        assert exp.then_config != exp.config


def test_the_menu_goes_as_a_lecture_does():
    listed = list_experiments()
    assert [e.name for e in listed] != [] and sorted(e.name for e in listed) == NAMES
    # Every experiment of the package has its place and a theme of the lecture's.
    assert all(e.order < LAST and e.theme in THEMES for e in listed)
    assert [e.order for e in listed] == sorted(e.order for e in listed)
    themes = [e.theme for e in listed]
    runs = [t for i, t in enumerate(themes) if i == 0 or t != themes[i - 1]]
    assert len(runs) == len(set(runs)), f"a theme comes twice: {runs}"   # each together
    assert runs == [t for t in THEMES if t in runs]                      # in lecture order
    assert runs[:3] == ["Vanishing and exploding gradients", "Gradient clipping",
                        "Gated memory"] and runs[-1] == "Training practice"
    names = [e.name for e in listed]
    assert names[0] == "vanishing-tanh"
    assert names.index("vanishing-tanh") < names.index("exploding-relu") < names.index("clipped-relu")


def test_an_experiment_without_an_order_comes_after_the_numbered_ones(tmp_path):
    data = _good("demo")
    data.pop("order", None)
    assert read_experiment(_write(tmp_path, "demo", data)).order == LAST


def test_then_configs_change_what_the_lesson_is_about():
    assert load_experiment("forget-bias").then_config.forget_bias == 0.0
    exploding = load_experiment("exploding-relu")
    clipped = load_experiment("clipped-relu")
    # "Now clip it" is the clipped experiment itself: same seed, data and model.
    assert exploding.then_config == clipped.config
    assert exploding.config.replace(clip="norm", clip_threshold=1.0) == clipped.config
    # Pascanu et al.'s point: a learning rate that blows the unclipped run up.
    assert (exploding.config.optimizer, exploding.config.clip) == ("sgd", "none")


@pytest.mark.parametrize("name", NAMES)
def test_every_experiment_trains_headless_for_a_few_steps(name):
    exp = load_experiment(name)
    for config in filter(None, (exp.config, exp.then_config)):
        session = Session(config)
        assert session.run(3) == 3
        assert len(session.history) == 3
        finite = np.isfinite(session.history.loss)
        # The exploding run's lesson is that it does not stay finite past step 0.
        assert finite[0] and (finite.all() or (name, config) == ("exploding-relu", exp.config))


def test_the_experiments_follow_their_sources():
    adding = load_experiment("lstm-remembers").config
    assert (adding.task, adding.cell) == ("adding-1997", "lstm")
    # min-char-rnn as the course notes walk through it.
    char = load_experiment("min-char-rnn").config
    assert (char.task, char.text_file, char.cell, char.hidden, char.seq_len) == \
        ("text", None, "rnn-tanh", 100, 25)
    assert (char.optimizer, char.lr, char.clip, char.clip_threshold, char.stateful) == \
        ("adagrad", 0.1, "value", 5.0, True)
    # The Keras notes' windowed series: time_step 30, batch 60; then stateful.
    series = load_experiment("stateful-series")
    assert (series.config.task, series.config.seq_len, series.config.batch_size) == \
        ("series", 30, 60)
    assert not series.config.stateful and series.then_config == \
        series.config.replace(stateful=True)
    assert load_experiment("reber-lstm").config.task == "reber"


def test_the_tasks_with_a_lesson_metric_capture_it():
    for name in ("lstm-remembers", "reber-lstm"):
        session = Session(load_experiment(name).config)
        session.run(3)
        assert session.history.metric_name
        assert np.all((session.history.metric >= 0) & (session.history.metric <= 1))
    plain = Session(load_experiment("vanishing-tanh").config)
    plain.run(1)
    assert plain.history.metric_name == "" and math.isnan(plain.history.metric[0])


def test_unknown_experiment_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown experiment 'nope'.*vanishing-tanh"):
        load_experiment("nope")


def _write(tmp_path, name, data) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _good(name="demo"):
    data = json.loads((ROOT / "gradviz" / "experiments" / "forget-bias.json").read_text())
    data["name"] = name
    return data


def test_a_good_file_read_from_anywhere(tmp_path):
    exp = read_experiment(_write(tmp_path, "demo", _good()))
    assert exp.name == "demo" and exp.then_config.forget_bias == 0.0
    assert exp.order == 50 and exp.then_watch.startswith("Now the forget-gate bias is 0")


def test_every_second_configuration_says_what_to_watch_in_it():
    for exp in list_experiments():
        if exp.then_config is not None:
            assert exp.then_watch and exp.then_watch != exp.watch, exp.name
            assert re.search(r"\d+ seconds?\b", exp.then_watch), exp.then_watch


@pytest.mark.parametrize("change, field, message", [
    (lambda d: d["config"].update(lr="fast"), "config.lr", "finite number"),
    (lambda d: d["config"].update(cell="transformer"), "config.cell", "unknown value"),
    (lambda d: d["config"].update(colour="red"), "config.colour", "unknown setting"),
    (lambda d: d.update(config=[1, 2]), "config", "JSON object"),
    (lambda d: d.pop("config"), "config", "missing"),
    (lambda d: d["then"]["config"].update(forget_bias=99.0), "then.config.forget_bias",
     "out of range"),
    (lambda d: d["then"].pop("label"), "then", "label"),
    (lambda d: d["then"].update(label=""), "then.label", "non-empty string"),
    (lambda d: d.update(title=""), "title", "non-empty string"),
    (lambda d: d.pop("watch"), "watch", "non-empty string"),
    (lambda d: d.update(name="other"), "name", "the file's name"),
    (lambda d: d.update(colour="red"), "colour", "unknown field"),
    (lambda d: d.update(order="first"), "order", "whole number"),
    (lambda d: d.update(order=-1), "order", "whole number"),
    (lambda d: d["then"].update(watch=""), "then.watch", "non-empty string"),
    (lambda d: d["then"].update(colour="red"), "then", "label"),
])
def test_a_broken_file_is_named_with_its_field(tmp_path, change, field, message):
    data = _good()
    change(data)
    path = _write(tmp_path, "demo", data)
    with pytest.raises(ExperimentError, match=message) as caught:
        read_experiment(path)
    assert caught.value.field == field
    assert caught.value.file == str(path)
    assert str(caught.value).startswith(f"{path}: {field}: ")
    assert isinstance(caught.value, ValueError)


def test_a_file_that_is_not_json_is_named(tmp_path):
    path = _write(tmp_path, "demo", '{"name": "demo",')
    with pytest.raises(ExperimentError, match="not valid JSON") as caught:
        read_experiment(path)
    assert caught.value.file == str(path) and str(path) in str(caught.value)


# Each trains hundreds to thousands of steps: slow. The rest are checked by
# benchmarks/experiments.py.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["vanishing-tanh", "exploding-relu", "clipped-relu",
                                  "forget-bias", "reber-lstm", "loss-enters", "min-char-rnn"])
def test_fast_lessons_hold_on_the_captured_numbers(name):
    outcome = check_lesson(load_experiment(name))
    assert outcome.held, outcome.line()
    assert outcome.line().startswith(f"{name}: held (")


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_where_the_loss_enters_holds_for_other_seeds(seed):
    exp = load_experiment("loss-enters")
    seeded = dataclasses.replace(exp, config=exp.config.replace(seed=seed),
                                 then_config=exp.then_config.replace(seed=seed))
    outcome = check_lesson(seeded)
    assert outcome.held, outcome.line()


def test_where_the_loss_enters_compares_a_last_step_loss_with_one_at_every_step():
    from gradviz.engine.tasks import make_task
    exp = load_experiment("loss-enters")
    first, then = make_task(exp.config), make_task(exp.then_config)
    T = exp.config.seq_len
    assert then.seq_len == first.seq_len == T
    assert range(T)[first.loss_positions] == range(T - 1, T)
    assert range(T)[then.loss_positions] == range(T)
    assert exp.then_config == exp.config.replace(task="reber")
    # Two last-step losses show no contrast: the lesson fails and says so.
    same = dataclasses.replace(exp, then_config=exp.config)
    outcome = check_lesson(same)
    assert not outcome.held and "with a loss at every step (needs within 1)" in outcome.line()


def test_a_lesson_that_does_not_hold_says_why():
    # Clipped from step 0, the ReLU RNN never diverges: the exploding lesson must fail.
    exp = load_experiment("exploding-relu")
    tamed = dataclasses.replace(exp, config=exp.then_config)
    outcome = check_lesson(tamed, steps=20)
    assert not outcome.held
    assert outcome.line().startswith("exploding-relu: failed (global norm ")
    assert outcome.line().endswith(f"first non-finite step none in 20 (needs one before step "
                                   f"10); {outcome.seconds:.1f} s)")


@pytest.mark.slow
def test_the_benchmark_prints_one_line_per_experiment_and_a_total():
    # Two quick experiments, in a fresh interpreter with this tree's gradviz first.
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "experiments.py"), "clipped-relu",
         "vanishing-tanh"], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split(":")[0] for line in lines[:2]] == ["clipped-relu", "vanishing-tanh"]
    assert all(": held (" in line for line in lines[:2])
    assert lines[2:] == ["2 held, 0 failed"]


def test_the_files_are_found_inside_a_zipped_package(tmp_path):
    # As in a wheel or a zip import: no folder to glob, only importlib.resources.
    import zipfile

    archive = tmp_path / "gradviz.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (ROOT / "gradviz").rglob("*"):
            if path.suffix in (".py", ".json"):
                zf.write(path, path.relative_to(ROOT).as_posix())
    code = ("import gradviz.experiments as e; assert '.zip' in e.__file__, e.__file__; "
            "print(' '.join(sorted(x.name for x in e.list_experiments())))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path,
                            env={"PYTHONPATH": str(archive), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == NAMES
