"""``gradviz sweep``: train a grid of runs headless and record whether each solved its task.

    gradviz sweep --task adding --cells rnn-tanh,lstm,gru --lengths 10,20,50,100 \\
                  --seeds 8 --steps 2000 [--vary clip=none,norm] \\
                  [--scheduler tcp://HOST:PORT] [--figures DIR] --out sweeps/vanishing

Every other ``gradviz run`` option (``--hidden``, ``--lr``, …) applies to each run. The
runs go to a local process pool (``--workers``, default one per core) or to a Dask cluster
(``--scheduler``); each finished run's row is written to ``OUT/sweep.csv`` at once, so
repeating the command resumes a killed sweep. Mistakes end with exit status 2 and one line.
"""
from __future__ import annotations

import argparse
import os
import sys

from gradviz.cliprep import UsageError, config_error, given_fields
from gradviz.config import GROUPS, ConfigError, RunConfig, settings
from gradviz.options import EXIT_USAGE, Parser, add_option
from gradviz.sweep.grid import Grid, GridError, parse_value

PROG = "gradviz sweep"
# The grid's axes, and capture_every, which each run sets to --check-every.
AXES = ("cell", "seq_len", "seed", "capture_every")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, allow_abbrev=False, argument_default=argparse.SUPPRESS,
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    description="Train a grid of runs (cells x lengths x seeds x varied "
                                "settings) without a window\nand record which solved their "
                                "task (docs/sweep.md).")
    grid = parser.add_argument_group("grid")
    grid.add_argument("--cells", metavar="A,B,…", default=None,
                      help="Cells to sweep, comma-separated (default: the --config run's cell, or lstm)")
    grid.add_argument("--lengths", metavar="T1,T2,…", default=None,
                      help="Sequence lengths T, comma-separated, e.g. 10,20,50,100")
    grid.add_argument("--seeds", metavar="N", type=int, default=None,
                      help="Seeds 0 to N-1 per point (default 4)")
    grid.add_argument("--vary", metavar="FIELD=V1,V2", action="append", default=None,
                      help="Also sweep a setting over values, e.g. clip=none,norm (repeatable)")
    grid.add_argument("--check-every", metavar="N", type=int, default=None,
                      help="Test for success every N steps (default steps/40)")
    grid.add_argument("--config", metavar="RUN_JSON", default=None,
                      help="Start from a saved run's settings (its folder or run.json)")
    grid.add_argument("--experiment", metavar="NAME", default=None,
                      help="Start from a sweep experiment's grid ("
                           + ", ".join(_experiment_names()) + ")")
    groups = {title: parser.add_argument_group(title.lower()) for title in GROUPS}
    for name, s in settings():
        if name not in AXES:
            add_option(groups[s.group], name, s)
    out = parser.add_argument_group("execution and output")
    out.add_argument("--out", metavar="DIR", default=None,
                     help="The sweep folder (sweep.json, sweep.csv); an unfinished sweep "
                          "there is resumed")
    out.add_argument("--workers", metavar="N", type=int, default=None,
                     help="Runs at once (default: one per core; with --scheduler, the "
                          "cluster's threads)")
    out.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                     help="Run on a Dask distributed cluster (needs gradviz[cluster])")
    out.add_argument("--figures", metavar="DIR", default=None,
                     help="Also write the success curve as PNG, SVG and CSV into DIR")
    out.add_argument("--quiet", action="store_true", default=False,
                     help="Print nothing but errors")
    return parser


def _experiment_names() -> list[str]:
    from gradviz.sweep.experiments import SWEEP_EXPERIMENTS
    return list(SWEEP_EXPERIMENTS)


def _split(text: str, option: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError(f"{option}: give a comma-separated list, e.g. {option} 10,20,50")
    return items


def make_grid(ns: argparse.Namespace) -> Grid:
    """The grid the arguments ask for (UsageError naming the option otherwise)."""
    base, defaults = RunConfig(), {}
    if ns.experiment is not None:
        from gradviz.sweep.experiments import sweep_experiment
        try:
            experiment = sweep_experiment(ns.experiment)
        except ValueError as exc:
            raise UsageError(f"--experiment: {exc}") from None
        base, defaults = experiment.base, experiment.grid
    if ns.config is not None:
        if ns.experiment is not None:
            raise UsageError("--config: give either --experiment or --config, not both")
        from gradviz.engine.runs.runfile import RunFileError, load_run_config
        try:
            base = load_run_config(ns.config)
        except RunFileError as exc:
            raise UsageError(f"--config: {exc}") from None
    try:
        base = base.replace(**given_fields(ns))
    except ConfigError as exc:
        raise config_error(exc) from None
    cells = _split(ns.cells, "--cells") if ns.cells else defaults.get("cells", [base.cell])
    if ns.lengths:
        try:
            lengths = [int(t) for t in _split(ns.lengths, "--lengths")]
        except ValueError:
            raise UsageError(f"--lengths: {ns.lengths!r} is not a list of whole numbers, "
                             "e.g. 10,20,50,100") from None
    else:
        lengths = defaults.get("lengths", [base.seq_len])
    seeds = ns.seeds if ns.seeds is not None else defaults.get("seeds", 4)
    vary = [tuple(v) for v in defaults.get("vary", [])]
    for item in ns.vary or []:
        name, sep, values = item.partition("=")
        if not sep:
            raise UsageError(f"--vary: {item!r} is not FIELD=V1,V2; e.g. --vary clip=none,norm")
        name = name.strip().replace("-", "_")
        try:
            parsed = tuple(parse_value(name, v) for v in _split(values, "--vary"))
        except GridError as exc:
            raise UsageError(str(exc)) from None
        vary = [v for v in vary if v[0] != name] + [(name, parsed)]
    if ns.check_every is not None and ns.check_every < 1:
        raise UsageError("--check-every: give a whole number of at least 1")
    try:
        return Grid(base, tuple(cells), tuple(lengths), seeds,
                    tuple((n, tuple(v)) for n, v in vary), ns.check_every or 0,
                    created_by="gradviz sweep " + " ".join(sys.argv[2:]))
    except GridError as exc:
        raise UsageError(str(exc)) from None


def sweep_command(argv: list[str]) -> int:
    """``gradviz sweep ARGS``; returns the exit status."""
    try:
        ns = build_parser().parse_args(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 0
    from gradviz.sweep.driver import SweepRefused, run_sweep
    try:
        if ns.out is None or not ns.out.strip():
            raise UsageError("--out: name the sweep folder, e.g. --out sweeps/vanishing")
        grid = make_grid(ns)
        code = run_sweep(grid, ns.out, workers=ns.workers, scheduler=ns.scheduler,
                         quiet=ns.quiet)
    except (UsageError, SweepRefused) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if code == 0 and ns.figures is not None:
        return write_figures(ns.out, ns.figures, ns.quiet)
    return code


def write_figures(sweep_folder: str, figures: str, quiet: bool) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        from gradviz.ui.sweepview import write_sweep_figures
        paths = write_sweep_figures(sweep_folder, figures)
    except Exception as exc:   # the sweep is saved; say why the pictures are not
        reason = str(exc) if type(exc).__name__ == "ExportError" else f"{type(exc).__name__}: {exc}"
        print(f"{PROG}: --figures: could not write figures to {figures}: {reason}",
              file=sys.stderr)
        return 1
    if not quiet:
        print(f"figures written to {figures} ({', '.join(p.name for p in paths)})",
              file=sys.stderr)
    return 0


__all__ = ["build_parser", "make_grid", "sweep_command", "PROG"]
