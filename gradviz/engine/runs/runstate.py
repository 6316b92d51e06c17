"""What a run needs to go on training: its weights, optimiser state and data position, as
named numpy arrays (``state.npz`` in a run folder; docs/run-format.md).

:func:`capture_state` takes a :class:`RunState` from a session between two steps, and
:func:`restore_state` puts it into a session built from the same configuration; from then
on the session trains exactly as the original would have (the same batches, the same
updates: bit for bit on the same device and code path). :func:`write_state` stores one and
:func:`read_state` reads one back from an archive, checking every member's header against
the arrays a session of the run's configuration has before reading its data.

A step depends on more than the weights, and all of it is here: the optimiser's
per-parameter state, the batch generator, a stateful task's stream position and the hidden
state carried between batches, the step count, the spectrum tracker's bases (ρ and σ_max
are iterated from the previous step's, gradviz.engine.analysis.spectrum), the divergence watch's window, the text sampler's count, the live
settings in force, and the session's counts. This module reads those from the trainer's
attributes: it is the one place outside :mod:`gradviz.engine.training.train` that knows them.

Importing it imports no torch (the window reads run files and sends states, and has no
torch); the functions that touch a session import it.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass

import numpy as np

from gradviz.config import LIMITS, LIVE_FIELDS
from gradviz.engine.training.divergence import FAULTS, WINDOW, Divergence
from gradviz.engine.runs.npzfile import Archive, ArchiveError, Declared
from gradviz.engine.runs.runcheck import check_state_values
from gradviz.engine.runs.runformat import RunFileError

STATE_NPZ = "state.npz"
# The member naming the save a state.npz (and capture.npz) belongs to; run.json names it
# too (gradviz.engine.runs.runsave). Not part of a RunState.
GENERATION = "generation"
MAX_POSITION_PARTS = 4
# Of the divergence watch's first trip: step, first_step, failed, seen, in_a_row, then the
# count of each of FAULTS.
_FIRST_FIELDS = 5 + len(FAULTS)


@dataclass(frozen=True)
class RunState:
    """Everything a session needs to continue a run, as named arrays (their names and
    meaning: docs/run-format.md, "state.npz"). Plain numpy: it can cross to the training
    process in a message and be written without pickle."""
    arrays: dict[str, np.ndarray]

    @property
    def step(self) -> int:
        """Steps trained."""
        return int(self.arrays["step"])

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(str(s) for s in self.arrays["param_names"])

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


def _host(t) -> np.ndarray:
    return t.detach().to("cpu").numpy().copy()


def capture_state(session) -> RunState:
    """The state of ``session`` (a :class:`~gradviz.engine.training.session.Session`) now."""
    import torch

    tr = session.trainer
    a: dict[str, np.ndarray] = {
        "step": np.int64(tr.step_index),
        "param_names": np.array(tr.param_names, dtype=str),
        "data_rng": tr._data_gen.get_state().numpy().copy(),
        "last_loss": np.float64(tr.last_loss),
        "text_count": np.int64(tr._gen_count),
        "counts": np.array([session.counts.captured, session.counts.nonfinite,
                            session.counts.clipped], dtype=np.int64),
        "seconds": np.float64(session.seconds),
    }
    for i, p in enumerate(tr.params):
        a[f"weight_{i}"] = _host(p)
    for i, values in tr.optimizer.indexed_state().items():
        for key, value in values.items():
            a[f"optim_{i}_{key}"] = _host(torch.as_tensor(value))
    for j, part in enumerate(tr.task.position()):
        a[f"position_{j}"] = part
    if tr._state is not None:
        a["carried_h"] = _host(tr._state[0])
        if tr._state[1] is not None:
            a["carried_c"] = _host(tr._state[1])
    if tr.spectrum.state() is not None:
        v, rho, rho_step = tr.spectrum.state()
        a.update(spectrum_v=_host(v), spectrum_rho=_host(rho),
                 spectrum_rho_step=np.int64(rho_step))
    watch = tr.watch
    a["watch_step"] = np.array([s for s, _ in watch._recent], dtype=np.int64)
    a["watch_fault"] = np.array([-1 if f is None else FAULTS.index(f) for _, f in watch._recent],
                                dtype=np.int64)
    a["watch_tripped"] = np.int64(watch.tripped)
    if watch.first is not None:
        d, counts = watch.first, dict(watch.first.faults)
        a["watch_first"] = np.array([d.step, d.first_step, d.failed, d.seen, d.in_a_row]
                                    + [counts.get(f, 0) for f in FAULTS], dtype=np.int64)
    for name in sorted(LIVE_FIELDS):
        a["live_" + name] = np.asarray(getattr(tr.config, name))
    return RunState(a)


# -- what a session of a configuration has --------------------------------------------
def expected(session) -> dict[str, Declared]:
    """The dtype and shape of every member a state of ``session``'s configuration may
    have (a fresh session: before its first step)."""
    import torch

    tr = session.trainer
    c = np.dtype(np.float64 if tr.dtype == torch.float64 else np.float32)
    i64, f64 = np.dtype(np.int64), np.dtype(np.float64)
    names = np.array(tr.param_names, dtype=str)
    spec = {"step": ((), i64), "param_names": (names.shape, names.dtype),
            "data_rng": (tuple(tr._data_gen.get_state().shape), np.dtype(np.uint8)),
            "last_loss": ((), f64), "text_count": ((), i64), "counts": ((3,), i64),
            "seconds": ((), f64), "watch_tripped": ((), i64),
            "watch_first": ((_FIRST_FIELDS,), i64)}
    keys = _optimizer_keys(session)
    for i, p in enumerate(tr.params):
        spec[f"weight_{i}"] = (tuple(p.shape), c)
        for key, scalar in keys.items():
            spec[f"optim_{i}_{key}"] = (() if scalar else tuple(p.shape), None)
    L, D, H = tr.net.layers, tr.net.directions, tr.net.hidden
    vectors = (L * D * len(tr.net.cell.spec.rho_names), H)
    spec.update(spectrum_v=(vectors, f64), spectrum_rho=(vectors[:1], f64),
                spectrum_rho_step=((), i64))
    carried = (L * D, tr.config.batch_size, tr.net.hidden)
    spec.update(carried_h=(carried, c), carried_c=(carried, c))
    for name in sorted(LIVE_FIELDS):
        value = np.asarray(getattr(tr.config, name))
        spec["live_" + name] = ((), value.dtype if value.dtype.kind != "U" else None)
    return {k: Declared(shape, dtype, False) for k, (shape, dtype) in spec.items()}


def _optimizer_keys(session) -> dict[str, bool]:
    """The per-parameter state the run's optimiser keeps, each key: whether it is a scalar.
    Found by stepping the optimiser once on a parameter of its own."""
    import torch

    from gradviz.engine.training.train import make_optimizer

    cfg, tr = session.trainer.config, session.trainer
    probe = torch.nn.Parameter(torch.zeros(2, dtype=tr.dtype))
    optimizer = make_optimizer(cfg.optimizer, [probe], cfg.lr, max(cfg.momentum, 0.5))
    probe.grad = torch.ones_like(probe)
    optimizer.step()
    return {k: torch.as_tensor(v).ndim == 0 for k, v in optimizer.state[probe].items()}


def check_state(state: RunState, session, where: str = "the run's state") -> None:
    """ValueError (a RunFileError naming ``where``) unless every array of ``state`` is one
    that ``session``'s configuration has, of its dtype and shape."""
    _check(where, {k: Declared(v.shape, v.dtype, False) for k, v in state.arrays.items()},
           expected(session))


