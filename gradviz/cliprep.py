"""The pieces ``gradviz run`` prepares before it trains: the text of the text task, the
output folder and, for ``--resume RUN_DIR``, the session that continues a saved run.

A resumed run's configuration, history, keyframes, text, weights, optimiser state and data
position come from RUN_DIR (:meth:`gradviz.engine.training.session.Session.resume`); ``--steps N``
says how many more steps to train (default: the run's ``steps``), and the live settings
(``--lr``, ``--clip``, …) may change, as they may in the app during a run. Any other option
would need a new model and is refused. The whole run, old steps and new, is written back to
RUN_DIR, or to ``--out``. Every mistake is a :class:`UsageError` naming the option.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import fields
from datetime import datetime
from pathlib import Path

from gradviz.config import LIVE_FIELDS, ConfigError, RunConfig


class UsageError(Exception):
    """A command-line mistake; the message starts with the option it is about."""


def option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def given_fields(ns: argparse.Namespace) -> dict:
    """The RunConfig fields given on the command line."""
    return {f.name: getattr(ns, f.name) for f in fields(RunConfig) if hasattr(ns, f.name)}


def config_error(exc: ConfigError) -> UsageError:
    message = str(exc).removeprefix(f"{exc.field}: ")
    return UsageError(f"{option_name(exc.field)}: {message}")


def load_text_for(config: RunConfig, from_config: bool) -> tuple[str | None, str | None]:
    """(text, note) for the text task, read here so a bad file is a --text-file error."""
    if config.task != "text":
        return None, None
    from gradviz.engine.tasks.texts import TaskInputError, read_text

    try:
        return read_text(config.text_file)
    except TaskInputError as exc:
        where = " (the file named by --config)" if from_config else ""
        raise UsageError(f"--text-file{where}: {exc}") from None


def out_folder(out: str | None) -> Path:
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        folder, n = Path("runs") / stamp, 1
        while folder.exists():
            n += 1
            folder = Path("runs") / f"{stamp}-{n}"
    else:
        folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out: cannot create the folder {folder} ({exc.strerror or exc}); "
                         "choose a folder you can write to") from None
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--out: the folder {folder} is not writable; choose another")
    return folder


def series_options(base: RunConfig, given: dict) -> dict:
    """``given`` with ``--series-file`` implying ``--task series`` where no task is given;
    UsageError where a series file would be silently ignored (another task named, or a
    --series-column without a file)."""
    task = given.get("task", base.task if not given.get("series_file") else "series")
    series_file = given.get("series_file") or base.series_file
    if given.get("series_file") and task != "series":
        raise UsageError(f"--series-file: only the series task reads a CSV file; use --task "
                         f"series (or leave --task out), not --task {task}")
    if given.get("series_column") and not series_file:
        raise UsageError("--series-column: give --series-file too (the CSV file whose column "
                         "it names)")
    return {**given, "task": task} if given.get("series_file") else given


# -- --resume ---------------------------------------------------------------------------
def resume_config(ns: argparse.Namespace) -> RunConfig:
    """The configuration of the run in ``ns.resume``, with the live settings given and
    ``steps`` the steps to train now; only run.json is read."""
    from gradviz.engine.runs.runfile import RunFileError, load_run_config

    if ns.config is not None or ns.experiment is not None:
        raise UsageError("--resume: give --resume without --config or --experiment; a "
                         "resumed run keeps its own settings")
    given = given_fields(ns)
    fixed = sorted(set(given) - LIVE_FIELDS - {"steps"})
    if fixed:
        raise UsageError(f"{option_name(fixed[0])}: cannot change when resuming a run (it "
                         "would need a new model); these may: "
                         + ", ".join(option_name(n) for n in sorted(LIVE_FIELDS | {"steps"})))
    try:
        return load_run_config(ns.resume).replace(**given)
    except RunFileError as exc:
        raise UsageError(f"--resume: {exc}") from None
    except ConfigError as exc:
        raise config_error(exc) from None


def resume_session(ns: argparse.Namespace, config: RunConfig, text: str | None):
    """The session continuing the run in ``ns.resume`` with ``config``'s live settings
    (:func:`resume_config`); its config's ``steps`` is the steps to train now."""
    from gradviz.engine.runs.runfile import RunFileError
    from gradviz.engine.training.session import Session

    try:
        session = Session.resume(ns.resume, text)
    except RunFileError as exc:
        raise UsageError(f"--resume: {exc}") from None
    live = {k: v for k, v in given_fields(ns).items() if k in LIVE_FIELDS}
    if live:
        session.set_live(**live)
    # Not a live setting (a model has no use for it): what this command trains, and what
    # the saved run.json says it asked for.
    session.trainer.config = session.config.replace(steps=config.steps)
    return session


__all__ = ["UsageError", "option_name", "given_fields", "config_error", "load_text_for",
           "series_options",
           "out_folder", "resume_config", "resume_session"]
