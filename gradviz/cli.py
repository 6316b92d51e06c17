"""The ``gradviz`` command: with no arguments it opens the app; ``gradviz run …`` trains
without a window and writes a run folder (docs/run-format.md) that the app can open, and
``gradviz run --resume RUN_DIR --steps N`` continues one (:mod:`gradviz.cliprep`);
``gradviz open RUN`` opens the app on one. The options are built in :mod:`gradviz.options`.

``gradviz run`` has one option per RunConfig field, built from its declaration
(:func:`gradviz.config.settings`: help, limits, group) and from the registry's names
(:mod:`gradviz.registry`). Qt is imported only when the app starts, so
``gradviz run`` needs no display. Mistakes in the arguments end with exit status 2 and
one line that names the option and what it allows; never a traceback.

A run that diverges (gradviz.engine.training.divergence: 10 of 20 steps not finite) is not
stopped: the steps asked for are trained, and recorded, because a diverging run is often
what a teacher wants to show, and its failed steps change no weights. It is reported the
first time it happens, with what to try, again above the final ``done:`` line, and in the
saved summary (``diverged_at_step``); the exit status stays 0.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from gradviz import __version__
from gradviz import clisignals as sig
from gradviz.cliprep import (UsageError, config_error, given_fields, load_text_for, option_name,
                             out_folder, resume_config, resume_session, series_options)
from gradviz.config import GROUPS, ConfigError, RunConfig, settings
from gradviz.options import EXIT_USAGE, Parser, add_option, choices_text
from gradviz.progress import Progress, clock

PROG = "gradviz run"
EXIT_INTERRUPTED = 130  # the shell's convention for a command stopped by SIGINT

TOP_HELP = f"""usage: gradviz [--version] [--experiment NAME] [run [OPTIONS] | open RUN]

  gradviz              open the app
  gradviz open RUN     open the app on a saved run (its folder or run.json)
  gradviz --experiment NAME
                       open the app on a guided experiment (gradviz run --list-experiments)
  gradviz run …        train without a window and save the run (gradviz run --help)
  gradviz snapshot …   render the window after an experiment to a PNG (and JSON)
  gradviz sweep …      train a grid of runs: success rate against T (gradviz sweep --help)
  gradviz --version    print the version ({__version__})"""


def build_parser() -> argparse.ArgumentParser:
    """The ``gradviz run`` parser: one option per RunConfig field (its help, limits and
    choices from :func:`gradviz.config.settings`), in the groups of the control panel."""
    parser = Parser(prog=PROG, allow_abbrev=False, argument_default=argparse.SUPPRESS,
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    description="Train a recurrent network without a window, capture its "
                                "gradient flow,\nand save the run (run.json + capture.npz).",
                    epilog=choices_text())
    groups = {title: parser.add_argument_group(title.lower()) for title in GROUPS}
    for name, s in settings():
        add_option(groups[s.group], name, s)
    out = parser.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", default=None,
                     help="Folder to write the run to, created if needed; a run already "
                          "there is replaced (default runs/<date-time>)")
    out.add_argument("--config", metavar="RUN_JSON", default=None,
                     help="Repeat a saved run (its folder or run.json); options given here "
                          "override its settings")
    out.add_argument("--resume", metavar="RUN_DIR", default=None,
                     help="Continue a saved run for --steps more steps from its weights, "
                          "optimiser and data position; the whole run is saved back to "
                          "RUN_DIR (or --out). Only live settings (--lr, --clip, …) may change")
    out.add_argument("--figures", metavar="DIR", default=None,
                     help="Also write each view as a figure into DIR")
    out.add_argument("--tensorboard", metavar="DIR", default=None,
                     help="Also write TensorBoard event files into DIR (needs tensorboard)")
    out.add_argument("--quiet", action="store_true", default=False,
                     help="Print nothing but errors")
    guided = parser.add_argument_group("experiments")
    guided.add_argument("--experiment", metavar="NAME", default=None,
                        help="Start from a guided experiment's settings (options given here "
                             "override them); see --list-experiments")
    guided.add_argument("--list-experiments", action="store_true", default=False,
                        help="List the guided experiments, one a line: name, then title")
    return parser


# -- gradviz run ----------------------------------------------------------------------
def _make_config(ns: argparse.Namespace) -> RunConfig:
    from gradviz.engine.runs.runfile import RunFileError, load_run_config

    base = RunConfig()
    if ns.experiment is not None:
        if ns.config is not None:
            raise UsageError("--experiment: give either --experiment or --config, not both")
        from gradviz.experiments import load_experiment

        try:
            base = load_experiment(ns.experiment).config
        except ValueError as exc:
            raise UsageError(f"--experiment: {exc}") from None
    if ns.config is not None:
        try:
            base = load_run_config(ns.config)
        except RunFileError as exc:
            raise UsageError(f"--config: {exc}") from None
    given = series_options(base, given_fields(ns))
    for name in ("text_file", "series_file"):
        if given.get(name):
            # An absolute path keeps the saved run repeatable from any working directory.
            given[name] = os.path.abspath(given[name])
    try:
        return base.replace(**given)
    except ConfigError as exc:
        raise config_error(exc) from None


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def run_command(argv: list[str]) -> int:
    """``gradviz run ARGS``; returns the exit status."""
    try:
        ns = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse has printed its one line (or the help)
        return stop.code if isinstance(stop.code, int) else 0
    if ns.list_experiments:
        from gradviz.experiments import list_experiments

        for experiment in list_experiments():
            print(f"{experiment.name}  {experiment.title}")
        return 0
    with ExitStack() as held, sig.terminate_as_interrupt():
        try:
            session, text_note, folder, board = _prepare(ns, held)
            if text_note:
                _say(ns.quiet, f"note: {text_note}")
        except UsageError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted before training started; nothing was saved",
                  file=sys.stderr)
            return sig.EXIT_TERMINATED if sig.received.terminated else EXIT_INTERRUPTED
        return _train_and_save(session, folder, ns, board)


def _prepare(ns: argparse.Namespace, held: ExitStack):
    """(session, note about the text file or None, output folder, TensorBoard writer or
    None), or a UsageError."""
    for flag, value in (("--out", ns.out), ("--figures", ns.figures),
                        ("--tensorboard", ns.tensorboard)):
        if value is not None and not value.strip():
            raise UsageError(f"{flag}: an empty folder name would write into the current "
                             f"folder; name one, e.g. {flag} runs/demo")
    resuming = ns.resume is not None
    config = resume_config(ns) if resuming else _make_config(ns)
    from gradviz.engine.training.train import prepare_training_process, set_training_threads, threads_for

    # Before anything makes torch start its worker threads, or it does not reach them.
    prepare_training_process()
    import torch

    set_training_threads(threads_for(config))
    if config.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device: cuda is not available on this machine (torch finds no CUDA "
                         "GPU); allowed here: cpu")
    from_config = (ns.config is not None or resuming) and not hasattr(ns, "text_file")
    text, note = load_text_for(config, from_config)
    from gradviz.engine.training import memory

    too_big = memory.check(config, text)
    if too_big:
        raise UsageError(f"this configuration {too_big}")
    near = memory.warning(config, text)
    if near:
        _say(ns.quiet, f"warning: this configuration {near}")

    from gradviz.engine.training.session import Session
    from gradviz.engine.tasks import TaskInputError

    if resuming and ns.out is None:          # read and written back: no other writer between
        sig.lock_out(held, ns.resume, "--resume")
    try:
        session = resume_session(ns, config, text) if resuming else Session(config, text=text)
    except TaskInputError as exc:
        raise UsageError(f"{option_name(exc.field or 'task')}: {exc}") from None
    board = _board(ns.tensorboard)
    # Only now: a mistake above leaves no empty folder behind.
    folder = out_folder(ns.resume if resuming and ns.out is None else ns.out)
    sig.lock_out(held, folder, "--out")
    return session, note, folder, board


def _board(folder: str | None):
    """The TensorBoard writer for --tensorboard, or None; a UsageError if it cannot be had."""
    if folder is None:
        return None
    from gradviz.tensorboard import BoardWriter, TensorBoardMissing
    try:
        return BoardWriter(folder)
    except (TensorBoardMissing, OSError) as exc:
        raise UsageError(f"--tensorboard: {exc}") from None


def _loops(session, progress: Progress) -> str | None:
    """On the CPU, which code ran the cell's sequential loops: "compiled" or "pytorch".
    Where the compiled loops cannot be had, says so once, with the reason. A replay on the
    other path agrees to rounding, not bit for bit."""
    if session.trainer.device.type != "cpu":
        return None
    from gradviz.engine import native
    notice = native.fallback_notice("cpu")
    if notice:
        progress.note(f"note: {notice}")
    return "pytorch" if notice else "compiled"


def _train_and_save(session, folder: Path, ns: argparse.Namespace, board=None) -> int:
    config = session.config
    progress = Progress(config.steps, sys.stderr, enabled=not ns.quiet)
    loops = _loops(session, progress)

    def on_step(report) -> None:
        if report.divergence is not None and session.times_diverged == 1:
            progress.note(f"warning: {report.divergence.message()} Training goes on, as "
                          "asked; a diverged run rarely recovers by itself.")
        progress.update(session.steps_done, report.loss)

    start = session.steps_done           # a resumed run's earlier steps
    try:
        with sig.deferred():          # SIGTERM: stop between two steps, and save
            session.run(config.steps, on_step=on_step, should_stop=lambda: sig.received.terminated,
                        on_capture=board.add_capture if board is not None else None)
    except KeyboardInterrupt:
        pass                          # session.interrupted is set; what was done is saved
    finally:
        if board is not None:
            board.close()
    session.interrupted = session.interrupted or sig.received.terminated
    seconds = time.perf_counter() - progress.start
    progress.close()

    done = session.steps_done - start
    extra = {"loops": loops} if loops else {}
    summary = {**session.summary(), **extra}
    try:
        with sig.deferred():          # a SIGTERM waits for the save
            session.save(folder, **extra)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted while saving; {folder} was left as it was", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        # strerror, not str(exc): that names the temporary file, not the folder asked for.
        print(f"{PROG}: could not save the run to {folder}: {exc.strerror or exc}; a run "
              "already there is left as it was", file=sys.stderr)
        return 1
    board_failed = board is not None and board.failed is not None
    if board_failed:
        print(f"{PROG}: --tensorboard: could not write to {board.folder}: "
              f"{board.failed.strerror or board.failed}; the run itself was saved to {folder}",
              file=sys.stderr)
    if session.interrupted or sig.received.terminated:
        how = "terminated (SIGTERM)" if sig.received.terminated else "interrupted"
        print(f"{PROG}: {how} after {done} of {config.steps} steps; saved what was done "
              f"to {folder}", file=sys.stderr)
        return sig.EXIT_TERMINATED if sig.received.terminated else EXIT_INTERRUPTED
    nonfinite, clipped = session.counts.nonfinite, session.counts.clipped
    rate = f"{done / seconds:.1f}" if seconds > 0 and done else "?"
    flags = "".join(f", {n} {what}" for n, what in ((nonfinite, "non-finite"), (clipped, "clipped"))
                    if n)
    first = session.first_divergence
    if first is not None:
        from gradviz.engine.training.divergence import advice

        again = session.times_diverged - 1
        later = f", and {again} more time{'s' * (again > 1)} later" if again else ""
        _say(ns.quiet, f"warning: training diverged at step {first.step}{later}. "
                       f"{advice(config)}")
    _say(ns.quiet, f"done: {done} steps in {clock(seconds)} ({rate} steps/s{flags}); final loss "
                   f"{summary['final_loss']:.4g}, baseline {summary['baseline']:.4g}; "
                   f"saved to {folder}")
    if board is not None and not board_failed:
        _say(ns.quiet, f"TensorBoard event files written to {board.folder}")
    if ns.figures is not None:
        return _write_figures(Path(ns.figures), config, session.history, ns.quiet) \
            or int(board_failed)
    return int(board_failed)


def _write_figures(folder: Path, config: RunConfig, history, quiet: bool) -> int:
    # A headless command draws off screen; a desktop session keeps its own platform.
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        from gradviz.ui.figures import write_figures
        write_figures(folder, config, history)
    except Exception as exc:  # the run is saved; report why the pictures are not, in one line
        # An ExportError's message names the file, the reason and the fix (by name: importing
        # its module may be what failed); anything else is unexpected, and its type is part
        # of what to report.
        reason = str(exc) if type(exc).__name__ == "ExportError" else f"{type(exc).__name__}: {exc}"
        print(f"{PROG}: --figures: could not write figures to {folder}: {reason}",
              file=sys.stderr)
        return 1
    _say(quiet, f"figures written to {folder}")
    return 0


# -- entry points ---------------------------------------------------------------------
def gui_main(experiment: str | None = None) -> int:
    """Open the app (the ``gradviz-app`` entry point), on ``experiment`` if given."""
    from gradviz.ui.app import run_app

    return run_app(experiment=experiment)


def main(argv: list[str] | None = None) -> int:
    """``gradviz`` (the app), ``gradviz run …`` (headless) or ``gradviz --version``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        return gui_main()
    if args[0] == "run":
        return run_command(args[1:])
    if args[0] == "sweep":
        from gradviz.sweepcli import sweep_command
        return sweep_command(args[1:])
    if args[0] == "open":
        from gradviz.api.show import open_command
        return open_command(args[1:])
    if args[0] == "snapshot":
        from gradviz.ui.snapshot import snapshot_command
        return snapshot_command(args[1:])
    if args[0] == "--experiment" or args[0].startswith("--experiment="):
        name = args[0].partition("=")[2] or (args[1] if len(args) > 1 else "")
        extra = args[1:] if "=" in args[0] else args[2:]
        if not name or extra:
            print("gradviz: --experiment takes one experiment's name, e.g. 'gradviz "
                  "--experiment vanishing-tanh' (list them: gradviz run --list-experiments)",
                  file=sys.stderr)
            return EXIT_USAGE
        from gradviz.experiments import load_experiment
        try:
            load_experiment(name)
        except ValueError as error:
            print(f"gradviz: --experiment: {error}", file=sys.stderr)
            return EXIT_USAGE
        return gui_main(name)
    if args[0] in ("--version", "-V"):
        print(f"gradviz {__version__}")
        return 0
    if args[0] in ("-h", "--help"):
        print(TOP_HELP)
        return 0
    print(f"gradviz: unknown command {args[0]!r}; use 'gradviz' to open the app or "
          f"'{PROG} --help' to train without a window", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