def _check(where: str, declared: dict[str, Declared], spec: dict[str, Declared]) -> None:
    batch = int(LIMITS["batch_size"][1])
    for name, got in declared.items():
        if name.startswith("position_"):      # a task's own: (B,) or (2, B) numbers
            if got.ndim > 2 or got.dtype.kind not in "iuf" or got.dtype.itemsize > 8 \
                    or any(n > batch for n in got.shape):
                raise RunFileError(f"{where}: '{name}' is not a stream position gradviz writes")
            continue
        if name in ("watch_step", "watch_fault"):
            if got.ndim != 1 or got.dtype != np.int64 or got.shape[0] > WINDOW:
                raise RunFileError(f"{where}: '{name}' is not a divergence window gradviz writes")
            continue
        want = spec.get(name)
        if want is None:
            raise RunFileError(f"{where}: '{name}' is not part of a state of this run's "
                               "configuration (another model or optimiser)")
        if want.dtype is not None:
            kind_ok = got.dtype == want.dtype
        elif name.startswith("live_"):        # a live setting's text, e.g. the clipping mode
            kind_ok = got.dtype.kind == "U" and got.dtype.itemsize <= 4 * 64
        else:                                 # optimiser state: floats of the optimiser's width
            kind_ok = got.dtype.kind == "f" and got.dtype.itemsize <= 8
        if got.shape != want.shape or not kind_ok:
            raise RunFileError(f"{where}: '{name}' holds {got.dtype} {got.shape}; this run's "
                               f"configuration has {want.dtype or 'float'} {want.shape}")
    required = {"step", "param_names", "data_rng", "last_loss", "text_count", "counts",
                "seconds", "watch_step", "watch_fault", "watch_tripped",
                *(k for k in spec if k.startswith("weight_") or k.startswith("live_"))}
    missing = sorted(required - set(declared))
    if missing:
        raise RunFileError(f"{where}: '{missing[0]}' is missing; the state is incomplete")


