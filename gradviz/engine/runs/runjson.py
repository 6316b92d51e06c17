"""Reading a run folder's ``run.json``: where the folder's files are, each opened only as a
regular file of bounded size, and the document checked (schema, version, config or the
``recorded`` object of a run recorded from Python, summary) before anything uses it.
:mod:`gradviz.engine.runs.runfile` reads and writes the whole folder with these.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO

from gradviz.config import ConfigError, RunConfig
from gradviz.engine.runs.files import NotRegularFileError, open_regular
from gradviz.engine.runs.recorded import recorded_of
from gradviz.engine.runs.runformat import MAX_RUN_JSON_BYTES, RunFileError
from gradviz.engine.runs.runstate import STATE_NPZ

SCHEMA = "gradviz-run"
# Version 3: a run recorded from Python has "config": null and a "recorded" object
# (gradviz.engine.runs.recorded). Version 2: keyframes, text, colour scales, state.npz.
# Version 1 (before those) opens as a run that cannot be continued.
SCHEMA_VERSION = 3
# What a run trained by gradviz is written as: nothing in it needs version 3, and a gradviz
# that reads only 1 and 2 still opens it.
TRAINED_SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2, 3)
RUN_JSON = "run.json"
CAPTURE_NPZ = "capture.npz"


def run_paths(folder_or_run_json: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(folder_or_run_json)
    if p.is_dir():
        return p / RUN_JSON, p / CAPTURE_NPZ
    if p.suffix.lower() == ".json":
        return p, p.parent / CAPTURE_NPZ
    if not p.exists():
        raise RunFileError(f"{p}: no such run folder")
    raise RunFileError(f"{p}: not a run folder or run.json file")


def open_bounded(path: Path, limit: int, most: str) -> tuple[BinaryIO, int]:
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


def read_run_json(path: Path) -> dict:
    """The validated contents of a run.json (config checked, summary a dict)."""
    most = f"a run.json may have ({MAX_RUN_JSON_BYTES // 2**20} MiB)"
    handle, _ = open_bounded(path, MAX_RUN_JSON_BYTES, most)
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
    if not isinstance(doc.get("generation", ""), str) or len(doc.get("generation", "")) > 64:
        raise RunFileError(f"{path}: \"generation\" is not the name of a save")
    if doc.get("state", None) not in (None, STATE_NPZ) or (version == 1 and "state" in doc):
        raise RunFileError(f"{path}: \"state\" is neither null nor \"{STATE_NPZ}\"")
    for key, kind in (("config", dict), ("versions", dict), ("summary", dict), ("created", str)):
        if key == "config" and version >= 3 and doc.get(key, 0) is None:
            continue                # a run recorded from Python (recorded_of checks it)
        if not isinstance(doc.get(key), kind):
            raise RunFileError(f"{path}: \"{key}\" is missing or not a JSON "
                               f"{'object' if kind is dict else 'string'}")
    doc["recorded"] = recorded_of(path, doc)
    if doc["recorded"] is not None:
        doc["config"] = None        # a watch's file of schema 1 or 2 held invented settings
        return doc
    try:
        doc["config"] = RunConfig.from_dict(doc["config"])
    except ConfigError as exc:
        raise RunFileError(f"{path}: config: {exc}") from None
    return doc


__all__ = ["SCHEMA", "SCHEMA_VERSION", "TRAINED_SCHEMA_VERSION", "READABLE_VERSIONS", "RUN_JSON", "CAPTURE_NPZ",
           "run_paths", "open_bounded", "read_run_json"]
