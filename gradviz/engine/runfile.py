"""The run folder on disk: ``run.json`` and ``capture.npz``, written atomically, read
without pickle.

``run.json`` holds the schema, configuration, versions and summary; ``capture.npz`` the
arrays of a :class:`~gradviz.engine.history.History` and its latest full capture;
docs/run-format.md describes every key. :func:`save_run` writes both to temporary files
beside them and renames them into place, putting the old pair back if the second rename
fails; :func:`load_run` checks every array's kind and shape against the others and raises
:class:`RunFileError`, naming the file and the problem, for anything it does not expect.
Shapes: K = rows, L = layers, D = directions, T = timesteps, P = parameter tensors,
G = gates, H = hidden units.
"""
from __future__ import annotations

import json
import os
import platform
import zipfile
import zlib
from dataclasses import MISSING, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gradviz import __version__
from gradviz.config import ConfigError, RunConfig
from gradviz.engine.capture import Capture
from gradviz.engine.files import temp_beside
from gradviz.engine.history import FLAG_ROWS, FLOAT_ROWS, History

SCHEMA = "gradviz-run"
SCHEMA_VERSION = 1
RUN_JSON = "run.json"
CAPTURE_NPZ = "capture.npz"


class RunFileError(ValueError):
    """A run file is missing, unreadable or not what gradviz wrote; the message names
    the file and the problem."""


# -- capture.npz contents -------------------------------------------------------------
# Every array of the file, with its dtype kind and named dimensions; dimensions with the
# same letter must agree. Optional ones may be absent (dc_* for non-LSTM cells; latest_*
# when no full capture was kept; param_owner in files from before it was stored).
_ROW_SPEC: dict[str, tuple[str, tuple[str, ...]]] = {
    "step": ("i", ("K",)), "count": ("i", ("K",)),
    **{k: ("f", ("K",)) for k in FLOAT_ROWS},
    **{k: ("b", ("K",)) for k in FLAG_ROWS},
    "dh_norm": ("f", ("K", "T")),
    "dh_norm_all": ("f", ("K", "L", "D", "T")),
    "param_grad_norm": ("f", ("K", "P")),
    "param_names": ("U", ("P",)),
    "gate_names": ("U", ("G",)),
    "baseline": ("f", ()),
}
_ROW_OPTIONAL = {"dc_norm": ("f", ("K", "T")), "dc_norm_all": ("f", ("K", "L", "D", "T")),
                 "param_owner": ("i", ("P", "2"))}
_LATEST_SPEC: dict[str, tuple[str, tuple[str, ...]]] = {
    "step": ("i", ()), "loss": ("f", ()), "baseline": ("f", ()), "lr": ("f", ()),
    "clip": ("U", ()), "clip_threshold": ("f", ()),
    "dh_norm": ("f", ("L", "D", "T")),
    "gate_names": ("U", ("G",)), "gate_ranges": ("f", ("G", "2")),
    "gates": ("f", ("L", "D", "G", "T", "H")),
    "sat_low": ("f", ("L", "D", "G", "T")), "sat_high": ("f", ("L", "D", "G", "T")),
    "probe_h": ("f", ("L", "D", "T", "H")),
    "param_names": ("U", ("P",)), "param_grad_norm": ("f", ("P",)),
    "grad_norm": ("f", ()), "grad_norm_clipped": ("f", ()),
    "clipped": ("b", ()), "nonfinite": ("b", ()),
    "rho": ("f", ("L", "D", "R")), "sigma_max": ("f", ("L", "D", "R")),
    "rho_names": ("U", ("R",)), "events": ("U", ("E",)),
}
_LATEST_OPTIONAL = {"dc_norm": ("f", ("L", "D", "T")), "probe_c": ("f", ("L", "D", "T", "H")),
                    "rho_step": ("i", ())}
_NAME_FIELDS = ("gate_names", "param_names", "rho_names", "events")
_KIND_WORDS = {"i": "integers", "f": "floats", "b": "booleans", "U": "text"}


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
            if f.name in _NAME_FIELDS:
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
    folder.mkdir(parents=True, exist_ok=True)
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


