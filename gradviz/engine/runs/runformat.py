"""What a run folder holds, and the bounds a reader holds it to.

The arrays of ``capture.npz`` (docs/run-format.md), each with its dtype kind and named
dimensions, and the format's bounds: the largest run.json and capture.npz, and each named
dimension's largest size (the limits of :mod:`gradviz.config` and the cells of
:mod:`gradviz.registry`), so that a file declaring more than gradviz can write is
refused from its headers, before its data is read (:mod:`gradviz.engine.runs.npzfile`).
:mod:`gradviz.engine.runs.runfile` writes and reads the files with these. Shapes: K = rows,
L = layers, D = directions, T = timesteps, P = parameter tensors, G = gates, H = hidden
units, R = recurrent blocks, E = events, F = keyframes, N = events of a keyframe, S = text
samples, C = colour scales, Q = gradient paths
(gradviz.engine.analysis.paths).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gradviz.config import LIMITS
from gradviz.engine.runs.history import (FLAG_ROWS, FLOAT_ROWS, METRIC_ROW, RANGE_ARRAYS,
                                         History)
from gradviz.engine.runs.keyframes import CAPTURE_ARRAYS, Keyframes
from gradviz.engine.runs.npzfile import Declared
from gradviz.registry import CELLS


class RunFileError(ValueError):
    """A run file is missing, unreadable or not what gradviz wrote; the message names
    the file and the problem."""


# -- capture.npz contents -------------------------------------------------------------
# Every array of the file, with its dtype kind and named dimensions; dimensions with the
# same letter must agree. Optional ones may be absent (dc_* for non-LSTM cells; latest_*
# when no full capture was kept; param_owner and the metric in files from before they
# were stored).
ROW_SPEC: dict[str, tuple[str, tuple[str, ...]]] = {
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
ROW_OPTIONAL = {"dc_norm": ("f", ("K", "T")), "dc_norm_all": ("f", ("K", "L", "D", "T")),
                "param_owner": ("i", ("P", "2")), METRIC_ROW: ("f", ("K",)),
                "metric_name": ("U", ()),
                # The names of a trace's marks (gradviz.trace), one per layer row.
                "layer_names": ("U", ("L",)),
                # Absent in files from before they were kept, whose rows then read as NaN.
                "rho": ("f", ("K", "L", "D", "R")), "sigma_max": ("f", ("K", "L", "D", "R")),
                "sat_low": ("f", ("K", "L", "D", "G")), "sat_high": ("f", ("K", "L", "D", "G")),
                "dout_norm": ("f", ("K", "L", "D", "T")),
                # ‖∂L/∂x_t‖ per row (NaN where not computed); absent before it was kept.
                "dx_norm_rows": ("f", ("K", "T")),
                # The timesteps each row has (a ragged watch); absent: all T.
                "time_len": ("i", ("K",)),
                # The smallest and largest value of each row's steps (absent before they
                # were kept: a single step's row is then its own range, a merged one's NaN).
                **{k: ("f", ("K",)) for k in RANGE_ARRAYS},
                "carried_norm": ("f", ("K", "L", "D", "T"))}
LATEST_SPEC: dict[str, tuple[str, tuple[str, ...]]] = {
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
LATEST_OPTIONAL = {"dc_norm": ("f", ("L", "D", "T")), "probe_c": ("f", ("L", "D", "T", "H")),
                   "rho_step": ("i", ()), "metric": ("f", ()), "metric_name": ("U", ()),
                   "dout_norm": ("f", ("L", "D", "T")), "dx_norm": ("f", ("T",)),
                   "carried_norm": ("f", ("L", "D", "T")),
                   "paths": ("f", ("L", "D", "Q", "T", "H")), "path_names": ("U", ("Q",)),
                   "jacobian_sv": ("f", ("L", "D", "3", "T"))}
NAME_FIELDS = ("gate_names", "param_names", "rho_names", "events", "path_names")
# Keyframes (schema 2): the latest capture's arrays for F captures, stacked along a first
# dimension F, but for the names and ranges that all of them share, stored once; events
# padded with "" to the longest list, key_event_count saying how many are real.
KEY_SHARED = ("gate_names", "gate_ranges", "param_names", "rho_names")
KEY_SPEC: dict[str, tuple[str, tuple[str, ...]]] = {
    **{k: (kind, shape if k in KEY_SHARED else ("F", *shape))
       for k, (kind, shape) in LATEST_SPEC.items() if k != "events"},
    "events": ("U", ("F", "N")), "event_count": ("i", ("F",)), "spacing": ("i", ()),
}
KEY_OPTIONAL = {k: (kind, ("F", *shape)) for k, (kind, shape) in LATEST_OPTIONAL.items()}
# Sampled text (schema 2): (step, text) pairs, oldest first; colour scales: (low, high) of
# each named scale of the views.
EXTRA_OPTIONAL = {"text_step": ("i", ("S",)), "text_sample": ("U", ("S",)),
                  "scale_names": ("U", ("C",)), "scale_levels": ("f", ("C", "2")),
                  # The save it belongs to, as run.json's "generation" (engine/runs/runsave).
                  "generation": ("U", ())}
_KIND_WORDS = {"i": "integers", "f": "floats", "b": "booleans", "U": "text"}
# Members of other names are never read.
KNOWN_ARRAYS = {*ROW_SPEC, *ROW_OPTIONAL, *EXTRA_OPTIONAL,
                *("latest_" + k for k in {**LATEST_SPEC, **LATEST_OPTIONAL}),
                *("key_" + k for k in {**KEY_SPEC, **KEY_OPTIONAL})}

# The format's bounds (docs/run-format.md, "What a reader refuses"): what gradviz writes,
# so that a file declaring more is refused from its headers, before its data is read.
MAX_RUN_JSON_BYTES = 16 * 2**20
# A zip without ZIP64 records; the largest run gradviz allows holds about 1.3 GB of arrays.
MAX_NPZ_BYTES = 2**31 - 1
MAX_TEXT_CHARS = 1024               # of a parameter's, gate's or block's name, or an event
MAX_SAMPLE_CHARS = 16384            # of a sampled text (the app and gradviz run sample 200)
_CHAR_BOUNDS = {"text_sample": MAX_SAMPLE_CHARS}
# Runs recorded from Python (gradviz.watch, gradviz.trace) may hold more than the app
# trains: a user's model of up to RECORDED_LAYERS layers (or marked names of a trace), up
# to RECORDED_GATES gate marks (or none) and RECORDED_PARAMS parameter tensors.
RECORDED_LAYERS, RECORDED_GATES, RECORDED_PARAMS = 64, 32, 4096
_DIM_BOUNDS = {"L": max(int(LIMITS["layers"][1]), RECORDED_LAYERS), "D": 2,
               "T": int(LIMITS["seq_len"][1]), "H": int(LIMITS["hidden"][1]),
               "G": max(max(len(c.gates) for c in CELLS.values()), RECORDED_GATES),
               "R": max(len(c.rho_names) for c in CELLS.values()), "P": RECORDED_PARAMS, "E": 1024,
               "N": 1024, "S": 1024, "C": 64, "Q": 5}
_DIM_WORDS = {"K": "rows", "L": "layers", "D": "directions", "T": "timesteps",
              "H": "hidden units", "G": "gates", "P": "parameter tensors",
              "R": "recurrent blocks", "E": "events", "F": "keyframes",
              "N": "events of a keyframe", "S": "text samples", "C": "colour scales",
              "Q": "gradient paths"}
# In a run with rows; E (events) may be 0, and G (a trace with no gate marked).
_AT_LEAST_ONE = frozenset("LDTHPR")


def check_declared(path: Path, declared: dict[str, Declared], history: History,
                   keyframes: Keyframes | None = None) -> dict[str, int]:
    """Check the members' declared kinds and shapes; the named dimensions' sizes.
    ``keyframes``: the Keyframes the file's keyframes will fill (bounding how many)."""
    dims: dict[str, int] = {}
    _check(path, declared, ROW_SPEC, ROW_OPTIONAL, "", dims)
    if ("dc_norm" in declared) != ("dc_norm_all" in declared):
        raise RunFileError(f"{path}: 'dc_norm' and 'dc_norm_all' must be both present or "
                           "both absent")
    if any(name.startswith("latest_") for name in declared):
        if dims["K"] == 0:
            raise RunFileError(f"{path}: has a latest capture but no rows")
        _check(path, declared, LATEST_SPEC, LATEST_OPTIONAL, "latest_", dims)
    _check(path, declared, {}, EXTRA_OPTIONAL, "", dims)
    if (("text_step" in declared) != ("text_sample" in declared)
            or ("scale_names" in declared) != ("scale_levels" in declared)):
        raise RunFileError(f"{path}: 'text_step' and 'text_sample', and 'scale_names' and "
                           "'scale_levels', must be present in pairs")
    if any(name.startswith("key_") for name in declared):
        if dims["K"] == 0:
            raise RunFileError(f"{path}: has keyframes but no rows")
        _check(path, declared, KEY_SPEC, KEY_OPTIONAL, "key_", dims)
        _check_keyframe_bytes(path, declared, dims["F"], keyframes)
    if dims["K"]:
        limit = history.row_limit((dims["L"], dims["D"], dims["T"]), "dc_norm" in declared,
                                  dims["P"], dims.get("R", 1), dims["G"])
        if dims["K"] > limit:
            raise RunFileError(f"{path}: holds {dims['K']} rows; a history of capacity "
                               f"{history.capacity} keeps at most {limit} of this size, and "
                               "gradviz writes no more rows than it keeps")
    return dims


