"""The record of a run: a bounded history of captures, and the run folder on disk.

:class:`History` keeps one row per capture, oldest first, in preallocated numpy arrays.
When it is full, the oldest half of its rows is merged into at most a quarter as many
rows (see :meth:`History._compact`), so a run of any length fits in bounded memory and
no capture is ever dropped: it is averaged into a coarser row instead.

A run folder holds ``run.json`` (schema, configuration, versions, summary) and
``capture.npz`` (the history's arrays); docs/run-format.md describes every key. Both are
written atomically and read without pickle. Shapes: K = rows, L = layers,
D = directions, T = timesteps, P = parameter tensors, G = gates, H = hidden units.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
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

SCHEMA = "gradviz-run"
SCHEMA_VERSION = 1
RUN_JSON = "run.json"
CAPTURE_NPZ = "capture.npz"

# Per-row scalars: float64 ones are averaged when rows merge, boolean flags OR'ed.
_FLOAT_ROWS = ("loss", "grad_norm", "grad_norm_clipped", "lr", "clip_threshold")
_FLAG_ROWS = ("clipped", "nonfinite", "clip_by_norm")


class RunFileError(ValueError):
    """A run file is missing, unreadable or not what gradviz wrote; the message names
    the file and the problem."""


def _row_property(name: str, dtype: type, doc: str) -> property:
    return property(lambda self: self._rows_of(name, (0,), dtype), doc=doc)


class History:
    """Bounded record of captures, one row per capture until full, oldest row first.

    The arrays below are views of the first ``len(self)`` rows (do not mutate them):
    ``step``/``count`` (K,) int64, ``loss``/``grad_norm``/``grad_norm_clipped``/``lr``/
    ``clip_threshold`` (K,) float64, ``clipped``/``nonfinite``/``clip_by_norm`` (K,) bool,
    ``dh_norm`` (K, L, D, T) float32, ``dc_norm`` (K, L, D, T) float32 or None,
    ``param_grad_norm`` (K, P) float32. A merged row has ``step`` = its last step,
    ``count`` = captures it holds, means weighted by count over finite values, flags OR'ed.

    ``capacity`` bounds the rows; if that many rows of this capture's size would pass
    ``max_bytes``, fewer rows are kept (at least 4) so a long T cannot exhaust memory.
    """

    def __init__(self, capacity: int = 4096, max_bytes: int = 256 * 2**20):
        if capacity < 2:
            raise ValueError(f"History capacity must be at least 2, got {capacity}")
        self.capacity = int(capacity)
        self.max_bytes = int(max_bytes)
        self.clear()

    def clear(self) -> None:
        """Forget every row and the latest capture."""
        self._n = 0
        self._rows = 0
        self._key: tuple | None = None
        self._a: dict[str, np.ndarray] = {}
        self.latest: Capture | None = None
        self.param_names: tuple[str, ...] = ()
        self.gate_names: tuple[str, ...] = ()
        self.baseline = float("nan")

    def __len__(self) -> int:
        return self._n

    # -- appending --------------------------------------------------------------------
    @staticmethod
    def _key_of(cap: Capture) -> tuple:
        # Captures with another shape, parameter set or task belong to another model:
        # they start a new history rather than being mixed into this one.
        baseline = "nan" if cap.baseline != cap.baseline else float(cap.baseline)
        return (np.shape(cap.dh_norm), None if cap.dc_norm is None else np.shape(cap.dc_norm),
                np.shape(cap.param_grad_norm), tuple(cap.param_names), tuple(cap.gate_names),
                baseline)

    def _allocate(self, lzt: tuple[int, ...], has_dc: bool, p: int, rows: int) -> None:
        row_bytes = 8 * (2 + len(_FLOAT_ROWS)) + len(_FLAG_ROWS) \
            + 4 * (int(np.prod(lzt)) * (2 if has_dc else 1) + p)
        self._rows = max(rows, min(self.capacity, max(4, self.max_bytes // row_bytes)))
        # np.empty only reserves address space; pages are touched as rows are written.
        a = {"step": np.empty(self._rows, np.int64), "count": np.empty(self._rows, np.int64)}
        a.update({k: np.empty(self._rows, np.float64) for k in _FLOAT_ROWS})
        a.update({k: np.empty(self._rows, np.bool_) for k in _FLAG_ROWS})
        a["dh_norm"] = np.empty((self._rows, *lzt), np.float32)
        if has_dc:
            a["dc_norm"] = np.empty((self._rows, *lzt), np.float32)
        a["param_grad_norm"] = np.empty((self._rows, p), np.float32)
        self._a = a

    def append(self, cap: Capture) -> None:
        """Add one capture (light or full) as a new row; O(1) amortised."""
        key = self._key_of(cap)
        if self._key is not None and key != self._key:
            self.clear()
        if self._key is None:
            self._allocate(key[0], key[1] is not None, key[2][0], 0)
            self._key = key
            self.param_names = tuple(cap.param_names)
            self.gate_names = tuple(cap.gate_names)
            self.baseline = float(cap.baseline)
        if self._n == self._rows:
            self._compact()
        i, a = self._n, self._a
        a["step"][i] = cap.step
        a["count"][i] = 1
        for k in _FLOAT_ROWS:
            a[k][i] = getattr(cap, k)
        a["clipped"][i] = cap.clipped
        a["nonfinite"][i] = cap.nonfinite
        # Which rows' threshold bounds the global norm (the clipping mode can change mid-run).
        a["clip_by_norm"][i] = cap.clip == "norm"
        a["dh_norm"][i] = cap.dh_norm
        if cap.dc_norm is not None:
            a["dc_norm"][i] = cap.dc_norm
        a["param_grad_norm"][i] = cap.param_grad_norm
        self._n = i + 1
        if not cap.is_light:
            self.latest = cap

    def _compact(self) -> None:
        """Merge the oldest half of the rows into at most a quarter of the capacity.

        Rows are grouped into aligned blocks of S captures (S the smallest power of two
        for which the oldest half fits in that many blocks), counted from the first
        capture. The first time this pairs adjacent rows; later, earlier blocks are
        completed or doubled, so every old row ends up covering the same number of
        steps, S, instead of the oldest rows absorbing ever more of the run.
        """
        half = max(2, self._rows // 2)
        target = max(1, half // 2)
        count = self._a["count"][:half]
        total = int(count.sum())
        size = 1
        while -(-total // size) > target:
            size *= 2
        block = (np.cumsum(count) - count) // size
        first = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
        last = np.r_[first[1:] - 1, half - 1]
        merged = len(first)
        weight = count.astype(np.float64)
        for name, arr in self._a.items():
            old = arr[:half]
            if name == "step":
                new = old[last]
            elif name == "count":
                new = np.add.reduceat(old, first)
            elif name in _FLAG_ROWS:
                new = np.logical_or.reduceat(old, first)
            else:
                new = _weighted_means(old, weight, first)
            rest = arr[half:self._n].copy()
            arr[:merged] = new
            arr[merged:merged + len(rest)] = rest
        self._n = merged + self._n - half

    # -- the arrays -------------------------------------------------------------------
    def _rows_of(self, name: str, empty_shape: tuple[int, ...], dtype: type) -> np.ndarray:
        return self._a[name][:self._n] if self._a else np.empty(empty_shape, dtype)

    step = _row_property("step", np.int64, "(K,) int64, last step of each row")
    count = _row_property("count", np.int64, "(K,) int64, captures merged into each row")
    loss = _row_property("loss", np.float64, "(K,) float64 mean batch loss")
    grad_norm = _row_property("grad_norm", np.float64, "(K,) float64 global norm before clipping")
    grad_norm_clipped = _row_property("grad_norm_clipped", np.float64,
                                      "(K,) float64 global norm after clipping")
    lr = _row_property("lr", np.float64, "(K,) float64 learning rate")
    clip_threshold = _row_property("clip_threshold", np.float64, "(K,) float64")
    clipped = _row_property("clipped", np.bool_, "(K,) bool, clipped at least once in the row")
    nonfinite = _row_property("nonfinite", np.bool_, "(K,) bool, a non-finite step in the row")
    clip_by_norm = _row_property("clip_by_norm", np.bool_,
                                 "(K,) bool, a step in the row clipped by global norm")

    @property
    def dh_norm(self) -> np.ndarray:
        """(K, L, D, T) float32; (0, 0, 0, 0) before the first capture."""
        return self._rows_of("dh_norm", (0, 0, 0, 0), np.float32)

    @property
    def dc_norm(self) -> np.ndarray | None:
        """(K, L, D, T) float32 for LSTM cells, else None."""
        return self._a["dc_norm"][:self._n] if "dc_norm" in self._a else None

    @property
    def param_grad_norm(self) -> np.ndarray:
        """(K, P) float32."""
        return self._rows_of("param_grad_norm", (0, 0), np.float32)

    # -- to and from a file -----------------------------------------------------------
    def _restore(self, arrays: dict[str, np.ndarray], param_names: tuple[str, ...],
                 gate_names: tuple[str, ...], baseline: float, latest: Capture | None) -> None:
        """Refill from validated file arrays (row arrays of ``_allocate``'s names)."""
        self.clear()
        k = len(arrays["step"])
        if k:
            dh = arrays["dh_norm"]
            has_dc = "dc_norm" in arrays
            self._allocate(dh.shape[1:], has_dc, arrays["param_grad_norm"].shape[1], k)
            for name, arr in self._a.items():
                arr[:k] = arrays[name]
            self._n = k
            self._key = (dh.shape[1:], dh.shape[1:] if has_dc else None,
                         (len(param_names),), param_names, gate_names,
                         "nan" if baseline != baseline else baseline)
            self.param_names, self.gate_names, self.baseline = param_names, gate_names, baseline
        self.latest = latest


def _weighted_means(x: np.ndarray, weight: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Count-weighted mean of ``x`` (N, ...) over the groups starting at ``first``,
    ignoring non-finite values; a group with none finite gives nan."""
    x64 = x.astype(np.float64)
    w = weight.reshape((-1,) + (1,) * (x.ndim - 1))
    finite = np.isfinite(x64)
    with np.errstate(over="ignore", invalid="ignore"):
        num = np.add.reduceat(np.where(finite, x64 * w, 0.0), first, axis=0)
        den = np.add.reduceat(np.where(finite, w, 0.0), first, axis=0)
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


# -- capture.npz contents -------------------------------------------------------------
# Every array of the file, with its dtype kind and named dimensions; dimensions with the
# same letter must agree. Optional ones may be absent (dc_* for non-LSTM cells; latest_*
# when no full capture was kept).
_ROW_SPEC: dict[str, tuple[str, tuple[str, ...]]] = {
    "step": ("i", ("K",)), "count": ("i", ("K",)),
    **{k: ("f", ("K",)) for k in _FLOAT_ROWS},
    **{k: ("b", ("K",)) for k in _FLAG_ROWS},
    "dh_norm": ("f", ("K", "T")),
    "dh_norm_all": ("f", ("K", "L", "D", "T")),
    "param_grad_norm": ("f", ("K", "P")),
    "param_names": ("U", ("P",)),
    "gate_names": ("U", ("G",)),
    "baseline": ("f", ()),
}
_ROW_OPTIONAL = {"dc_norm": ("f", ("K", "T")), "dc_norm_all": ("f", ("K", "L", "D", "T"))}
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
                    "rho_step": ("i", ()), "param_owners": ("i", ("P", "2"))}
_NAME_FIELDS = ("gate_names", "param_names", "rho_names", "events")
_KIND_WORDS = {"i": "integers", "f": "floats", "b": "booleans", "U": "text"}


def _names(values: tuple[str, ...] | list[str]) -> np.ndarray:
    return np.array(list(values), dtype=str)


def _history_arrays(history: History) -> dict[str, np.ndarray]:
    """Everything capture.npz holds (docs/run-format.md), copied out of ``history``."""
    out = {name: np.array(getattr(history, name))
           for name in ("step", "count", *_FLOAT_ROWS, *_FLAG_ROWS)}
    out["dh_norm_all"] = np.array(history.dh_norm)
    # The top layer's forward direction, for readers who want one (K, T) picture.
    out["dh_norm"] = (out["dh_norm_all"][:, -1, 0, :] if len(history)
                      else np.empty((0, 0), np.float32))
    if history.dc_norm is not None:
        out["dc_norm_all"] = np.array(history.dc_norm)
        out["dc_norm"] = out["dc_norm_all"][:, -1, 0, :]
    out["param_grad_norm"] = np.array(history.param_grad_norm)
    out["param_names"] = _names(history.param_names)
    out["gate_names"] = _names(history.gate_names)
    out["baseline"] = np.float64(history.baseline)
    cap = history.latest
    if cap is not None:
        for f in fields(Capture):
            value = getattr(cap, f.name)
            if value is None or (f.name == "param_owners" and not value):
                continue
            if f.name in _NAME_FIELDS:
                value = _names(value)
            elif f.name == "gate_ranges":
                value = np.array(value, dtype=np.float64).reshape(-1, 2)
            elif f.name == "clip":
                value = np.str_(value)
            elif f.name == "param_owners":   # (P, 2), -1 for a tensor of no layer
                value = np.array([o if o is not None else (-1, -1) for o in value],
                                 dtype=np.int64).reshape(-1, 2)
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
    an existing run there stays intact if anything fails.
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
    temps: list[str] = []
    try:
        npz_tmp = _temp_in(folder, CAPTURE_NPZ, temps)
        with open(npz_tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        json_tmp = _temp_in(folder, RUN_JSON, temps)
        with open(json_tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # Two renames are not one atomic step: keep the old capture.npz (a hard link) until
        # run.json is in place too, so that a failure between them restores the old pair.
        old_npz = _link_aside(folder / CAPTURE_NPZ, temps)
        os.replace(npz_tmp, folder / CAPTURE_NPZ)
        try:
            os.replace(json_tmp, folder / RUN_JSON)
        except BaseException:
            if old_npz is not None:
                os.replace(old_npz, folder / CAPTURE_NPZ)
            raise
    except BaseException:
        _remove_all(temps)
        for made in created:        # a failed save leaves no new, empty folders behind
            try:
                made.rmdir()
            except OSError:
                break
        raise
    _remove_all(temps)  # the old capture.npz kept aside, if any


def _remove_all(paths: list[str]) -> None:
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _link_aside(path: Path, temps: list[str]) -> str | None:
    """A second name for ``path`` in its folder (None if it does not exist, or the file
    system has no hard links)."""
    if not path.exists():
        return None
    aside = _temp_in(path.parent, path.name, temps)
    os.remove(aside)
    try:
        os.link(path, aside)
    except OSError:
        return None
    return aside


def _temp_in(folder: Path, name: str, temps: list[str]) -> str:
    fd, path = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    temps.append(path)
    os.chmod(path, 0o644)  # mkstemp makes 0600; a run file is an ordinary document
    return path


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


def _latest_from(arrays: dict[str, np.ndarray]) -> Capture:
    """The latest full capture, from validated ``latest_*`` arrays."""
    values: dict[str, Any] = {}
    for f in fields(Capture):
        value = arrays.get("latest_" + f.name)
        if value is None:
            if f.default is MISSING and f.default_factory is MISSING:
                values[f.name] = None  # an optional array (dc_norm, probe_c) not stored
        elif f.name in _NAME_FIELDS:
            values[f.name] = tuple(str(s) for s in value)
        elif f.name == "gate_ranges":
            values[f.name] = tuple((float(lo), float(hi)) for lo, hi in value)
        elif f.name == "param_owners":
            values[f.name] = tuple(None if k < 0 else (int(k), int(d)) for k, d in value)
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
        latest = _latest_from(arrays)
    rows = {name: arrays[name] for name in ("step", "count", *_FLOAT_ROWS, *_FLAG_ROWS)}
    rows["dh_norm"] = arrays["dh_norm_all"]
    if "dc_norm_all" in arrays:
        rows["dc_norm"] = arrays["dc_norm_all"]
    rows["param_grad_norm"] = arrays["param_grad_norm"]
    history = History(capacity)
    history._restore(rows, tuple(str(s) for s in arrays["param_names"]),
                     tuple(str(s) for s in arrays["gate_names"]),
                     float(arrays["baseline"]), latest)
    return doc["config"], history, doc["summary"]


__all__ = ["History", "RunFileError", "save_run", "load_run", "load_run_config"]