# -- into a session ---------------------------------------------------------------------
def restore_state(session, state: RunState, where: str | None = None) -> None:
    """Put ``state`` into ``session``, a fresh session of the same configuration; a
    ValueError (RunFileError) naming ``where`` (the state's file) and what does not fit,
    with the session left unchanged. Every value is checked first
    (:func:`gradviz.engine.runs.runcheck.check_state_values`)."""
    import torch

    where = "the run's state" if where is None else where
    check_state(state, session, where)
    tr, a = session.trainer, state.arrays
    if state.param_names != tr.param_names:
        raise RunFileError(f"{where}: 'param_names' are other parameters than this model's")
    for i, name in enumerate(state.param_names):
        if not np.isfinite(a[f"weight_{i}"]).all():     # the spectrum's LAPACK would crash
            raise RunFileError(f"{where}: the weight {name} ('weight_{i}') holds NaN or "
                               "infinite values; a run cannot go on from diverged weights")
    check_state_values(a, session, where)
    spectral = {"spectrum_v", "spectrum_rho", "spectrum_rho_step"} & set(a)
    has_c = tr.net.zero_state(1)[1] is not None
    if len(spectral) not in (0, 3) or ("carried_h" in a and not tr.config.stateful) \
            or ("carried_c" in a) != ("carried_h" in a and has_c):
        raise RunFileError(f"{where}: incomplete (a spectral radius or carried state in part, "
                           "or a carried state for a run that carries none)")
    per_param: dict[int, dict] = {}
    for name, value in a.items():
        if name.startswith("optim_"):
            i, key = name.removeprefix("optim_").split("_", 1)
            per_param.setdefault(int(i), {})[key] = torch.from_numpy(value.copy())
    keys = set(_optimizer_keys(session))
    if any(set(values) != keys for values in per_param.values()):
        raise RunFileError(f"{where}: 'optim_*' is an optimiser state of another kind")
    live = {name: a["live_" + name].item() for name in LIVE_FIELDS}
    try:
        tr.config.replace(**live)      # refuses settings outside their limits
    except ValueError as exc:
        raise RunFileError(f"{where}: 'live_*': {exc}") from None
    generator = torch.Generator()
    try:
        generator.set_state(torch.from_numpy(a["data_rng"].copy()))
    except RuntimeError as exc:
        raise RunFileError(f"{where}: 'data_rng' is a damaged batch generator ({exc})") \
            from None
    # A position that is not the task's is refused before it changes anything.
    try:
        tr.task.set_position([a[f"position_{j}"] for j in range(MAX_POSITION_PARTS)
                              if f"position_{j}" in a])
    except ValueError as exc:
        raise RunFileError(f"{where}: 'position_*': {exc}") from None
    # Nothing above changed the session; from here on nothing can fail.
    tr._data_gen = generator
    tr.set_live(**live)
    with torch.no_grad():
        for i, p in enumerate(tr.params):
            p.copy_(torch.from_numpy(a[f"weight_{i}"]))
    tr.optimizer.load_state(per_param)
    if "carried_h" in a:
        tr._state = (torch.from_numpy(a["carried_h"].copy()).to(tr.device),
                     torch.from_numpy(a["carried_c"].copy()).to(tr.device)
                     if "carried_c" in a else None)
    if "spectrum_v" in a:
        tr.spectrum.restore(torch.from_numpy(a["spectrum_v"].copy()),
                            torch.from_numpy(a["spectrum_rho"].copy()),
                            int(a["spectrum_rho_step"]))
    tr.watch._recent = deque(((int(s), None if f < 0 else FAULTS[f])
                              for s, f in zip(a["watch_step"], a["watch_fault"])),
                             maxlen=tr.watch.window)
    tr.watch.tripped = int(a["watch_tripped"])
    if "watch_first" in a:
        v = [int(x) for x in a["watch_first"]]
        tr.watch.first = Divergence(step=v[0], first_step=v[1], failed=v[2], seen=v[3],
                                    in_a_row=bool(v[4]),
                                    faults=tuple((f, n) for f, n in zip(FAULTS, v[5:]) if n))
    tr.step_index = state.step
    tr.last_loss = float(a["last_loss"])
    tr._gen_count = int(a["text_count"])
    session.counts.captured, session.counts.nonfinite, session.counts.clipped = \
        (int(x) for x in a["counts"])
    session.seconds = float(a["seconds"])


