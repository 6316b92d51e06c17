"""``gradviz run``: one-line errors for bad arguments, real short runs, repeats, Ctrl+C."""
import io
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from gradviz import __version__, cli
from gradviz.config import RunConfig, settings
from gradviz import registry
from gradviz.engine.runs import runfile
from gradviz.engine.runs.runfile import load_run
from gradviz.engine.training.train import Trainer

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--steps", "5", "--hidden", "8", "--seq-len", "10", "--batch-size", "8"]


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line, got {text!r}"
    assert "Traceback" not in text
    return lines[0]


@pytest.fixture
def texts(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02abc" * 20)
    (tmp_path / "good.txt").write_text("the quick brown fox jumps over the lazy dog. " * 20)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "other.json").write_text(json.dumps({"schema": "something else"}))
    return tmp_path


BAD = [
    (["--seq-len", "0"], "--seq-len: 0 is out of range; allowed: 1 to 5000"),
    (["--seq-len", "abc"], "--seq-len: 'abc' is not a whole number; allowed: 1 to 5000"),
    (["--hidden", "2.5"], "--hidden: '2.5' is not a whole number"),
    (["--cell", "tree"], "--cell: unknown value 'tree'; allowed: rnn-tanh"),
    (["--lr", "-1"], "--lr: -1.0 is out of range"),
    (["--lr", "nan"], "--lr: must be a finite number"),
    (["--rho", "big"], "--rho: 'big' is not a number; allowed: 0.001 to 10 or 'none'"),
    (["--clip", "sometimes"], "--clip: unknown value 'sometimes'; allowed: none, value, norm"),
    (["--steps"], "--steps: expected one argument"),
    (["--colour", "red"], "unrecognized arguments: --colour red"),
    (["--ste", "5"], "unrecognized arguments: --ste"),
    (["--bidirectional=yes"], "--bidirectional/--no-bidirectional: ignored explicit argument"),
    (["--task", "text", "--text-file", "{tmp}/missing.txt"],
     "--text-file: The text file .* does not exist"),
    (["--task", "text", "--text-file", "{tmp}/empty.txt"],
     "--text-file: The text file .* is empty"),
    (["--task", "text", "--text-file", "{tmp}/binary.txt"],
     "--text-file: .* looks like a binary file"),
    (["--task", "text", "--text-file", "{tmp}"], "--text-file: .* is a folder"),
    (["--task", "copy", "--seq-len", "2"], "--seq-len: The copy task needs a sequence length"),
    (["--config", "{tmp}/nowhere"], "--config: .*nowhere: no such run folder"),
    (["--config", "{tmp}/other.json"], "--config: .*other.json: not a gradviz run"),
    (["--out", "{tmp}/afile"], "--out: cannot create the folder .*afile"),
    (["--seq-len", "5000", "--hidden", "1024", "--batch-size", "4096", "--layers", "4",
      "--bidirectional"], "this configuration needs about .* of memory; this machine has .* "
                          "available; lower the (batch size|sequence length)"),
    (["--out", ""], "--out: an empty folder name would write into the current folder"),
    (["--figures", " "], "--figures: an empty folder name"),
]


