"""A run folder checked whole before a step is trained on it.

:func:`check_state_values` holds a state (``state.npz``, whose members' dtypes and shapes
:mod:`gradviz.engine.runs.runstate` has already checked) to the values a session writes:
steps and counts in range and consistent, finite weights and optimiser state (an Adam step
of at least 1), a stream position of the run's batch, live settings within their limits.
:func:`check_whole` then holds the state, run.json and capture.npz to each other: the
capture's shapes those of the run's model, its steps increasing and before the state's
step, its captures those the state counted, the summary's step count the state's.

Anything that does not fit is a :class:`~gradviz.engine.runs.runformat.RunFileError` of
one line naming the file and the field, raised before anything is changed; a state that
passes trains on without an error of its own making (tests/test_runcheck.py fuzzes every
field of a state). Qt-free; torch is needed only for a session, which the caller has.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gradviz.config import LIVE_FIELDS, ConfigError
from gradviz.engine.runs.runformat import RunFileError
from gradviz.engine.training.divergence import FAULTS, WINDOW

# The largest step count a run may have: float64 holds it exactly, and int64 arithmetic on
# it (the next step, a seed derived from it) cannot overflow.
MAX_STEP = 2**53
_NONNEGATIVE_OPTIM = ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum")


def _fail(where: str, name: str, problem: str) -> RunFileError:
    return RunFileError(f"{where}: '{name}' {problem}; the file is damaged or was not "
                        "written by gradviz")


def _int_in(a: dict, where: str, name: str, low: int, high: int) -> int:
    value = a[name]
    if value.dtype.kind not in "iu" or value.ndim != 0 or not low <= int(value) <= high:
        shown = value.item() if value.ndim == 0 else f"of shape {value.shape}"
        raise _fail(where, name, f"is {shown}, not a whole number from {low} to {high}")
    return int(value)


def _weight_of(member: str, session) -> str:
    """'(the weight weight_hh_l0) ' for the state member of a parameter, else ''."""
    names = session.trainer.param_names
    index = member.removeprefix("weight_")
    if member.startswith("weight_") and index.isdigit() and int(index) < len(names):
        return f"(the weight {names[int(index)]}) "
    return ""


def check_state_values(a: dict[str, np.ndarray], session, where: str) -> None:
    """RunFileError naming ``where`` (the state's file) and the member unless every value of
    the state's arrays ``a`` is one a session of ``session``'s configuration writes."""
    step = _int_in(a, where, "step", 0, MAX_STEP)
    counts = a["counts"]
    if np.any(counts < 0) or np.any(counts[1:] > counts[0]) or counts[0] > step:
        raise _fail(where, "counts", f"is {counts.tolist()}: captured, non-finite and clipped "
                    f"steps must be at least 0, the last two at most the first, and the first "
                    f"at most the {step} steps trained")
    _int_in(a, where, "text_count", 0, MAX_STEP)
    _int_in(a, where, "watch_tripped", 0, step)
    if not (np.isfinite(a["seconds"]) and a["seconds"] >= 0):
        raise _fail(where, "seconds", f"is {float(a['seconds'])}, not a time")
    for name, value in a.items():
        if name.startswith(("weight_", "optim_", "spectrum_", "position_")) \
                and value.dtype.kind == "f" and not np.isfinite(value).all():
            raise _fail(where, name, f"{_weight_of(name, session)}holds non-finite values (NaN "
                        "or infinity), which a saved run never has")
        if name.startswith("optim_"):
            key = name.removeprefix("optim_").split("_", 1)[1]
            if key == "step" and not (value.ndim == 0 and 1 <= value <= step
                                      and float(value) == int(value)):
                raise _fail(where, name, f"is {float(value)}: an optimiser's step count is a "
                            f"whole number from 1 to the {step} steps trained")
            if key in _NONNEGATIVE_OPTIM and np.any(value < 0):
                raise _fail(where, name, "holds negative values (it is a sum of squares)")
    spectral = [n for n in ("spectrum_v", "spectrum_rho", "spectrum_rho_step") if n in a]
    if len(spectral) not in (0, 3):
        raise _fail(where, spectral[0], "is there without the other spectrum_* members")
    if spectral:
        _int_in(a, where, "spectrum_rho_step", 0, step)
        if np.any(a["spectrum_rho"] < 0):
            raise _fail(where, "spectrum_rho", "holds negative spectral radii")
    steps, faults = a["watch_step"], a["watch_fault"]
    if len(steps) != len(faults) or len(steps) > WINDOW or np.any(steps < 0) \
            or np.any(steps >= max(step, 1)) or np.any(np.diff(steps) <= 0):
        raise _fail(where, "watch_step", f"is not the steps of a divergence window before step "
                    f"{step} (at most {WINDOW}, increasing, with one 'watch_fault' each)")
    if np.any(faults < -1) or np.any(faults >= len(FAULTS)):
        raise _fail(where, "watch_fault", f"holds faults outside -1 … {len(FAULTS) - 1}")
    if "watch_first" in a:
        first = a["watch_first"]
        if np.any(first < 0) or np.any(first[:4] > step) or first[4] > 1:
            raise _fail(where, "watch_first", "is not a divergence gradviz records")
    _check_positions(a, session, where)
    _check_live(a, session, where)


def _check_positions(a: dict[str, np.ndarray], session, where: str) -> None:
    """A stream position is one row per example of the run's batch."""
    batch = session.config.batch_size
    for name, value in a.items():
        if name.startswith("position_") and (value.ndim == 0 or value.shape[-1] != batch):
            raise _fail(where, name, f"has shape {value.shape}; a stream position of this "
                        f"run's batch of {batch} has {batch} entries per row")


def _check_live(a: dict[str, np.ndarray], session, where: str) -> None:
    for name in sorted(LIVE_FIELDS):
        value = a["live_" + name].item()
        try:
            session.config.replace(**{name: value})
        except ConfigError as exc:
            raise RunFileError(f"{where}: 'live_{name}': {exc}") from None


def check_whole(run, a: dict[str, np.ndarray], session) -> None:
    """RunFileError unless ``run`` (an opened run folder,
    :class:`~gradviz.engine.runs.runfile.SavedRun`), its state's arrays ``a`` (checked by
    :func:`check_state_values`) and ``session`` (a fresh session of its configuration) fit
    together: what the capture holds is what this model captures, up to the state's step."""
    capture, state_file = Path(run.folder) / "capture.npz", Path(run.state_file)
    json_file = Path(run.folder) / "run.json"
    tr, history, step = session.trainer, run.history, int(a["step"])
    names = tuple(str(s) for s in a["param_names"])
    if len(history):
        shape = (tr.net.layers, tr.net.directions, session.config.seq_len)
        if tuple(history.dh_norm.shape[1:]) != shape:
            raise RunFileError(f"{capture}: 'dh_norm_all' is of (layers, directions, timesteps) "
                               f"{tuple(history.dh_norm.shape[1:])}, but the run's configuration "
                               f"in run.json has {shape}")
        has_dc = history.dc_norm is not None
        if has_dc != bool(tr.net.cell.has_cell_state):
            raise RunFileError(f"{capture}: 'dc_norm_all' is {'present' if has_dc else 'absent'}"
                               f", but the run's cell ({session.config.cell}) "
                               f"{'has' if tr.net.cell.has_cell_state else 'has no'} cell state")
        if tuple(history.param_names) != names:
            raise RunFileError(f"{capture}: 'param_names' are not those of {state_file.name} "
                               "(the files are of two different runs)")
        if tuple(history.gate_names) != tuple(tr.net.cell.gate_names):
            raise RunFileError(f"{capture}: 'gate_names' {list(history.gate_names)} are not the "
                               f"{session.config.cell} cell's {list(tr.net.cell.gate_names)}")
        rows = history.step
        if rows[0] < 0 or np.any(np.diff(rows) <= 0) or rows[-1] >= step:
            raise RunFileError(f"{capture}: 'step' is not increasing from 0 up to before the "
                               f"{step} steps that {state_file.name} has trained")
        if int(history.count.sum()) != int(a["counts"][0]):
            raise RunFileError(f"{capture}: 'count' adds up to {int(history.count.sum())} "
                               f"captures, but {state_file.name} 'counts' says "
                               f"{int(a['counts'][0])}")
    elif int(a["counts"][0]):
        raise RunFileError(f"{capture}: holds no rows, but {state_file.name} 'counts' says "
                           f"{int(a['counts'][0])} captures")
    last = int(history.step[-1]) if len(history) else -1
    for kind, captures in (("latest_", (history.latest,) if history.latest else ()),
                           ("key_", run.keyframes.captures)):
        for cap in captures:
            if not 0 <= cap.step <= last:
                raise RunFileError(f"{capture}: '{kind}step' {cap.step} is not one of the rows' "
                                   f"steps (0 … {last})")
            if np.shape(cap.probe_h)[-1] != session.config.hidden:
                raise RunFileError(f"{capture}: '{kind}probe_h' is of {np.shape(cap.probe_h)[-1]} "
                                   f"hidden units; the run's configuration has "
                                   f"{session.config.hidden}")
    if any(not 0 <= s <= step for s, _ in run.texts):
        raise RunFileError(f"{capture}: 'text_step' holds steps outside 0 … {step}")
    done = run.summary.get("steps_done")
    if isinstance(done, int) and not isinstance(done, bool) and done != step:
        raise RunFileError(f"{json_file}: summary 'steps_done' is {done}, but {state_file.name} "
                           f"has trained {step} steps (the files are of two different saves)")


__all__ = ["check_state_values", "check_whole", "MAX_STEP"]
