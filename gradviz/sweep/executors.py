"""Where a sweep's runs execute: any ``concurrent.futures`` executor, through one loop.

* :func:`local_pool`: a process pool, one process per core (or ``workers``), started with
  "spawn" like the app's training process and set up as it is (denormals flushed, one
  torch thread; :func:`gradviz.sweep.runone.setup_worker`).
* :func:`dask_executor`: a Dask distributed cluster at ``tcp://HOST:PORT``;
  ``Client.get_executor()`` is a ``concurrent.futures`` executor too. Dask is the optional
  extra ``gradviz[cluster]``; without it :class:`ClusterMissing` says what to install.

:func:`execute` keeps at most ``workers`` runs in flight and hands each finished one to
``on_row``: its result, or a failed row with the reason when the run raised. When a pool
process dies (the OS killed it, a crash in a library), the pool breaks and every run in
flight with it fails alike; those runs are then run again one at a time in a pool of their
own, so that only the run that kills its worker is recorded as failed, and the sweep goes
on in a new pool.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from gradviz.sweep.results import failed_row
from gradviz.sweep.runone import run_one, setup_worker

INSTALL_CLUSTER = "pip install 'gradviz[cluster]' (or: pip install dask distributed)"


class ClusterMissing(RuntimeError):
    """Dask's distributed package is not installed."""


class ClusterError(RuntimeError):
    """The Dask scheduler could not be reached."""


def cores() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not Linux
        return max(1, os.cpu_count() or 1)


def _pool_child() -> None:
    """A pool process's setup: that of a training process; Ctrl-C is the parent's to
    handle (it ends the pool), so the children ignore it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_worker()


def local_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=_pool_child)


def stop(executor: Executor) -> None:
    """Cancel what has not started and end the runs in flight: a process pool's processes
    are terminated (the loop has stopped waiting for them)."""
    try:
        executor.shutdown(wait=False, cancel_futures=True)
    except TypeError:                 # Dask's executor cancels what is pending by itself
        executor.shutdown(wait=False)
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        try:
            process.terminate()
        except (OSError, AttributeError):
            pass


def dask_client(address: str, timeout: float = 20.0):
    """A ``distributed.Client`` connected to ``address``."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterMissing(f"--scheduler needs Dask's distributed package; install it: "
                             f"{INSTALL_CLUSTER}") from None
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"--scheduler: cannot reach a Dask scheduler at {address} "
                           f"({exc}); start one (dask scheduler, dask worker ADDRESS) or "
                           "check the address") from None


def dask_threads(client) -> int:
    """The threads of the cluster's workers (at least 1)."""
    return max(1, sum(client.nthreads().values()))


class Tally:
    """What a progress line says: done, running, failed, and an ETA from the mean time of
    the runs finished here."""

    def __init__(self, total: int, already: int, workers: int):
        self.total, self.done, self.failed, self.running = total, already, 0, 0
        self.workers = workers
        self.start = time.perf_counter()
        self.finished_here = 0

    def eta(self) -> float | None:
        if not self.finished_here:
            return None
        per_run = (time.perf_counter() - self.start) / self.finished_here
        return per_run * (self.total - self.done)

    def line(self) -> str:
        from gradviz.progress import clock

        eta = self.eta()
        return (f"sweep: {self.done}/{self.total} done, {self.running} running, "
                f"{self.failed} failed, ETA {clock(eta) if eta is not None else '?'}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def execute(specs: list[dict], make_executor: Callable[[], Executor], workers: int,
            on_row: Callable[[dict], None], tally: Tally | None = None,
            on_tick: Callable[[], None] | None = None, fn: Callable = run_one,
            should_stop: Callable[[], bool] | None = None) -> None:
    """Run every spec on executors from ``make_executor`` (a new one after a pool broke),
    at most ``workers`` at a time; ``on_row`` gets each result or failed row as it comes.
    ``on_tick`` is called about twice a second; ``should_stop`` ends the loop early (the
    runs in flight are cancelled)."""
    pending = list(specs)
    executor = make_executor()
    in_flight: dict = {}
    complete = False
    try:
        while pending or in_flight:
            if should_stop is not None and should_stop():
                break
            while pending and len(in_flight) < workers:
                spec = pending.pop(0)
                try:
                    in_flight[executor.submit(fn, spec)] = spec
                except BrokenProcessPool:
                    # A worker died since the last wait: this run never started. The runs
                    # in flight come back broken from the wait below, which makes a new
                    # pool; with none in flight, make it here.
                    pending.insert(0, spec)
                    if not in_flight:
                        executor.shutdown(wait=True)
                        executor = make_executor()
                    break
            if tally is not None:
                tally.running = len(in_flight)
            finished, _ = wait(list(in_flight), timeout=0.5, return_when=FIRST_COMPLETED)
            broken = []
            for future in finished:
                spec = in_flight.pop(future)
                try:
                    row = future.result()
                except BrokenProcessPool:
                    broken.append(spec)
                    continue
                except Exception as exc:   # the run raised: record it, go on
                    row = failed_row(spec, _reason(exc))
                _deliver(row, on_row, tally)
            if broken:
                broken += list(in_flight.values())    # the pool is gone for all of them
                in_flight.clear()
                executor.shutdown(wait=True)
                for spec in broken:
                    _deliver(_alone(spec, fn), on_row, tally)
                executor = make_executor()
            if tally is not None:
                tally.running = len(in_flight)
            if on_tick is not None:
                on_tick()
        complete = not in_flight
    finally:
        if complete:
            executor.shutdown(wait=True)
        else:
            stop(executor)


def _alone(spec: dict, fn: Callable) -> dict:
    """Run ``spec`` in a pool of its own: its row, or failed if its worker dies again."""
    with local_pool(1) as pool:
        try:
            return pool.submit(fn, spec).result()
        except BrokenProcessPool:
            return failed_row(spec, "its worker process died (killed by the OS, out of "
                                    "memory, or a crash in a library)")
        except Exception as exc:
            return failed_row(spec, _reason(exc))


def _deliver(row: dict, on_row, tally: Tally | None) -> None:
    if tally is not None:
        tally.done += 1
        tally.finished_here += 1
        tally.failed += row.get("status") == "failed"
    on_row(row)


__all__ = ["INSTALL_CLUSTER", "ClusterMissing", "ClusterError", "Tally", "cores",
           "local_pool", "stop", "dask_client", "dask_threads", "execute"]