def _check_keyframe_bytes(path: Path, declared: dict[str, Declared], count: int,
                         keyframes: Keyframes | None) -> None:
    """Refuse more keyframes than ``keyframes`` keeps of their declared size."""
    keyframes = Keyframes() if keyframes is None else keyframes
    if count == 0:
        raise RunFileError(f"{path}: has keyframe arrays of 0 keyframes")
    size = sum(declared["key_" + name].nbytes for name in CAPTURE_ARRAYS
               if "key_" + name in declared) // count
    limit = keyframes.limit_for(size)
    if count > limit:
        raise RunFileError(f"{path}: holds {count} keyframes of {size} bytes; keyframes of "
                           f"capacity {keyframes.capacity} keep at most {limit} of this size, "
                           "and gradviz writes no more than it keeps")


def _kind_is(dtype: np.dtype, kind: str) -> bool:
    """Whether ``dtype`` is of the spec's ``kind``: "i", "f", "b" or "U"."""
    if kind in "if":    # integers may be unsigned; nothing wider than 64 bits is written
        return dtype.kind in ("iu" if kind == "i" else "f") and dtype.itemsize <= 8
    return dtype.kind == kind


def _check(path: Path, arrays: dict[str, Declared], spec: dict, optional: dict,
           prefix: str, dims: dict[str, int]) -> None:
    """Check kinds and shapes of ``arrays`` against a spec, binding named dimensions, and
    each dimension against the format's bounds."""
    for name, (kind, shape) in {**spec, **optional}.items():
        key = prefix + name
        if key not in arrays:
            if name in spec:
                raise RunFileError(f"{path}: array '{key}' is missing; the file is incomplete "
                                   "or was not written by gradviz")
            continue
        arr = arrays[key]
        if not _kind_is(arr.dtype, kind):
            raise RunFileError(f"{path}: array '{key}' holds {arr.dtype} values; expected "
                               f"{_KIND_WORDS[kind]}")
        chars = _CHAR_BOUNDS.get(key, MAX_TEXT_CHARS)
        if kind == "U" and arr.dtype.itemsize // 4 > chars:
            raise RunFileError(f"{path}: array '{key}' holds strings of "
                               f"{arr.dtype.itemsize // 4} characters; "
                               f"{'a text sample' if key in _CHAR_BOUNDS else 'a name or event'} "
                               f"has at most {chars}")
        if arr.ndim != len(shape):
            raise RunFileError(f"{path}: array '{key}' has shape {arr.shape}; expected "
                               f"{len(shape)} dimension(s) ({', '.join(shape) or 'a scalar'})")
        for dim, size in zip(shape, arr.shape):
            if size > _DIM_BOUNDS.get(dim, size):
                raise RunFileError(f"{path}: array '{key}' has shape {arr.shape}: its {dim} "
                                   f"dimension ({_DIM_WORDS[dim]}) is {size}, more than the "
                                   f"{_DIM_BOUNDS[dim]} a run may have")
            if size == 0 and dim in _AT_LEAST_ONE and dims.get("K"):
                raise RunFileError(f"{path}: array '{key}' has shape {arr.shape}: its {dim} "
                                   f"dimension ({_DIM_WORDS[dim]}) is 0; a run has at least one")
            want = int(dim) if dim.isdigit() else dims.setdefault(dim, size)
            if size != want:
                raise RunFileError(f"{path}: array '{key}' has shape {arr.shape}, but its {dim} "
                                   f"dimension should be {want} to match the other arrays")


