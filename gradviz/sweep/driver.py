"""Running a sweep: open its folder, skip the finished runs, refuse what the machine cannot
hold, send the rest to an executor and write each row as it comes, with a progress line
(done, running, failed, ETA) on stderr.
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Callable, TextIO

from gradviz.sweep import executors
from gradviz.sweep.folder import ResultsNotWritten, SweepFolder, memory_refusal, open_folder
from gradviz.sweep.grid import Grid, GridError
from gradviz.sweep.runone import run_one

EXIT_INTERRUPTED = 130


class SweepRefused(Exception):
    """The sweep cannot start; the message is one line naming the option and the fix."""


class ProgressLine:
    """The tally redrawn in place on a terminal, a line every 10 s in a log."""

    def __init__(self, tally: executors.Tally, stream: TextIO, enabled: bool):
        self.tally, self.stream, self.enabled = tally, stream, enabled
        self.tty = enabled and stream.isatty()
        self.interval = 0.5 if self.tty else 10.0
        self._last = 0.0
        self._width = 0

    def show(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last < self.interval):
            return
        self._last = now
        line = self.tally.line()
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()


def prepare(grid: Grid, out, workers: int | None, scheduler: str | None):
    """(folder, runs to do, workers, executor factory, Dask client or None): SweepRefused
    if it cannot start."""
    if workers is not None and workers < 1:
        raise SweepRefused("--workers: give at least 1")
    client = None
    if scheduler is not None:
        try:
            client = executors.dask_client(scheduler)
        except (executors.ClusterMissing, executors.ClusterError) as exc:
            raise SweepRefused(str(exc)) from None
        count = workers or executors.dask_threads(client)
    else:
        count = min(workers or executors.cores(), len(grid.runs()))
        # Before anything is written: a refused sweep leaves no folder behind.
        too_big = memory_refusal(grid, count)
        if too_big:
            raise SweepRefused(too_big)
    try:
        folder = open_folder(out, grid)
    except GridError as exc:
        if client is not None:
            client.close()
        raise SweepRefused(str(exc)) from None
    specs = folder.pending()
    if client is not None:
        return folder, specs, count, client.get_executor, client
    count = min(count, max(1, len(specs)))
    return folder, specs, count, lambda: executors.local_pool(count), None


def run_specs(folder: SweepFolder, specs: list[dict], workers: int,
              make_executor: Callable[[], Executor], stream: TextIO | None = None,
              fn: Callable = run_one) -> executors.Tally:
    """Run ``specs``, writing each row into ``folder`` as it finishes; the tally."""
    tally = executors.Tally(len(folder.grid.runs()), len(folder.finished()), workers)
    progress = ProgressLine(tally, stream or sys.stderr, stream is not None)
    try:
        executors.execute(specs, make_executor, workers, folder.add, tally,
                          on_tick=progress.show, fn=fn)
    finally:
        progress.show(force=True)
        progress.close()
    return tally


def run_sweep(grid: Grid, out, workers: int | None = None, scheduler: str | None = None,
              quiet: bool = False) -> int:
    """The command's sweep: 0 when every run finished (failed ones included: they are
    recorded), 130 when interrupted (the finished rows are kept)."""
    folder, specs, count, make, client = prepare(grid, out, workers, scheduler)
    say = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr,
                                                                flush=True))
    total = len(grid.runs())
    where = f"the Dask cluster at {scheduler}" if scheduler else f"{count} local processes"
    say(f"sweep: {total} runs ({total - len(specs)} already done), {count} at a time on "
        f"{where}; results in {Path(out) / 'sweep.csv'}")
    try:
        tally = run_specs(folder, specs, count, make, None if quiet else sys.stderr)
    except KeyboardInterrupt:
        print(f"gradviz sweep: interrupted; {len(folder.finished())} of {total} runs are "
              f"done and kept in {out}; repeat the command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ResultsNotWritten as exc:
        print(f"gradviz sweep: {exc}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
    wins = sum(1 for r in folder.rows.values() if str(r.get("success")) == "1")
    say(f"done: {len(folder.finished())} of {total} runs finished, {tally.failed} failed "
        f"(see the reason column), {wins} solved the task; {Path(out) / 'sweep.csv'}")
    return 0


__all__ = ["SweepRefused", "ProgressLine", "prepare", "run_specs", "run_sweep",
           "EXIT_INTERRUPTED"]
