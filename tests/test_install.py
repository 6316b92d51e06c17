"""A real install: build a wheel of this checkout, install it into a fresh virtual
environment (reusing this interpreter's torch, numpy and Qt, so nothing is downloaded),
and use it from a folder outside the checkout: the experiments and the icon are found,
``python -m gradviz run`` trains and saves, the ``gradviz`` command is there."""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SKIP_ANYWHERE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                       "__pycache__", ".pytest_cache", "*.whl")


def SKIP(folder, names):
    """What the copy leaves out: build and cache folders anywhere, and the user's runs/ at the
    top (gradviz/engine/runs/ is the package's own)."""
    skipped = set(_SKIP_ANYWHERE(folder, names))
    if Path(folder).resolve() == ROOT and "runs" in names:
        skipped.add("runs")
    return skipped

CHECK = """
import os, sys
import gradviz
from gradviz.experiments import list_experiments
from gradviz.resources import icon_bytes
from PyQt6 import QtWidgets
from gradviz.ui.app import app_icon

assert os.path.realpath(gradviz.__file__).startswith(os.path.realpath(sys.prefix)), gradviz.__file__
names = sorted(e.name for e in list_experiments())
app = QtWidgets.QApplication([])
assert not app_icon().isNull() and icon_bytes().lstrip().startswith(b"<")
print(gradviz.__version__, ",".join(names))
"""


def run(args, **kwargs):
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_a_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    pytest.importorskip("setuptools", minversion="70.1")
    # A copy, so that building leaves no build/ or egg-info behind in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=SKIP)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(tmp_path / "dist"), str(source)])
    wheel, = (tmp_path / "dist").glob("gradviz_rnn-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
                .strip())
    # This interpreter's packages (torch, numpy, PyQt6, pyqtgraph) as a path entry: a .pth
    # line adds a folder without running the .pth files in it, so an editable gradviz there
    # stays out.
    reused = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "reuse.pth").write_text("\n".join(sorted(reused)) + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "-q", str(wheel)])

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["QT_QPA_PLATFORM"] = "offscreen"
    version, names = run([str(python), "-c", CHECK], cwd=outside, env=env).split()
    shipped = sorted(p.stem for p in (ROOT / "gradviz" / "experiments").glob("*.json"))
    assert names.split(",") == shipped and len(shipped) > 0
    import gradviz
    assert version == gradviz.__version__

    run([str(python), "-m", "gradviz", "run", "--cell", "gru", "--seq-len", "8", "--hidden",
         "4", "--steps", "3", "--quiet", "--out", "run"], cwd=outside, env=env)
    assert (outside / "run" / "run.json").is_file() and (outside / "run" / "capture.npz").is_file()
    assert run([str(venv / "bin" / "gradviz"), "--version"], cwd=outside, env=env) == \
        f"gradviz {version}\n"
