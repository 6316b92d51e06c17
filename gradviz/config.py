"""Typed, validated run configuration.

A :class:`RunConfig` is plain data: it round-trips through JSON, is validated once by
:meth:`RunConfig.validate`, and names the offending field and the allowed values when it
is wrong. The command line options and the app's controls use the same field names.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

CELLS = ("rnn-tanh", "rnn-relu", "lstm", "lstm-peephole", "lstm-coupled", "gru")
TASKS = ("adding", "copy", "recall", "series", "text", "reber")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad")
CLIP_MODES = ("none", "value", "norm")
INITS = ("default", "orthogonal", "identity", "normal")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")

# Bounds shared by the command line and the app's spin boxes, so that what one accepts
# the other accepts too.
LIMITS: dict[str, tuple[float, float]] = {
    "seq_len": (1, 5000),
    "hidden": (1, 1024),
    "layers": (1, 4),
    "batch_size": (1, 4096),
    "lr": (1e-7, 100.0),
    "momentum": (0.0, 0.999),
    "clip_threshold": (1e-6, 1e6),
    "rho": (1e-3, 10.0),
    "forget_bias": (-10.0, 10.0),
    "tbptt": (0, 5000),
    "seed": (0, 2**31 - 1),
    "capture_every": (1, 100000),
    "steps": (1, 10**9),
}


def _num(x: float) -> str:
    """A limit as a person would write it: 2147483647, 0.001, 1e-06."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e12 else f"{x:g}"


class ConfigError(ValueError):
    """A configuration value is not allowed. ``field`` names the offending option."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class RunConfig:
    task: str = "adding"
    seq_len: int = 50
    cell: str = "lstm"
    hidden: int = 32
    layers: int = 1
    bidirectional: bool = False
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0  # SGD only
    clip: str = "none"
    clip_threshold: float = 1.0
    init: str = "default"
    # Rescale every recurrent matrix to this spectral radius after ``init``; None keeps it.
    rho: float | None = None
    # 1.0 is the usual remedy for early forgetting (Gers et al. 2000; Jozefowicz et al. 2015)
    forget_bias: float = 0.0
    # Truncated BPTT: gradients stop at chunk boundaries every ``tbptt`` steps; 0 = full BPTT.
    tbptt: int = 0
    # Carry each batch's final state into the next batch (detached).
    stateful: bool = False
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    capture_every: int = 1
    steps: int = 500
    text_file: str | None = None

    # -- validation -------------------------------------------------------------------
    def validate(self) -> "RunConfig":
        """Return self if every field is allowed, else raise :class:`ConfigError`."""
        for name, allowed in (
            ("task", TASKS),
            ("cell", CELLS),
            ("optimizer", OPTIMIZERS),
            ("clip", CLIP_MODES),
            ("init", INITS),
            ("device", DEVICES),
            ("dtype", DTYPES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(name, f"unknown value {value!r}; allowed: {', '.join(allowed)}")
        for name in ("seq_len", "hidden", "layers", "batch_size", "tbptt", "seed",
                     "capture_every", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(name, f"must be an integer, got {value!r}")
            self._check_range(name, value)
        for name in ("lr", "momentum", "clip_threshold", "forget_bias"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(name, f"must be a finite number, got {value!r}")
            self._check_range(name, value)
        if self.rho is not None:
            if isinstance(self.rho, bool) or not isinstance(self.rho, (int, float)) or not math.isfinite(self.rho):
                raise ConfigError("rho", f"must be a finite number or omitted, got {self.rho!r}")
            self._check_range("rho", self.rho)
        for name in ("bidirectional", "stateful"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"must be true or false, got {getattr(self, name)!r}")
        if self.task == "text" and not self.text_file:
            raise ConfigError("text_file", "the text task needs a UTF-8 text file (--text-file PATH)")
        if self.text_file is not None and not isinstance(self.text_file, str):
            raise ConfigError("text_file", f"must be a path, got {self.text_file!r}")
        return self

    @staticmethod
    def _check_range(name: str, value: float) -> None:
        lo, hi = LIMITS[name]
        if not lo <= value <= hi:
            raise ConfigError(name, f"{value!r} is out of range; allowed: {_num(lo)} to {_num(hi)}")

    # -- conversion -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "RunConfig":
        """Build and validate a config from JSON-like data; unknown keys are an error."""
        if not isinstance(data, dict):
            raise ConfigError("config", f"expected a JSON object, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(unknown[0], f"unknown setting; known: {', '.join(known)}")
        values = dict(data)
        # JSON has one number type: accept 1.0 for an int field, and 1 for a float field.
        for name, value in values.items():
            default = getattr(cls, name, None)
            if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) \
                    and value.is_integer():
                values[name] = int(value)
            elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                values[name] = float(value)
        if isinstance(values.get("rho"), int) and not isinstance(values.get("rho"), bool):
            values["rho"] = float(values["rho"])
        return cls(**values).validate()

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes).validate()


# Settings that a running training can take on its next step without a new model.
LIVE_FIELDS = frozenset({"clip", "clip_threshold", "lr", "momentum", "capture_every"})


def structural_change(old: RunConfig, new: RunConfig) -> bool:
    """True if going from ``old`` to ``new`` needs a new model (and so a restart)."""
    return any(getattr(old, f.name) != getattr(new, f.name)
               for f in fields(RunConfig) if f.name not in LIVE_FIELDS | {"steps"})


__all__ = ["RunConfig", "ConfigError", "CELLS", "TASKS", "OPTIMIZERS", "CLIP_MODES", "INITS",
           "LIMITS", "LIVE_FIELDS", "structural_change"]