@pytest.mark.parametrize("args, expected", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_exit_2_with_one_line(texts, capsys, monkeypatch, args, expected):
    args = [a.replace("{tmp}", str(texts)) for a in args]
    monkeypatch.chdir(texts)
    before = sorted(texts.iterdir())
    assert cli.main(["run", *args]) == 2
    assert sorted(texts.iterdir()) == before, "a failed command left files behind"
    captured = capsys.readouterr()
    line = one_line(captured.err)
    assert line.startswith("gradviz run: ")
    assert re.search(expected, line), line
    assert captured.out == ""


def test_cuda_when_there_is_none_exits_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["run", "--device", "cuda", "--out", str(tmp_path)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "--device: cuda is not available" in line and "allowed here: cpu" in line


def test_the_installed_command_prints_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "gradviz.cli", "run", "--layers", "9"],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 2
    assert one_line(done.stderr) == "gradviz run: --layers: 9 is out of range; allowed: 1 to 4"
    version = subprocess.run([sys.executable, "-m", "gradviz.cli", "--version"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert version.returncode == 0 and version.stdout.strip() == f"gradviz {__version__}"


def test_help_lists_every_option(capsys):
    assert cli.main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for name in RunConfig.__dataclass_fields__:
        assert cli.option_name(name) in out
    assert cli.main(["--help"]) == 0 and "gradviz run" in capsys.readouterr().out


def help_sections(text: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``gradviz run --help`` read back: {flag: its entry, unwrapped} for every option, and
    {flag: the values listed under it} from the values section at the end."""
    options, values, flag = {}, {}, None
    head, _, tail = text.partition("\nvalues:\n")
    for line in head.splitlines():
        start = re.match(r"  (-{1,2}[\w-]+)", line)
        if start:
            flag = start.group(1)
            options[flag] = line.strip()
        elif flag and line.startswith("   "):
            options[flag] += " " + line.strip()
        else:
            flag = None
    for line in tail.splitlines():
        if re.match(r"  --", line):
            flag = line.strip()
            values[flag] = []
        elif re.match(r"    \S", line):
            values[flag].append(line.split()[0])
    return options, values


def test_help_offers_every_field_with_its_range_and_the_registered_choices(capsys):
    assert cli.main(["run", "--help"]) == 0
    options, values = help_sections(capsys.readouterr().out)
    flags = {cli.option_name(name) for name, _ in settings()}
    assert set(options) == flags | {"-h", "--out", "--config", "--figures", "--tensorboard",
                                    "--quiet", "--experiment", "--list-experiments", "--resume"}
    for name, s in settings():
        entry = options[cli.option_name(name)]
        assert s.help.split()[0] in entry, entry
        if name in registry.CHOICES:
            names = list(registry.CHOICES[name])
            assert entry.startswith(f"{cli.option_name(name)} {{{','.join(names)}}} "), entry
            assert entry.endswith(f"(default {s.default})")
            if any(c.help for c in registry.CHOICES[name].values()):
                assert values[cli.option_name(name)] == names
        elif s.limits is not None:
            default = "none" if s.default is None else s.default
            assert entry.endswith(f"({s.allowed}; default {default})"), entry
    assert set(values) <= {cli.option_name(name) for name in registry.CHOICES}
    assert {"--task", "--cell", "--optimizer", "--clip", "--init"} <= set(values)


def test_every_registered_value_is_taken_and_reaches_the_config(tmp_path):
    parser = cli.build_parser()
    for name, table in registry.CHOICES.items():
        for value in table:
            args = [cli.option_name(name), value]
            if name == "task" and registry.TASKS[value].needs_file:
                args += ["--text-file", str(tmp_path / "any.txt")]
            ns = parser.parse_args(args)
            given = {n: getattr(ns, n) for n, _ in settings() if hasattr(ns, n)}
            assert RunConfig().replace(**given).to_dict()[name] == value


def test_unknown_command_exits_2(capsys):
    assert cli.main(["train"]) == 2
    assert "unknown command 'train'" in one_line(capsys.readouterr().err)


def test_no_arguments_opens_the_app(monkeypatch):
    calls = []
    fake = types.ModuleType("gradviz.ui.app")
    fake.run_app = lambda experiment=None: calls.append(experiment or "app") or 0
    monkeypatch.setitem(sys.modules, "gradviz.ui.app", fake)
    assert cli.main([]) == 0 and cli.gui_main() == 0
    assert calls == ["app", "app"]
    assert cli.main(["--experiment", "vanishing-tanh"]) == 0
    assert cli.main(["--experiment=forget-bias"]) == 0
    assert calls[2:] == ["vanishing-tanh", "forget-bias"]


def test_the_app_on_an_unknown_experiment_says_which_there_are(capsys):
    assert cli.main(["--experiment", "no-such"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "no-such" in err and "vanishing-tanh" in err
    assert cli.main(["--experiment"]) == cli.EXIT_USAGE
    assert "one experiment's name" in capsys.readouterr().err


# -- real runs ------------------------------------------------------------------------
def test_a_short_run_writes_the_documented_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", *SMALL, "--layers", "2", "--bidirectional", "--seed", "3",
                     "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("done: 5 steps in ")
    assert f"saved to {out}" in err
    assert sorted(p.name for p in out.iterdir()) == ["capture.npz", "run.json", "state.npz"]
    doc = json.loads((out / "run.json").read_text())
    summary = doc["summary"]
    assert summary["steps_done"] == 5 and summary["captured_steps"] == 5
    assert summary["interrupted"] is False and summary["steps_per_second"] > 0
    assert np.isfinite(summary["final_loss"]) and summary["baseline"] > 0
    config = RunConfig.from_dict(doc["config"])
    assert (config.layers, config.bidirectional, config.hidden, config.seed) == (2, True, 8, 3)
    with np.load(out / "capture.npz", allow_pickle=False) as npz:
        K, T = 5, 10
        assert npz["step"].tolist() == [0, 1, 2, 3, 4]
        for name in ("loss", "grad_norm", "grad_norm_clipped"):
            assert npz[name].shape == (K,) and npz[name].dtype == np.float64
        assert npz["dh_norm"].shape == (K, T) and npz["dc_norm"].shape == (K, T)
        assert npz["dh_norm_all"].shape == (K, 2, 2, T)
        P = len(npz["param_names"])
        assert npz["param_grad_norm"].shape == (K, P)
        assert npz["latest_gates"].shape == (2, 2, 4, T, 8)
        assert float(npz["baseline"]) == summary["baseline"]
        assert npz["loss"][-1] == summary["final_loss"]
        assert np.all(npz["dh_norm"] > 0)
    _, history, _ = load_run(out)
    assert history.latest.step == 4


def test_a_run_says_which_code_ran_its_loops(tmp_path, capsys, monkeypatch):
    from gradviz.engine import native
    out = tmp_path / "compiled"
    assert cli.main(["run", *SMALL, "--out", str(out)]) == 0     # the default cell: lstm
    expected = "compiled" if native.kernels() is not None else "pytorch"
    assert load_run(out)[2]["loops"] == expected
    out = tmp_path / "peephole"
    assert cli.main(["run", *SMALL, "--cell", "lstm-peephole", "--out", str(out)]) == 0
    assert load_run(out)[2]["loops"] == expected
    assert "note:" not in capsys.readouterr().err or expected == "pytorch"
    monkeypatch.setattr(native, "_kernels", None)
    monkeypatch.setattr(native, "_status", "compiled loops off (GRADVIZ_NATIVE=0); "
                        "using PyTorch operations")
    out = tmp_path / "gru"
    assert cli.main(["run", *SMALL, "--cell", "gru", "--out", str(out)]) == 0
    assert load_run(out)[2]["loops"] == "pytorch"
    assert ("note: compiled loops off (GRADVIZ_NATIVE=0); using PyTorch operations, "
            "which is slower") in capsys.readouterr().err.splitlines()


def test_capture_every_and_a_gru(tmp_path, capsys):
    out = tmp_path / "gru"
    assert cli.main(["run", *SMALL, "--cell", "gru", "--capture-every", "2", "--quiet",
                     "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    _, history, summary = load_run(out)
    assert history.step.tolist() == [0, 2, 4] and history.dc_norm is None
    assert summary["steps_done"] == 5 and summary["captured_steps"] == 3


def test_repeating_a_run_with_config_gives_the_same_losses(tmp_path):
    first, again, shorter = tmp_path / "first", tmp_path / "again", tmp_path / "shorter"
    assert cli.main(["run", *SMALL, "--steps", "6", "--seed", "11", "--clip", "norm",
                     "--clip-threshold", "0.5", "--quiet", "--out", str(first)]) == 0
    assert cli.main(["run", "--config", str(first / "run.json"), "--quiet",
                     "--out", str(again)]) == 0
    config_a, history_a, _ = load_run(first)
    config_b, history_b, _ = load_run(again)
    assert config_a == config_b
    np.testing.assert_array_equal(history_b.loss, history_a.loss)  # bit for bit
    np.testing.assert_array_equal(history_b.dh_norm, history_a.dh_norm)
    assert cli.main(["run", "--config", str(first), "--steps", "3", "--quiet",
                     "--out", str(shorter)]) == 0
    config_c, history_c, _ = load_run(shorter)
    assert config_c == config_a.replace(steps=3)
    np.testing.assert_array_equal(history_c.loss, history_a.loss[:3])


def test_text_task_from_a_file(texts, monkeypatch):
    monkeypatch.chdir(texts)
    assert cli.main(["run", *SMALL, "--task", "text", "--text-file", "good.txt", "--quiet",
                     "--out", "textrun"]) == 0
    config, history, _ = load_run(texts / "textrun")
    assert config.text_file == str(texts / "good.txt") and len(history) == 5


def test_text_task_with_no_file_trains_on_pythons_source_and_says_so(tmp_path, capsys):
    assert cli.main(["run", *SMALL, "--task", "text", "--out", str(tmp_path / "run")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "Python's standard library source" in notes[0], notes
    config, history, _ = load_run(tmp_path / "run")
    assert config.text_file is None and len(history) == 5


def test_default_out_folder_is_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", *SMALL, "--steps", "1", "--quiet"]) == 0
    assert cli.main(["run", *SMALL, "--steps", "1", "--quiet"]) == 0
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all((f / "run.json").is_file() for f in folders)


def test_ctrl_c_saves_what_was_done(tmp_path, monkeypatch, capsys):
    real_step = Trainer.step

    def step(self, full=True):
        if self.step_index == 3:
            raise KeyboardInterrupt
        return real_step(self, full)

    monkeypatch.setattr(Trainer, "step", step)
    out = tmp_path / "stopped"
    assert cli.main(["run", *SMALL, "--out", str(out)]) == 130
    line = one_line(capsys.readouterr().err)
    assert "interrupted after 3 of 5 steps" in line and str(out) in line
    _, history, summary = load_run(out)
    assert history.step.tolist() == [0, 1, 2]
    assert summary["interrupted"] is True and summary["steps_done"] == 3


def test_progress_is_one_updating_line_on_a_terminal(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(["run", *SMALL, "--steps", "20", "--out", str(tmp_path / "p")]) == 0
    text = terminal.getvalue()
    updates = [part for part in text.split("\r") if part.startswith("step ")]
    assert updates and updates[-1].startswith("step 20/20  100%")
    assert "steps/s" in updates[-1] and "loss " in updates[-1] and "ETA 0:00" in updates[-1]
    # The line is erased before the summary, which ends the output on a line of its own.
    assert text.splitlines()[-1].lstrip("\r ").startswith("done: 20 steps")


def test_progress_is_throttled(monkeypatch):
    stream = io.StringIO()
    stream.isatty = lambda: True
    progress = cli.Progress(1000, stream)
    for done in range(1, 1000):
        progress.update(done, 0.5)
    assert stream.getvalue().count("\r") <= 1  # a fast loop redraws at most every 0.2 s
    progress.update(1000, 0.5)
    assert stream.getvalue().endswith("loss 0.5  ETA 0:00")


def test_a_failed_save_is_one_line(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runfile, "save_run", broken)
    assert cli.main(["run", *SMALL, "--quiet", "--out", str(tmp_path / "full")]) == 1
    assert "could not save the run" in one_line(capsys.readouterr().err)


def test_figures_are_written_by_the_figures_module(tmp_path, monkeypatch, capsys):
    written = []
    fake = types.ModuleType("gradviz.ui.figures")
    fake.write_figures = lambda folder, config, history: written.append(
        (Path(folder), config.steps, len(history)))
    monkeypatch.setitem(sys.modules, "gradviz.ui.figures", fake)
    figures = tmp_path / "figs"
    assert cli.main(["run", *SMALL, "--quiet", "--out", str(tmp_path / "r"),
                     "--figures", str(figures)]) == 0
    assert written == [(figures, 5, 5)]

    def broken(folder, config, history):
        raise RuntimeError("no fonts")

    fake.write_figures = broken
    assert cli.main(["run", *SMALL, "--quiet", "--out", str(tmp_path / "r2"),
                     "--figures", str(figures)]) == 1
    line = one_line(capsys.readouterr().err)
    assert "--figures: could not write figures" in line and "RuntimeError: no fonts" in line
    assert (tmp_path / "r2" / "run.json").is_file()

    from gradviz.ui.export import ExportError

    def full(folder, config, history):
        raise ExportError(f"Could not write {folder}/loss.png: disk full. Choose another folder.")

    fake.write_figures = full
    assert cli.main(["run", *SMALL, "--quiet", "--out", str(tmp_path / "r3"),
                     "--figures", str(figures)]) == 1
    assert one_line(capsys.readouterr().err) == (
        f"gradviz run: --figures: could not write figures to {figures}: Could not write "
        f"{figures}/loss.png: disk full. Choose another folder.")


def test_list_experiments_prints_name_then_title_one_a_line(capsys):
    from gradviz.experiments import list_experiments

    assert cli.main(["run", "--list-experiments"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{e.name}  {e.title}" for e in list_experiments()]
    assert len(lines) >= 7 and all(line.split()[0] for line in lines)


def test_an_experiment_runs_headless_with_its_own_settings(tmp_path, capsys):
    from gradviz.experiments import load_experiment

    out = tmp_path / "run"
    assert cli.main(["run", "--experiment", "vanishing-tanh", "--steps", "3", "--quiet",
                     "--out", str(out)]) == 0
    config, history, _summary = load_run(out)
    assert config == load_experiment("vanishing-tanh").config.replace(steps=3)
    assert len(history) == 3
    assert cli.main(["run", "--experiment", "nope"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err