def _read_run_json(path: Path) -> dict:
    """The validated contents of a run.json (config checked, summary a dict)."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise RunFileError(f"{path}: file not found; a run folder holds run.json and capture.npz") \
            from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{path}: cannot read: {exc}") from None
    except ValueError as exc:
        raise RunFileError(f"{path}: not valid JSON ({exc}); the file is damaged") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise RunFileError(f"{path}: not a gradviz run (no \"schema\": \"{SCHEMA}\")")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise RunFileError(f"{path}: schema_version {version!r} is not supported; this gradviz "
                           f"reads version {SCHEMA_VERSION} (a newer gradviz may open it)")
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


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise RunFileError(f"{path}: file not found; a run folder holds run.json and capture.npz") \
            from None
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    # Opened here rather than by np.load, which leaves its file open when the archive
    # turns out to be damaged.
    with handle:
        return _read_npz_from(path, handle)


def _read_npz_from(path: Path, handle) -> dict[str, np.ndarray]:
    # What zipfile and zlib raise for damaged archives (RuntimeError: "encrypted" flags).
    damaged = (OSError, EOFError, RuntimeError, zipfile.BadZipFile, zlib.error)
    try:
        npz = np.load(handle, allow_pickle=False)
    except ValueError:  # numpy's last guess for unknown bytes is a pickle, refused here
        raise RunFileError(f"{path}: damaged or not a numpy archive") from None
    except damaged as exc:
        raise RunFileError(f"{path}: damaged or truncated "
                           f"({str(exc) or type(exc).__name__})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        return {}  # a bare .npy array: reported by the caller as missing arrays
    try:
        with npz:
            arrays = {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise RunFileError(f"{path}: holds pickled (object) data, which gradviz never writes "
                               "and will not load") from None
        raise RunFileError(f"{path}: damaged ({exc})") from None
    except damaged as exc:
        raise RunFileError(f"{path}: damaged or truncated "
                           f"({str(exc) or type(exc).__name__})") from None
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):  # NpzFile hands other zip members over as bytes
            raise RunFileError(f"{path}: member '{name}' is not a numpy array")
    return arrays


def _check(path: Path, arrays: dict[str, np.ndarray], spec: dict, optional: dict,
           prefix: str, dims: dict[str, int]) -> None:
    """Check kinds and shapes of ``arrays`` against a spec, binding named dimensions."""
    for name, (kind, shape) in {**spec, **optional}.items():
        key = prefix + name
        if key not in arrays:
            if name in spec:
                raise RunFileError(f"{path}: array '{key}' is missing; the file is incomplete "
                                   "or was not written by gradviz")
            continue
        arr = arrays[key]
        if arr.dtype.kind != kind and not (kind == "i" and arr.dtype.kind == "u"):
            raise RunFileError(f"{path}: array '{key}' holds {arr.dtype} values; expected "
                               f"{_KIND_WORDS[kind]}")
        if arr.ndim != len(shape):
            raise RunFileError(f"{path}: array '{key}' has shape {arr.shape}; expected "
                               f"{len(shape)} dimension(s) ({', '.join(shape) or 'a scalar'})")
        for dim, size in zip(shape, arr.shape):
            want = int(dim) if dim.isdigit() else dims.setdefault(dim, size)
            if size != want:
                raise RunFileError(f"{path}: array '{key}' has shape {arr.shape}, but its {dim} "
                                   f"dimension should be {want} to match the other arrays")


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
        elif f.name in _NAME_FIELDS:
            values[f.name] = tuple(str(s) for s in value)
        elif f.name == "gate_ranges":
            values[f.name] = tuple((float(lo), float(hi)) for lo, hi in value)
        elif value.ndim == 0:
            values[f.name] = value.item()  # int, float, bool or str
        else:
            values[f.name] = value
    return Capture(**values)


def load_run(folder_or_run_json: str | os.PathLike,
             capacity: int = 4096) -> tuple[RunConfig, History, dict]:
    """Read a run folder (or its run.json): its config, its History and its summary.

    Raises :class:`RunFileError` naming the file and the problem if anything is
    missing, damaged, or not what gradviz writes.
    """
    json_path, npz_path = _run_paths(folder_or_run_json)
    doc = _read_run_json(json_path)
    arrays = _read_npz(npz_path)
    dims: dict[str, int] = {}
    _check(npz_path, arrays, _ROW_SPEC, _ROW_OPTIONAL, "", dims)
    if ("dc_norm" in arrays) != ("dc_norm_all" in arrays):
        raise RunFileError(f"{npz_path}: 'dc_norm' and 'dc_norm_all' must be both present or "
                           "both absent")
    if np.any(arrays["count"] < 1):
        raise RunFileError(f"{npz_path}: array 'count' holds values below 1")
    latest = None
    if any(name.startswith("latest_") for name in arrays):
        if dims["K"] == 0:
            raise RunFileError(f"{npz_path}: has a latest capture but no rows")
        _check(npz_path, arrays, _LATEST_SPEC, _LATEST_OPTIONAL, "latest_", dims)
    names = tuple(str(s) for s in arrays["param_names"])
    owners = _param_owners(npz_path, arrays, names, dims)
    if any(name.startswith("latest_") for name in arrays):
        latest = _latest_from(arrays, owners)
    rows = {name: arrays[name] for name in ("step", "count", *FLOAT_ROWS, *FLAG_ROWS)}
    rows["dh_norm"] = arrays["dh_norm_all"]
    if "dc_norm_all" in arrays:
        rows["dc_norm"] = arrays["dc_norm_all"]
    rows["param_grad_norm"] = arrays["param_grad_norm"]
    history = History(capacity)
    history.restore(rows, names, owners, tuple(str(s) for s in arrays["gate_names"]),
                    float(arrays["baseline"]), latest)
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
