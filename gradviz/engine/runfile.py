"""The run folder on disk: ``run.json`` and ``capture.npz``, written atomically, read
without pickle and within bounds.

``run.json`` holds the schema, configuration, versions and summary; ``capture.npz`` the
arrays of a :class:`~gradviz.engine.history.History` and its latest full capture;
docs/run-format.md describes every key, and :mod:`gradviz.engine.runformat` holds the
arrays' specification and the format's bounds. :func:`save_run` writes both to temporary
files beside them and renames them into place, putting the old pair back if the second
rename fails. :func:`load_run` opens only regular files of bounded size, reads
capture.npz header first (:mod:`gradviz.engine.npzfile`), checks every array's kind and
shape against the others and the bounds before reading its data, and raises
:class:`RunFileError`, naming the file and the problem, for anything it does not expect:
never another exception. Shapes: K = rows, L = layers, D = directions, T = timesteps,
P = parameter tensors, G = gates, H = hidden units.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import MISSING, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from gradviz import __version__
from gradviz.config import ConfigError, RunConfig
from gradviz.engine.capture import Capture
from gradviz.engine.files import NotRegularFileError, open_regular, temp_beside
from gradviz.engine.history import FLAG_ROWS, FLOAT_ROWS, HISTORY_CAPACITY, THEORY_ROWS, History
from gradviz.engine.npzfile import Archive, ArchiveError
from gradviz.engine.runformat import (KNOWN_ARRAYS, MAX_NPZ_BYTES, MAX_RUN_JSON_BYTES,
                                      NAME_FIELDS, RunFileError, check_declared, check_values)

SCHEMA = "gradviz-run"
SCHEMA_VERSION = 2
# Version 1 lacks the rows of THEORY_ROWS; a reader fills them with NaN.
READABLE_VERSIONS = (1, 2)
RUN_JSON = "run.json"
CAPTURE_NPZ = "capture.npz"


def _names(values: tuple[str, ...] | list[str]) -> np.ndarray:
    return np.array(list(values), dtype=str)


def _history_arrays(history: History) -> dict[str, np.ndarray]:
    """Everything capture.npz holds (docs/run-format.md), copied out of ``history``."""
    out = {name: np.array(getattr(history, name))
           for name in ("step", "count", *FLOAT_ROWS, *FLAG_ROWS)}
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
    out["param_names"] = _names(history.param_names)
    # (layer, direction) of each parameter, -1 for the readout's.
    out["param_owner"] = np.array([(-1, -1) if o is None else o for o in history.param_owners],
                                  dtype=np.int64).reshape(-1, 2)
    out["gate_names"] = _names(history.gate_names)
    out["baseline"] = np.float64(history.baseline)
    cap = history.latest
    if cap is not None:
        for f in fields(Capture):
            value = getattr(cap, f.name)
            if value is None or f.name == "param_owners":   # stored once, as param_owner
                continue
            if f.name in NAME_FIELDS:
                value = _names(value)
            elif f.name == "gate_ranges":
                value = np.array(value, dtype=np.float64).reshape(-1, 2)
            elif f.name == "clip":
                value = np.str_(value)
            out["latest_" + f.name] = np.asarray(value)
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


def save_run(folder: str | os.PathLike, config: RunConfig, history: History,
             summary: dict | None = None) -> None:
    """Write ``folder/run.json`` and ``folder/capture.npz`` (folder and parents created).

    Both are written to temporary files in the folder first and renamed into place, so
    an existing run there stays intact if anything fails, and a failed save leaves no
    temporary file and none of the folders it created behind.
    """
    import torch  # only for the version record; the engine needs it anyway

    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]   # deepest first
    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "config": config.to_dict(),
        "versions": {"gradviz": __version__, "python": platform.python_version(),
                     "torch": torch.__version__, "numpy": np.__version__},
        "summary": _jsonable(dict(summary or {})),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    arrays = _history_arrays(history)
    npz, run_json = folder / CAPTURE_NPZ, folder / RUN_JSON
    try:
        folder.mkdir(parents=True, exist_ok=True)    # a full disk may refuse a folder too
        with temp_beside(npz) as npz_tmp, temp_beside(run_json) as json_tmp:
            with open(npz_tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            with open(json_tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            _replace_pair(npz_tmp, npz, json_tmp, run_json)
    except BaseException:
        for made in created:        # a failed save leaves no new, empty folders behind
            try:
                made.rmdir()
            except FileNotFoundError:
                continue            # not made: the save failed before reaching it
            except OSError:
                break
        raise


def _replace_pair(npz_tmp: str, npz: Path, json_tmp: str, run_json: Path) -> None:
    """Rename both temporary files into place. Two renames are not one atomic step: the old
    capture.npz keeps a second name (a hard link) until run.json is in place too, so that a
    failure between them restores the old pair."""
    with temp_beside(npz) as aside:
        kept = _link(npz, aside)
        os.replace(npz_tmp, npz)
        try:
            os.replace(json_tmp, run_json)
        except BaseException:
            if kept:
                os.replace(aside, npz)
            raise


def _link(path: Path, aside: str) -> bool:
    """Give ``path`` the second name ``aside``, a temporary file's; False if ``path`` does
    not exist or the file system has no hard links."""
    if not path.exists():
        return False
    os.remove(aside)
    try:
        os.link(path, aside)
    except OSError:
        return False
    return True


# -- loading --------------------------------------------------------------------------
def _run_paths(folder_or_run_json: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(folder_or_run_json)
    if p.is_dir():
        return p / RUN_JSON, p / CAPTURE_NPZ
    if p.suffix.lower() == ".json":
        return p, p.parent / CAPTURE_NPZ
    if not p.exists():
        raise RunFileError(f"{p}: no such run folder")
    raise RunFileError(f"{p}: not a run folder or run.json file")


def _open(path: Path, limit: int, most: str) -> tuple[BinaryIO, int]:
    """``path`` opened, and its size, if it is a regular file of at most ``limit`` bytes
    (``most`` says how much, in words); a RunFileError otherwise."""
    try:
        handle, size = open_regular(path)
    except FileNotFoundError:
        raise RunFileError(f"{path}: file not found; a run folder holds run.json and capture.npz") \
            from None
    except NotRegularFileError as exc:            # "not a regular file (a FIFO)"
        raise RunFileError(f"{path}: {exc.strerror}") from None
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if size > limit:
        handle.close()
        raise RunFileError(f"{path}: {size} bytes, more than {most}")
    return handle, size


def _read_run_json(path: Path) -> dict:
    """The validated contents of a run.json (config checked, summary a dict)."""
    most = f"a run.json may have ({MAX_RUN_JSON_BYTES // 2**20} MiB)"
    handle, _ = _open(path, MAX_RUN_JSON_BYTES, most)
    try:
        with handle:
            data = handle.read(MAX_RUN_JSON_BYTES + 1)     # it may have grown since
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_RUN_JSON_BYTES:
        raise RunFileError(f"{path}: more than {most}")
    try:
        doc = json.loads(data.decode("utf-8-sig"))          # a byte order mark is no damage
    except UnicodeDecodeError as exc:
        raise RunFileError(f"{path}: cannot read: {exc}") from None
    except RecursionError:
        raise RunFileError(f"{path}: nested too deeply (a gradviz run.json is only a few "
                           "levels deep)") from None
    except ValueError as exc:
        raise RunFileError(f"{path}: not valid JSON ({exc}); the file is damaged") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise RunFileError(f"{path}: not a gradviz run (no \"schema\": \"{SCHEMA}\")")
    version = doc.get("schema_version")
    if type(version) is not int or version not in READABLE_VERSIONS:    # not 1.0, not true
        raise RunFileError(f"{path}: schema_version {version!r} is not supported; this gradviz "
                           f"reads versions {', '.join(map(str, READABLE_VERSIONS))} (a newer "
                           "gradviz may open it)")
    for key, kind in (("config", dict), ("versions", dict), ("summary", dict), ("created", str)):
        if not isinstance(doc.get(key), kind):
            raise RunFileError(f"{path}: \"{key}\" is missing or not a JSON "
                               f"{'object' if kind is dict else 'string'}")
    try:
        doc["config"] = RunConfig.from_dict(doc["config"])
    except ConfigError as exc:
        raise RunFileError(f"{path}: config: {exc}") from None
    return doc


def load_run_config(folder_or_run_json: str | os.PathLike) -> RunConfig:
    """Only the configuration of a run (capture.npz is not read); raises RunFileError."""
    return _read_run_json(_run_paths(folder_or_run_json)[0])["config"]


def _read_npz(path: Path, history: History) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The arrays of capture.npz that the format names, each checked against the format
    from its header before any is read (members of other names are never read), and the
    sizes of the named dimensions."""
    handle, size = _open(path, MAX_NPZ_BYTES, "a capture.npz may have (under 2 GiB)")
    try:
        with handle, Archive(handle, size) as archive:
            declared = archive.headers(KNOWN_ARRAYS)
            dims = check_declared(path, declared, history)
            arrays = {name: archive.read(name) for name in declared}
    except ArchiveError as exc:
        raise RunFileError(f"{path}: {exc}") from None
    check_values(path, arrays)
    return arrays, dims


