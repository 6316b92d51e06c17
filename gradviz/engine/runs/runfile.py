"""The run folder on disk: ``run.json``, ``capture.npz`` and ``state.npz``, written
atomically, read without pickle and within bounds.

``run.json`` holds the schema, configuration, versions and summary; ``capture.npz`` the
arrays of a :class:`~gradviz.engine.runs.history.History`, its latest full capture, the
:class:`~gradviz.engine.runs.keyframes.Keyframes`, the sampled text and the colour scales
(:mod:`gradviz.engine.runs.runextras`); ``state.npz`` what continuing the run needs
(:mod:`gradviz.engine.runs.runstate`). docs/run-format.md describes every key, and
:mod:`gradviz.engine.runs.runformat` holds the arrays' specification and the format's bounds.
:func:`save_run` writes them to temporary files beside them and renames them into place
under the folder's lock and a journal, so that the folder changes as a unit
(:mod:`gradviz.engine.runs.runsave`); every file names the save it belongs to. :func:`open_run` (and
:func:`load_run`, its older, smaller answer) opens only regular files of bounded size, reads
capture.npz header first (:mod:`gradviz.engine.runs.npzfile`), checks every array's kind and
shape against the others and the bounds before reading its data, and raises
:class:`RunFileError`, naming the file and the problem, for anything it does not expect:
never another exception. Shapes: K = rows, L = layers, D = directions, T = timesteps,
P = parameter tensors, G = gates, H = hidden units.
"""
from __future__ import annotations

import json
import os
import platform
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gradviz import __version__
from gradviz.config import RunConfig
from gradviz.engine.runs.files import replace_together, temp_beside
from gradviz.engine.runs.history import (DX_ROW, FLAG_ROWS, FLOAT_ROWS, HISTORY_CAPACITY,
                                         LEN_ROW, METRIC_ROW, RANGE_ARRAYS, THEORY_ROWS,
                                         History)
from gradviz.engine.runs.keyframes import KEYFRAME_CAPACITY, Keyframes
from gradviz.engine.runs.npzfile import Archive, ArchiveError
from gradviz.engine.runs.runextras import (Scales, TextSamples, capture_arrays, capture_from,
                                      extra_arrays, extras_from, keyframe_arrays, keyframes_from)
from gradviz.engine.runs.runformat import (KNOWN_ARRAYS, MAX_NPZ_BYTES, MAX_RUN_JSON_BYTES,
                                      RunFileError, check_declared, check_values)
from gradviz.engine.runs.recorded import not_trainable
from gradviz.engine.runs.runjson import (CAPTURE_NPZ, READABLE_VERSIONS, RUN_JSON, SCHEMA,
                                        SCHEMA_VERSION, TRAINED_SCHEMA_VERSION, open_bounded,
                                        read_run_json, run_paths)
from gradviz.engine.runs.runsave import commit, folder_lock, new_generation, recover, same_save
from gradviz.engine.runs.runstate import (GENERATION, STATE_NPZ, RunState, read_generation,
                                        read_state, write_state)

# How long a save waits for another process writing the same folder.
LOCK_WAIT_S = 2.0


def _history_arrays(history: History) -> dict[str, np.ndarray]:
    """Everything capture.npz holds (docs/run-format.md), copied out of ``history``."""
    out = {name: np.array(getattr(history, name))
           for name in ("step", "count", *FLOAT_ROWS, METRIC_ROW, *RANGE_ARRAYS, *FLAG_ROWS)}
    out["metric_name"] = np.str_(history.metric_name)
    out["dh_norm_all"] = np.array(history.dh_norm)
    # The top layer's forward direction, for readers who want one (K, T) picture.
    out["dh_norm"] = (out["dh_norm_all"][:, -1, 0, :] if len(history)
                      else np.empty((0, 0), np.float32))
    if history.dc_norm is not None:
        out["dc_norm_all"] = np.array(history.dc_norm)
        out["dc_norm"] = out["dc_norm_all"][:, -1, 0, :]
    out["param_grad_norm"] = np.array(history.param_grad_norm)
    if len(history):
        out.update({name: np.array(getattr(history, name)) for name in THEORY_ROWS})
        out[DX_ROW] = np.array(history.dx_norm)
        out[LEN_ROW] = np.array(history.time_len)
    out["param_names"] = np.array(history.param_names, dtype=str)
    # (layer, direction) of each parameter, -1 for the readout's.
    out["param_owner"] = np.array([(-1, -1) if o is None else o for o in history.param_owners],
                                  dtype=np.int64).reshape(-1, 2)
    out["gate_names"] = np.array(history.gate_names, dtype=str)
    if history.layer_names:             # a trace's marked names, one per "layer"
        out["layer_names"] = np.array(history.layer_names, dtype=str)
    out["baseline"] = np.float64(history.baseline)
    if history.latest is not None:
        out.update({"latest_" + k: v for k, v in capture_arrays(history.latest).items()})
    return out


