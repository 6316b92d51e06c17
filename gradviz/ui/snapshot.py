"""``gradviz snapshot``: the window rendered offscreen as a user would see it after an
experiment has trained, for slides, documentation and tests, with a JSON description of
what is drawn (:mod:`gradviz.ui.describe`) beside the PNG.

    gradviz snapshot --experiment NAME [--steps N] [--then] [--size WxH] [--scale S]
                     [--theme NAME] [--view KEY] --out FILE.png

Training runs in this process (:mod:`gradviz.ui.offline`) with one torch thread, so the
same command gives the same numbers. ``--then`` trains the experiment's second
configuration after the first, as the window's "Now: …" button does, the first staying on
screen as a comparison. ``--view KEY`` writes that one view as its PNG export does.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

PROG = "gradviz snapshot"
EXIT_USAGE = 2     # as every gradviz command: a mistake in the arguments
_APP = None   # the QApplication this module made, kept alive


class Parser(argparse.ArgumentParser):
    """A mistake in the arguments is one line naming it, and exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, allow_abbrev=False,
                    description="Render the window offscreen after training a guided "
                                "experiment, and describe it (FILE.json beside FILE.png).")
    parser.add_argument("--experiment", metavar="NAME", required=True,
                        help="The guided experiment (gradviz run --list-experiments)")
    parser.add_argument("--steps", metavar="N", type=int, default=None,
                        help="Training steps (default: the experiment's lesson length)")
    parser.add_argument("--then", action="store_true",
                        help="Then train the experiment's second configuration, the first "
                             "staying as a comparison (the window's \"Now: …\" button)")
    parser.add_argument("--size", metavar="WxH", default="1280x720",
                        help="Window size in pixels (default 1280x720)")
    parser.add_argument("--scale", metavar="S", type=float, default=1.0,
                        help="Scale of every font, line and marker (View ▸ Bigger; default 1)")
    parser.add_argument("--theme", metavar="NAME", default="standard",
                        help="standard or projector")
    parser.add_argument("--view", metavar="KEY", default=None,
                        help="Write only this view, as its PNG export does (gradflow, "
                             "gradtime, gates, states, loss, gradnorm, …)")
    parser.add_argument("--out", metavar="FILE.png", required=True, help="The PNG to write")
    return parser


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: expected WIDTHxHEIGHT such as 1280x720, got {text!r}") from None
    if not (320 <= w <= 7680 and 240 <= h <= 4320):
        raise ValueError(f"--size: {w}x{h} is outside 320x240 to 7680x4320")
    return w, h


def make_window(size: tuple[int, int], scale: float = 1.0, theme: str = "standard",
                settings: str | None = None):
    """A MainWindow with no training process, shown (offscreen where there is no display)
    at ``size``, ``scale`` and ``theme``, with settings kept in ``settings`` (an .ini
    path; default a fresh temporary one, so the user's own are never read or changed)."""
    from PyQt6 import QtWidgets

    from gradviz.ui.offline import offline_windows
    from gradviz.ui.prefs import Prefs

    global _APP
    _APP = QtWidgets.QApplication.instance() or QtWidgets.QApplication([PROG])
    if settings is None:
        settings = os.path.join(tempfile.mkdtemp(prefix="gradviz-snapshot-"), "settings.ini")
    with offline_windows():
        from gradviz.ui.window import MainWindow
        window = MainWindow(prefs=Prefs(settings))
    window.resize(*size)
    window.show()
    window.presentation.set_theme(theme)
    window.presentation.set_scale(scale)
    settle(window)
    return window


def settle(window) -> None:
    """Layouts, the focus fit and every view drawn, at the window's scale."""
    from PyQt6 import QtWidgets

    app = QtWidgets.QApplication.instance()
    for _ in range(2):
        app.processEvents()
        window.focus.fit()
        window.draw_now()
        window.presentation.apply_scenes()
        app.processEvents()
    window.draw_now()
    app.processEvents()


def train_experiment(window, experiment, steps: int | None = None, then: bool = False) -> None:
    """Load ``experiment`` in ``window`` and train it ``steps`` (default: its lesson's);
    with ``then``, its second configuration after it, as the "Now: …" button does."""
    from gradviz.ui.offline import train_window

    window.load_experiment(experiment)
    train_window(window, steps or experiment.config.steps)
    if then:
        window.load_then(experiment)
        train_window(window, steps or experiment.then_config.steps)
    # The speed depends on the machine, and the hint to press Space is done with.
    window.status_fields.speed.setText("")
    from gradviz.ui.window import PRESS_SPACE
    if window.statusBar().currentMessage().endswith(PRESS_SPACE):
        window.statusBar().clearMessage()
    settle(window)


def snapshot(experiment_name: str, out: str | os.PathLike, *, steps: int | None = None,
             then: bool = False, size: tuple[int, int] = (1280, 720), scale: float = 1.0,
             theme: str = "standard", view: str | None = None) -> dict:
    """Write the PNG and its JSON (``out`` with the suffix .json); returns the JSON's dict."""
    from gradviz.experiments import load_experiment
    from gradviz.ui.describe import describe_window

    experiment = load_experiment(experiment_name)
    if then and experiment.then_config is None:
        raise ValueError(f"--then: {experiment_name} has no second configuration")
    window = make_window(size, scale, theme)
    try:
        if view is not None and view not in window.views:
            raise ValueError(f"--view: unknown view {view!r}; known: {', '.join(window.views)}")
        train_experiment(window, experiment, steps, then)
        out = Path(out)
        if view is not None:
            window.dashboard.show_view(view)
            settle(window)
            window.views[view].export(out)
            description = describe_window(window, scale, [view])
        else:
            image = window.grab().toImage()
            from gradviz.ui.export import save_image_png
            save_image_png(image, out)
            description = describe_window(window, scale)
        out.with_suffix(".json").write_text(json.dumps(description, indent=1,
                                                       ensure_ascii=False) + "\n",
                                            encoding="utf-8")
        return description
    finally:
        window.close()


def snapshot_command(argv: list[str]) -> int:
    """``gradviz snapshot …``; exit status 2 with one line for a mistake in the arguments."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    args = build_parser().parse_args(argv)
    if not str(args.out).lower().endswith(".png"):
        print(f"{PROG}: --out: the file must end in .png, got {args.out!r}", file=sys.stderr)
        return EXIT_USAGE
    try:
        size = _size(args.size)
        if not 0.5 <= args.scale <= 3.0:
            raise ValueError(f"--scale: {args.scale:g} is outside 0.5 to 3")
        if args.steps is not None and args.steps < 1:
            raise ValueError(f"--steps: must be at least 1, got {args.steps}")
        from gradviz.ui.theme import theme_named
        theme_named(args.theme)
    except ValueError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE
    from gradviz.ui.export import ExportError
    try:
        snapshot(args.experiment, args.out, steps=args.steps, then=args.then, size=size,
                 scale=args.scale, theme=args.theme, view=args.view)
    except ValueError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ExportError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{PROG}: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0


__all__ = ["snapshot", "snapshot_command", "make_window", "train_experiment", "settle"]