def _latest_from(arrays: dict[str, np.ndarray], owners: tuple) -> Capture:
    """The latest full capture, from validated ``latest_*`` arrays and the run's owners."""
    values: dict[str, Any] = {"param_owners": owners}
    for f in fields(Capture):
        value = arrays.get("latest_" + f.name)
        if f.name == "param_owners":
            continue
        if value is None:
            if f.default is MISSING and f.default_factory is MISSING:
                values[f.name] = None  # an optional array (dc_norm, probe_c) not stored
        elif f.name in NAME_FIELDS:
            values[f.name] = tuple(str(s) for s in value)
        elif f.name == "gate_ranges":
            values[f.name] = tuple((float(lo), float(hi)) for lo, hi in value)
        elif value.ndim == 0:
            values[f.name] = value.item()  # int, float, bool or str
        else:
            values[f.name] = value
    return Capture(**values)


def load_run(folder_or_run_json: str | os.PathLike,
             capacity: int = HISTORY_CAPACITY) -> tuple[RunConfig, History, dict]:
    """Read a run folder (or its run.json): its config, its History and its summary.

    Raises :class:`RunFileError` naming the file and the problem if anything is
    missing, damaged, or not what gradviz writes.
    """
    json_path, npz_path = _run_paths(folder_or_run_json)
    doc = _read_run_json(json_path)
    history = History(capacity)
    try:
        arrays, dims = _read_npz(npz_path, history)
        names = tuple(str(s) for s in arrays["param_names"])
        owners = _param_owners(npz_path, arrays, names, dims)
        latest = (_latest_from(arrays, owners) if any(k.startswith("latest_") for k in arrays)
                  else None)
        rows = {name: arrays[name] for name in ("step", "count", *FLOAT_ROWS, *FLAG_ROWS)}
        rows["dh_norm"] = arrays["dh_norm_all"]
        if "dc_norm_all" in arrays:
            rows["dc_norm"] = arrays["dc_norm_all"]
        rows["param_grad_norm"] = arrays["param_grad_norm"]
        rows.update({name: arrays[name] for name in THEORY_ROWS if name in arrays})
        history.restore(rows, names, owners, tuple(str(s) for s in arrays["gate_names"]),
                        float(arrays["baseline"]), latest)
    except MemoryError:
        raise RunFileError(f"{npz_path}: too large for the memory this machine has free") \
            from None
    return doc["config"], history, doc["summary"]


def _param_owners(path: Path, arrays: dict[str, np.ndarray], names: tuple[str, ...],
                  dims: dict[str, int]) -> tuple[tuple[int, int] | None, ...]:
    """The (layer, direction) of each parameter from a validated ``param_owner`` (P, 2),
    or, in a file from before it was stored, from the parameters' names."""
    if "param_owner" not in arrays:
        # Imported here: the network (and torch) is needed only for such older files.
        from gradviz.engine.network import owners_from_names
        return owners_from_names(names)
    layer, direction = arrays["param_owner"].astype(np.int64).T
    none = (layer == -1) & (direction == -1)
    known = (0 <= layer) & (layer < dims["L"]) & (0 <= direction) & (direction < dims["D"])
    if not np.all(none | known):
        raise RunFileError(f"{path}: array 'param_owner' holds a (layer, direction) that is "
                           f"neither (-1, -1) nor within the run's {dims['L']} layer(s) and "
                           f"{dims['D']} direction(s)")
    return tuple(None if n else (int(k), int(d)) for n, k, d in zip(none, layer, direction))


__all__ = ["RunFileError", "save_run", "load_run", "load_run_config", "SCHEMA", "SCHEMA_VERSION"]
