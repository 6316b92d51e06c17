"""Is there a screen to open the window on? Asked before Qt is.

Without one, Qt's xcb platform aborts the process with a core dump (exit 134) and advice
to install libxcb-cursor0, which is beside the point. :func:`missing_display` finds the
common cases first — on Linux and the BSDs, no ``DISPLAY`` or ``WAYLAND_DISPLAY`` while Qt
would use X11 or Wayland, or a local ``DISPLAY`` with no X server behind it — so that
``gradviz`` can say so in one line and exit with status 2. No Qt import here.
"""
from __future__ import annotations

import os
import re
import sys

# Qt platforms that need no screen at all.
HEADLESS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay")


def _platforms(value: str) -> list[str]:
    """Qt's platform names in QT_QPA_PLATFORM ("xcb", "wayland;xcb", "offscreen:fontengine=…")."""
    return [part.split(":", 1)[0].strip().lower() for part in value.split(";") if part.strip()]


def _x_server_missing(display: str) -> bool:
    """True when ``display`` is a local one (":0", ":1.0") and no X server listens for it:
    neither its socket file in /tmp/.X11-unix nor its abstract socket exists."""
    local = re.fullmatch(r"(?:unix)?:(\d+)(?:\.\d+)?", display)
    if local is None:
        return False                  # a remote or unusual display: Qt will find out
    path = f"/tmp/.X11-unix/X{local.group(1)}"
    if os.path.exists(path):
        return False
    try:
        with open("/proc/net/unix", encoding="ascii", errors="replace") as sockets:
            return not any(line.rstrip().endswith("@" + path) for line in sockets)
    except OSError:
        return False                  # cannot tell: let Qt try


def missing_display(environ=None, platform: str | None = None) -> str | None:
    """None when a window can be opened (or gradviz cannot tell), else what is missing."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if not (platform.startswith("linux") or "bsd" in platform):
        return None                   # macOS and Windows always have their own
    forced = _platforms(env.get("QT_QPA_PLATFORM", ""))
    if forced and forced[0] in HEADLESS:
        return None
    wanted = forced or ["wayland", "xcb"]
    display, wayland = env.get("DISPLAY", ""), env.get("WAYLAND_DISPLAY", "")
    if any(p.startswith("wayland") for p in wanted) and wayland:
        return None
    if "xcb" in wanted and display:
        if _x_server_missing(display):
            return f"no X server is running for DISPLAY={display}"
        return None
    if forced:
        need = "WAYLAND_DISPLAY" if forced[0].startswith("wayland") else "DISPLAY"
        return f"QT_QPA_PLATFORM={env['QT_QPA_PLATFORM']} needs {need}, which is not set"
    return "neither DISPLAY nor WAYLAND_DISPLAY is set"


def no_display_message(environ=None, platform: str | None = None) -> str | None:
    """The one line ``gradviz`` prints where there is no display, else None."""
    missing = missing_display(environ, platform)
    if missing is None:
        return None
    return (f"gradviz: no display to open the window on ({missing}). Train without a "
            "window with 'gradviz run …', or set QT_QPA_PLATFORM=offscreen to run the app "
            "with no screen")


__all__ = ["missing_display", "no_display_message", "HEADLESS"]