# -- on disk ----------------------------------------------------------------------------
def write_state(path: str | os.PathLike, state: RunState, generation: str | None = None) -> None:
    """Write ``state`` to ``path`` (a .npz; no pickle), flushed to disk, with the save's
    ``generation`` if given."""
    marked = {} if generation is None else {GENERATION: np.str_(generation)}
    with open(path, "wb") as f:
        np.savez_compressed(f, **state.arrays, **marked)
        f.flush()
        os.fsync(f.fileno())


def read_state(archive: Archive, where: str, session) -> RunState:
    """The state in ``archive`` (an open state.npz, called ``where`` in messages), for
    ``session``'s configuration: every member's header is checked against :func:`expected`
    before its data is read; RunFileError otherwise."""
    spec = expected(session)
    names = {*spec, "watch_step", "watch_fault",
             *(f"position_{j}" for j in range(MAX_POSITION_PARTS))}
    try:
        # A weight or optimiser state this configuration does not have: another model.
        foreign = [n for n in archive.names() if n.startswith(("weight_", "optim_"))
                   and n not in names]
        if foreign:
            raise RunFileError(f"{where}: '{foreign[0]}' is not part of a state of this run's "
                               "configuration (another model or optimiser)")
        declared = archive.headers(names)
        # A state written before σ_max was found by Lanczos holds subspace bases (N, H, p)
        # where there are now vectors (N, H): the tracker then starts afresh, decomposing
        # in full on the next step.
        if "spectrum_q" in archive.names() and "spectrum_v" in declared \
                and len(declared["spectrum_v"].shape) == 3:
            for name in ("spectrum_v", "spectrum_rho", "spectrum_rho_step"):
                declared.pop(name, None)
        _check(where, declared, spec)
        return RunState({name: archive.read(name) for name in declared})
    except ArchiveError as exc:
        raise RunFileError(f"{where}: {exc}") from None


def read_generation(archive: Archive, where: str) -> str | None:
    """The save an archive (a state.npz or capture.npz) belongs to; None in files from
    before saves were marked."""
    try:
        declared = archive.headers({GENERATION})
        if GENERATION not in declared:
            return None
        got = declared[GENERATION]
        if got.dtype.kind != "U" or got.shape != () or got.dtype.itemsize > 4 * 64:
            raise RunFileError(f"{where}: '{GENERATION}' is not the name of a save")
        return str(archive.read(GENERATION))
    except ArchiveError as exc:
        raise RunFileError(f"{where}: {exc}") from None


__all__ = ["RunState", "STATE_NPZ", "GENERATION", "capture_state", "restore_state",
           "check_state", "expected", "write_state", "read_state", "read_generation"]