def check_values(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """What the headers cannot tell: integers that fit int64, steps increasing, gate ranges
    finite and not empty, counts of at least 1 whose sum float64 weights hold exactly."""
    for key, arr in arrays.items():
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise RunFileError(f"{path}: array '{key}' holds values too large for int64")
    step = arrays["step"].astype(np.int64)      # unsigned fits int64 (above)
    if np.any(step < 0) or np.any(np.diff(step) <= 0):
        raise RunFileError(f"{path}: array 'step' is not increasing from 0 (gradviz writes one "
                           "row per step, in order)")
    for key in ("latest_gate_ranges", "key_gate_ranges"):
        ranges = arrays.get(key)
        if ranges is not None and not (np.isfinite(ranges).all()
                                       and np.all(ranges[:, 0] < ranges[:, 1])):
            raise RunFileError(f"{path}: array '{key}' holds a range that is not finite or "
                               "whose low end is not below its high end")
    count = arrays["count"]
    if np.any(count < 1):
        raise RunFileError(f"{path}: array 'count' holds values below 1")
    if count.sum(dtype=np.float64) >= 2**53:
        raise RunFileError(f"{path}: array 'count' adds up to more than 2**53 captures")


__all__ = ["RunFileError", "ROW_SPEC", "ROW_OPTIONAL", "LATEST_SPEC", "LATEST_OPTIONAL",
           "KEY_SPEC", "KEY_OPTIONAL", "KEY_SHARED", "EXTRA_OPTIONAL", "MAX_SAMPLE_CHARS",
           "NAME_FIELDS", "KNOWN_ARRAYS", "MAX_RUN_JSON_BYTES", "MAX_NPZ_BYTES",
           "MAX_TEXT_CHARS", "check_declared", "check_values"]
