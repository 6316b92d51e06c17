"""`gradviz` with no display says so in one line and exits 2 (issue 20, point 10); before,
Qt's xcb platform aborted it with a core dump (exit 134) and misleading advice."""
import os
import subprocess
import sys

import pytest

from gradviz.display import missing_display, no_display_message


def bare_env(**extra) -> dict:
    """The environment of a login with no graphical session: no DISPLAY, WAYLAND_DISPLAY
    or QT_QPA_PLATFORM."""
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "PYTHONPATH", "LANG", "TMPDIR")
            if k in os.environ}
    return {**keep, **extra}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/Wayland only")
@pytest.mark.parametrize("args", [[], ["--experiment", "vanishing-tanh"]])
@pytest.mark.parametrize("env", [{}, {"DISPLAY": ":87"}, {"QT_QPA_PLATFORM": "xcb"}])
def test_gradviz_without_a_display_exits_2_in_one_line(args, env):
    child = subprocess.run([sys.executable, "-m", "gradviz", *args], capture_output=True,
                           text=True, timeout=120, env=bare_env(**env))
    assert child.returncode == 2, (child.returncode, child.stderr[-800:])
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1, child.stderr
    assert "no display" in lines[0] and "'gradviz run" in lines[0]
    assert "QT_QPA_PLATFORM=offscreen" in lines[0]
    if "DISPLAY" in env:
        assert "no X server is running for DISPLAY=:87" in lines[0]


def test_which_environments_have_a_display(tmp_path):
    linux = "linux"
    assert missing_display({}, linux) == "neither DISPLAY nor WAYLAND_DISPLAY is set"
    assert missing_display({"QT_QPA_PLATFORM": "offscreen"}, linux) is None
    assert missing_display({"QT_QPA_PLATFORM": "minimal:enable_fonts"}, linux) is None
    assert missing_display({"WAYLAND_DISPLAY": "wayland-0"}, linux) is None
    assert missing_display({"DISPLAY": "remote.host:10.0"}, linux) is None
    assert "needs DISPLAY" in missing_display({"QT_QPA_PLATFORM": "xcb",
                                               "WAYLAND_DISPLAY": "wayland-0"}, linux)
    assert "needs WAYLAND_DISPLAY" in missing_display({"QT_QPA_PLATFORM": "wayland",
                                                       "DISPLAY": "remote:1"}, linux)
    assert missing_display({}, "darwin") is None and missing_display({}, "win32") is None
    assert no_display_message({"QT_QPA_PLATFORM": "offscreen"}, linux) is None


def test_offscreen_as_the_tests_run_is_a_display():
    """The check stands aside where Qt is told to draw offscreen (tests/conftest.py)."""
    assert os.environ.get("QT_QPA_PLATFORM") == "offscreen"
    assert no_display_message() is None