# -- saving ---------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """Plain JSON values; non-finite numbers become null (JSON has no nan)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def save_run(folder: str | os.PathLike, config: RunConfig | None, history: History,
             summary: dict | None = None, *, keyframes: Keyframes | None = None,
             texts: TextSamples = (), scales: Scales | None = None,
             state: RunState | None = None, recorded: dict | None = None) -> None:
    """Write ``folder/run.json``, ``folder/capture.npz`` and, with a ``state``,
    ``folder/state.npz`` (folder and parents created).

    ``keyframes``, ``texts`` ((step, text) pairs) and ``scales`` (name: (low, high)) join
    the history in capture.npz; ``state`` (:func:`gradviz.engine.runs.runstate.capture_state`)
    is what continuing the run needs. All are written to temporary files in the folder
    first and renamed into place, run.json last, so an existing run there stays intact if
    anything fails, and a failed save leaves no temporary file and none of the folders it
    created behind; a save killed on the way is finished or dropped whole by the next open
    or save (:mod:`gradviz.engine.runs.runsave`). Another process writing ``folder`` is
    waited for 2 s, then :class:`~gradviz.engine.runs.runsave.RunFolderBusy` (an OSError).
    A state.npz of an earlier save is removed when there is no ``state``.
    ``recorded``: for a run recorded from Python (:mod:`gradviz.engine.runs.recorded`), what
    was recorded, with ``config`` None (such a run has no gradviz settings, and no state).
    """
    if (config is None) == (recorded is None) or (recorded is not None and state is not None):
        raise ValueError("save_run: give a config, or for a run recorded from Python "
                         "recorded= and no config and no state")
    import torch  # only for the version record; the engine needs it anyway

    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]   # deepest first
    doc = {
        "schema": SCHEMA,
        "schema_version": TRAINED_SCHEMA_VERSION if recorded is None else SCHEMA_VERSION,
        "config": None if config is None else config.to_dict(),
        "versions": {"gradviz": __version__, "python": platform.python_version(),
                     "torch": torch.__version__, "numpy": np.__version__},
        "summary": _jsonable(dict(summary or {})),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "state": None if state is None else STATE_NPZ,
    }
    if recorded is not None:
        doc["recorded"] = _jsonable(dict(recorded))
    generation = doc["generation"] = new_generation()
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    arrays = {**_history_arrays(history), **keyframe_arrays(keyframes),
              **extra_arrays(list(texts), scales), GENERATION: np.str_(generation)}
    targets = ([folder / STATE_NPZ] if state is not None else []) \
        + [folder / CAPTURE_NPZ, folder / RUN_JSON]
    try:
        folder.mkdir(parents=True, exist_ok=True)    # a full disk may refuse a folder too
        with folder_lock(folder, LOCK_WAIT_S), ExitStack() as stack:
            recover(folder)       # a killed save's renames finished, its leftovers removed
            temps = [stack.enter_context(temp_beside(t)) for t in targets]
            if state is not None:
                write_state(temps[0], state, generation)
            with open(temps[-2], "wb") as f:
                np.savez_compressed(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            with open(temps[-1], "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            commit(folder, list(zip(temps, targets)), replace_together)
            if state is None:
                with suppress(OSError):  # run.json names no state: an old one is only clutter
                    (folder / STATE_NPZ).unlink(missing_ok=True)
    except BaseException:
        for made in created:        # a failed save leaves no new, empty folders behind
            try:
                made.rmdir()
            except FileNotFoundError:
                continue            # not made: the save failed before reaching it
            except OSError:
                break
        raise


# -- loading --------------------------------------------------------------------------
def load_run_config(folder_or_run_json: str | os.PathLike) -> RunConfig:
    """Only the configuration of a run (capture.npz is not read); raises RunFileError,
    also for a run recorded from Python, which has none (its ``recorded`` says so)."""
    path = run_paths(folder_or_run_json)[0]
    recover(path.parent)
    doc = read_run_json(path)
    if doc["recorded"] is not None:
        raise not_trainable(path.parent, doc["recorded"])
    return doc["config"]


def check_run(folder_or_run_json: str | os.PathLike) -> dict:
    """The checked run.json of a run (capture.npz is not read): ``config`` (None for a run
    recorded from Python), ``recorded``, ``summary``, …; raises RunFileError."""
    path = run_paths(folder_or_run_json)[0]
    recover(path.parent)
    return read_run_json(path)


def _read_npz(path: Path, history: History,
              keyframes: Keyframes) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The arrays of capture.npz that the format names, each checked against the format
    from its header before any is read (members of other names are never read), and the
    sizes of the named dimensions."""
    handle, size = open_bounded(path, MAX_NPZ_BYTES, "a capture.npz may have (under 2 GiB)")
    try:
        with handle, Archive(handle, size) as archive:
            declared = archive.headers(KNOWN_ARRAYS)
            dims = check_declared(path, declared, history, keyframes)
            arrays = {name: archive.read(name) for name in declared}
    except ArchiveError as exc:
        raise RunFileError(f"{path}: {exc}") from None
    check_values(path, arrays)
    return arrays, dims


def load_run(folder_or_run_json: str | os.PathLike,
             capacity: int = HISTORY_CAPACITY) -> tuple[RunConfig, History, dict]:
    """Read a run folder (or its run.json): its config, its History and its summary.

    Raises :class:`RunFileError` naming the file and the problem if anything is
    missing, damaged, or not what gradviz writes.
    """
    run = open_run(folder_or_run_json, capacity)
    return run.config, run.history, run.summary


@dataclass
class SavedRun:
    """A run folder as :func:`open_run` read it. ``texts``: (step, sampled text) pairs,
    oldest first; ``scales``: the views' colour scales, name: (low, high). ``state_file``:
    where its state.npz is (read it with :func:`load_run_state`), None if it was saved
    without one (the app's runs before schema 2, or a save without a state): such a run
    opens, but cannot be continued. ``recorded``: for a run recorded from Python, what was
    recorded (:mod:`gradviz.engine.runs.recorded`); its ``config`` is then None, for it
    was not trained with gradviz settings."""
    folder: Path
    config: RunConfig | None
    history: History
    keyframes: Keyframes
    summary: dict
    texts: TextSamples
    scales: Scales
    schema_version: int
    state_file: Path | None
    generation: str | None = None      # the save it is (run.json's); None before they were named
    recorded: dict | None = None

    @property
    def can_continue(self) -> bool:
        return self.state_file is not None and self.recorded is None

    @property
    def from_python(self) -> bool:
        """Whether it was recorded from Python (gradviz.watch) rather than trained by gradviz."""
        return self.recorded is not None


def open_run(folder_or_run_json: str | os.PathLike, capacity: int = HISTORY_CAPACITY,
             keyframe_capacity: int = KEYFRAME_CAPACITY) -> SavedRun:
    """Read everything of a run folder (or its run.json) but its state.npz; RunFileError
    naming the file and the problem if anything is missing, damaged, or not what gradviz
    writes. A run of schema 1 has no keyframes but its latest capture, no text, no scales."""
    json_path, npz_path = run_paths(folder_or_run_json)
    recover(json_path.parent)         # a killed save finished, its leftovers removed
    doc = read_run_json(json_path)
    history, keyframes = History(capacity), Keyframes(keyframe_capacity)
    try:
        arrays, dims = _read_npz(npz_path, history, keyframes)
        same_save(npz_path, doc.get("generation"),
                   str(arrays["generation"]) if "generation" in arrays else None)
        names = tuple(str(s) for s in arrays["param_names"])
        owners = _param_owners(npz_path, arrays, names, dims)
        latest_arrays = {k.removeprefix("latest_"): v for k, v in arrays.items()
                         if k.startswith("latest_")}
        latest = capture_from(latest_arrays, owners) if latest_arrays else None
        rows = {name: arrays[name] for name in ("step", "count", *FLOAT_ROWS, *FLAG_ROWS)}
        # A file from before the task's metric was kept has none: nan, as for a task without.
        rows[METRIC_ROW] = arrays.get(METRIC_ROW, np.full(len(rows["step"]), np.nan))
        rows["dh_norm"] = arrays["dh_norm_all"]
        if "dc_norm_all" in arrays:
            rows["dc_norm"] = arrays["dc_norm_all"]
        rows["param_grad_norm"] = arrays["param_grad_norm"]
        rows.update({name: arrays[name] for name in (*THEORY_ROWS, DX_ROW, LEN_ROW,
                                                     *RANGE_ARRAYS)
                     if name in arrays})
        history.restore(rows, names, owners, tuple(str(s) for s in arrays["gate_names"]),
                        float(arrays["baseline"]), latest,
                        str(arrays.get("metric_name", "")))
        if "layer_names" in arrays and len(arrays["layer_names"]) == history.dh_norm.shape[1]:
            history.layer_names = tuple(str(s) for s in arrays["layer_names"])
        keyframes_from(npz_path, arrays, owners, keyframes)
        if not len(keyframes) and latest is not None:
            keyframes.add(latest)
        texts, scales = extras_from(arrays)
    except MemoryError:
        raise RunFileError(f"{npz_path}: too large for the memory this machine has free") \
            from None
    state = doc.get("state")
    return SavedRun(json_path.parent, doc["config"], history, keyframes, doc["summary"], texts,
                    scales, doc["schema_version"],
                    None if state is None else json_path.parent / STATE_NPZ,
                    doc.get("generation"), doc["recorded"])



def load_run_state(run: SavedRun | str | os.PathLike, session) -> RunState:
    """The state.npz of ``run`` (opened, or its folder or run.json, of which only run.json
    is read), checked for ``session`` (a fresh session of the run's configuration) from its
    headers before its data is read; RunFileError naming the file if the run has none, or
    it is missing, damaged or of another model."""
    if not isinstance(run, SavedRun):
        json_path = run_paths(run)[0]
        recover(json_path.parent)
        doc = read_run_json(json_path)
        run = SavedRun(json_path.parent, doc["config"], History(), Keyframes(), doc["summary"],
                       [], {}, doc["schema_version"],
                       None if doc.get("state") is None else json_path.parent / STATE_NPZ,
                       doc.get("generation"), doc["recorded"])
    if run.recorded is not None:
        raise not_trainable(run.folder, run.recorded)
    if run.state_file is None:
        raise RunFileError(f"{run.folder}: saved without weights and optimiser state "
                           f"(schema {run.schema_version}, or saved without them), so it "
                           "can be opened but not continued")
    path = run.state_file
    handle, size = open_bounded(path, MAX_NPZ_BYTES, "a state.npz may have (under 2 GiB)")
    try:
        with handle, Archive(handle, size) as archive:
            state = read_state(archive, str(path), session)
            same_save(path, run.generation, read_generation(archive, str(path)))
            return state
    except ArchiveError as exc:
        raise RunFileError(f"{path}: {exc}") from None
    except MemoryError:
        raise RunFileError(f"{path}: too large for the memory this machine has free") from None


def _param_owners(path: Path, arrays: dict[str, np.ndarray], names: tuple[str, ...],
                  dims: dict[str, int]) -> tuple[tuple[int, int] | None, ...]:
    """The (layer, direction) of each parameter from a validated ``param_owner`` (P, 2),
    or, in a file from before it was stored, from the parameters' names."""
    if "param_owner" not in arrays:
        # Imported here: the network (and torch) is needed only for such older files.
        from gradviz.engine.model.network import owners_from_names
        return owners_from_names(names)
    layer, direction = arrays["param_owner"].astype(np.int64).T
    none = (layer == -1) & (direction == -1)
    known = (0 <= layer) & (layer < dims["L"]) & (0 <= direction) & (direction < dims["D"])
    if not np.all(none | known):
        raise RunFileError(f"{path}: array 'param_owner' holds a (layer, direction) that is "
                           f"neither (-1, -1) nor within the run's {dims['L']} layer(s) and "
                           f"{dims['D']} direction(s)")
    return tuple(None if n else (int(k), int(d)) for n, k, d in zip(none, layer, direction))


__all__ = ["RunFileError", "SavedRun", "save_run", "load_run", "open_run", "load_run_state",
           "load_run_config", "check_run", "SCHEMA", "SCHEMA_VERSION", "READABLE_VERSIONS"]
