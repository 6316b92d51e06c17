"""The arrays of capture.npz beyond the history's rows: full captures (the latest one, and
the keyframes), the sampled text and the colour scales, to arrays and back
(docs/run-format.md). The arrays read back have been checked by
:func:`gradviz.engine.runs.runformat.check_declared`; what the headers cannot tell (steps in
order, counts within their arrays) is checked here, with a RunFileError naming the file.
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from gradviz.engine.runs.capture import Capture
from gradviz.engine.runs.keyframes import Keyframes
from gradviz.engine.runs.runformat import KEY_SHARED, NAME_FIELDS, RunFileError

TextSamples = list[tuple[int, str]]          # (step, sampled text), oldest first
Scales = dict[str, tuple[float, float]]       # (low, high) of each named colour scale


def _names(values: Sequence[str]) -> np.ndarray:
    return np.array(list(values), dtype=str)


def capture_arrays(cap: Capture) -> dict[str, np.ndarray]:
    """Every field of a full capture as an array, by field name; the owners are left out
    (a run stores them once, as ``param_owner``)."""
    out = {}
    for f in fields(Capture):
        value = getattr(cap, f.name)
        if value is None or f.name == "param_owners":
            continue
        if f.name in NAME_FIELDS:
            value = _names(value)
        elif f.name == "gate_ranges":
            value = np.array(value, dtype=np.float64).reshape(-1, 2)
        elif f.name in ("clip", "metric_name"):
            value = np.str_(value)
        out[f.name] = np.asarray(value)
    return out


def capture_from(arrays: Mapping[str, Any], owners: tuple) -> Capture:
    """The capture whose fields ``arrays`` holds by name (validated arrays, or elements of
    stacked ones), with the run's parameter ``owners``."""
    values: dict[str, Any] = {"param_owners": owners}
    for f in fields(Capture):
        value = arrays.get(f.name)
        if f.name == "param_owners":
            continue
        if value is None:
            if f.default is MISSING and f.default_factory is MISSING:
                values[f.name] = None  # an optional array (dc_norm, probe_c) not stored
        elif f.name in NAME_FIELDS:
            values[f.name] = tuple(str(s) for s in value)
        elif f.name == "gate_ranges":
            values[f.name] = tuple((float(lo), float(hi)) for lo, hi in value)
        elif np.ndim(value) == 0:
            values[f.name] = value.item()  # int, float, bool or str
        else:
            values[f.name] = value
    return Capture(**values)


# -- keyframes --------------------------------------------------------------------------
def keyframe_arrays(keyframes: Keyframes | None) -> dict[str, np.ndarray]:
    """The ``key_*`` arrays of ``keyframes`` (none if there are none). ValueError if they
    are not all of one model (the names or ranges they share differ)."""
    captures = keyframes.captures if keyframes is not None else ()
    if not captures:
        return {}
    each = [capture_arrays(c) for c in captures]
    first = each[0]
    out: dict[str, np.ndarray] = {"key_spacing": np.int64(keyframes.spacing)}
    for name, value in first.items():
        if name in KEY_SHARED:
            if any(not np.array_equal(e[name], value) for e in each):
                raise ValueError(f"keyframes of different models (their {name} differ)")
            out["key_" + name] = value
        elif name != "events":
            out["key_" + name] = np.stack([e[name] for e in each])
    events = [e["events"] for e in each]
    width = max(len(e) for e in events)
    padded = np.full((len(events), width), "", dtype=str if width == 0 else
                     np.result_type(*[e.dtype for e in events if len(e)]))
    for i, e in enumerate(events):
        padded[i, :len(e)] = e
    out["key_events"] = padded
    out["key_event_count"] = np.array([len(e) for e in events], dtype=np.int64)
    return out


def keyframes_from(path: Path, arrays: Mapping[str, np.ndarray], owners: tuple,
                   keyframes: Keyframes) -> None:
    """Refill ``keyframes`` from validated ``key_*`` arrays (it is cleared if there are none)."""
    if "key_step" not in arrays:
        keyframes.clear()
        return
    key = {name.removeprefix("key_"): value for name, value in arrays.items()
           if name.startswith("key_")}
    counts = key["event_count"]
    if np.any(counts < 0) or np.any(counts > key["events"].shape[1]):
        raise RunFileError(f"{path}: array 'key_event_count' holds counts outside 0 … "
                           f"{key['events'].shape[1]}")
    shared = {name: key[name] for name in KEY_SHARED}
    captures = []
    for i in range(len(key["step"])):
        one = {name: value[i] for name, value in key.items()
               if name not in KEY_SHARED and name not in ("spacing", "event_count")}
        one["events"] = key["events"][i, :counts[i]]
        captures.append(capture_from({**one, **shared}, owners))
    try:
        keyframes.restore(captures, int(key["spacing"]))
    except ValueError as exc:
        raise RunFileError(f"{path}: keyframes: {exc}") from None


# -- sampled text and colour scales --------------------------------------------------------
def extra_arrays(texts: TextSamples, scales: Scales | None) -> dict[str, np.ndarray]:
    """``text_*`` and ``scale_*`` arrays (none for no texts, no scales)."""
    out = {}
    if texts:
        out["text_step"] = np.array([s for s, _ in texts], dtype=np.int64)
        out["text_sample"] = _names([t for _, t in texts])
    if scales:
        out["scale_names"] = _names(list(scales))
        out["scale_levels"] = np.array([scales[k] for k in scales], dtype=np.float64).reshape(-1, 2)
    return out


def extras_from(arrays: Mapping[str, np.ndarray]) -> tuple[TextSamples, Scales]:
    texts = [(int(s), str(t)) for s, t in zip(arrays.get("text_step", ()),
                                              arrays.get("text_sample", ()))]
    scales = {str(n): (float(lo), float(hi)) for n, (lo, hi) in
              zip(arrays.get("scale_names", ()), arrays.get("scale_levels", np.empty((0, 2))))}
    return texts, scales


__all__ = ["TextSamples", "Scales", "capture_arrays", "capture_from", "keyframe_arrays",
           "keyframes_from", "extra_arrays", "extras_from"]
