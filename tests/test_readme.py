"""The README's examples work as written: its Python blocks run unchanged, in order, in a
fresh folder (with the app's process replaced by a recorder), and its install line uses
sudo only where it is needed."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The README and the pages beside it, in reading order: their examples build on each other.
PAGES = ["README.md", "docs/guide.md", "docs/python.md", "docs/performance.md",
         "docs/limits.md", "docs/architecture.md", "docs/run-format.md",
         "docs/modern-cells.md"]
README = "\n".join((ROOT / page).read_text(encoding="utf-8") for page in PAGES)


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.S | re.M)


@pytest.mark.slow
def test_the_python_examples_run_unchanged(tmp_path, monkeypatch, capsys):
    started = []

    class Recorder:
        def __init__(self, args, **kwargs):
            started.append(args)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "Popen", Recorder)
    examples = blocks("python")
    assert len(examples) >= 4
    namespace: dict = {}
    for code in examples:
        exec(compile(code, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "(20, 1, 1, 50)" in printed and "[ 0 10 20 30 40]" in printed
    assert np.array_equal(namespace["run"].history.step, [0, 10, 20, 30, 40])
    assert (tmp_path / "runs" / "from-python" / "run.json").is_file()
    assert any((tmp_path / "runs" / "tensorboard" / "my-lstm").iterdir())
    assert len(started) == 2 and all(args[2] == "gradviz.api.showchild" for args in started)
    assert (tmp_path / "runs" / "my-cell" / "run.json").is_file()
    assert any((tmp_path / "runs" / "tensorboard" / "my-cell").iterdir())
    for args in started:                  # what show() made for an app that never started
        if "--remove" in args:
            shutil.rmtree(args[-1], ignore_errors=True)
        else:
            Path(args[4]).unlink(missing_ok=True)


def test_the_install_line_uses_sudo_only_when_not_root():
    line = next(line for line in blocks("bash")[0].splitlines() if line.startswith("SUDO="))
    assert "--index-url https://download.pytorch.org/whl/cpu" in blocks("bash")[0]
    assignment = line.split(";")[0]
    sudo = subprocess.run(["bash", "-c", f"{assignment}; printf %s \"$SUDO\""],
                          capture_output=True, text=True, check=True).stdout
    if os.getuid() == 0:
        assert sudo == ""
    else:
        assert sudo == (subprocess.run(["bash", "-c", "command -v sudo"], capture_output=True,
                                       text=True).stdout.strip())


def test_every_page_with_python_examples_is_run():
    # A new page under docs/ with a Python example joins PAGES, so that its example runs.
    pages = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "docs").glob("*.md"))
             if "```python" in p.read_text(encoding="utf-8")]
    assert set(pages) <= set(PAGES), set(pages) - set(PAGES)
