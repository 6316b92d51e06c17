"""Typed, validated run configuration, and what each setting means.

A :class:`RunConfig` is plain data: it round-trips through JSON, is validated once by
:meth:`RunConfig.validate`, and names the offending field and the allowed values when it
is wrong. Each field is declared with :func:`setting`, which records its label, help text,
limits, group and whether it is live; :func:`settings` reads them back. ``gradviz run``'s
options and the app's control panel are both built from them, and the names a setting
may take come from :mod:`gradviz.registry`, so a new option or cell is added in one
place.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, fields
from typing import Any, Iterator

from gradviz import registry

CELLS = tuple(registry.CELLS)
TASKS = tuple(registry.TASKS)
OPTIMIZERS = tuple(registry.OPTIMIZERS)

# The groups the settings fall into, in the order the control panel and --help show them.
GROUPS = ("Task", "Model", "Optimiser", "Gradient clipping", "Initialisation", "Training")

_KEY = "gradviz"  # the key of a field's Setting in its dataclasses metadata


def _num(x: float) -> str:
    """A limit as a person would write it: 2147483647, 0.001, 1e-06."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e12 else f"{x:g}"


@dataclass(frozen=True)
class Setting:
    """What the command line and the control panel need to know of one RunConfig field.

    ``help`` is a phrase without a final full stop (``--help`` adds the range and the
    default after it). ``limits`` bound every number, on the command line and in the
    app's spin boxes alike. ``live``: a running training takes it on its next step.
    ``shown``: the control panel has a widget for it. The widget hints: ``log_scale``
    (a spin box stepping 1, 2, 5, 10, … for quantities that span decades), ``decimals``
    and ``step`` (of a plain float spin box), ``special`` (the text shown at the lower
    limit, e.g. 'full' for tbptt 0) and ``suggested`` (for an optional number, the value
    offered when it is switched on).

    Declared with :func:`setting`; :func:`settings` fills in the field's ``name``,
    ``default``, ``value_type`` (int, float, bool or str) and ``optional`` (None allowed).
    """
    label: str
    help: str
    group: str
    limits: tuple[float, float] | None = None
    live: bool = False
    shown: bool = True
    log_scale: bool = False
    decimals: int = 3
    step: float = 1.0
    special: str | None = None
    suggested: float | None = None
    name: str = ""
    default: Any = None
    value_type: type = object
    optional: bool = False

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ValueError(f"setting {self.label!r}: unknown group {self.group!r}; "
                             f"allowed: {', '.join(GROUPS)}")

    @property
    def choices(self) -> dict[str, registry.Choice] | None:
        """The registered values of a setting that is a name (cell, task, …), else None."""
        return registry.CHOICES.get(self.name)

    @property
    def allowed(self) -> str:
        """'allowed: 1 to 5000' for a number."""
        lo, hi = self.limits
        return f"allowed: {_num(lo)} to {_num(hi)}"


def setting(default: Any, *, label: str, help: str, group: str,
            limits: tuple[float, float] | None = None, live: bool = False, shown: bool = True,
            log_scale: bool = False, decimals: int = 3, step: float = 1.0,
            special: str | None = None, suggested: float | None = None) -> Any:
    """A RunConfig field with ``default`` and its :class:`Setting` as metadata."""
    meta = Setting(label=label, help=help, group=group, limits=limits, live=live, shown=shown,
                   log_scale=log_scale, decimals=decimals, step=step, special=special,
                   suggested=suggested)
    return dataclasses.field(default=default, metadata={_KEY: meta})


class ConfigError(ValueError):
    """A configuration value is not allowed. ``field`` names the offending option."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class RunConfig:
    task: str = setting("adding", label="Task", group="Task",
                        help="The problem the network learns")
    seq_len: int = setting(50, label="Sequence length T", group="Task", limits=(1, 5000),
                           help="Timesteps per sequence: the distance the gradient has to "
                                "travel")
    cell: str = setting("lstm", label="Cell", group="Model", help="The recurrent cell")
    hidden: int = setting(32, label="Hidden units", group="Model", limits=(1, 1024),
                          help="Units per layer and direction")
    layers: int = setting(1, label="Layers", group="Model", limits=(1, 4),
                          help="Stacked recurrent layers")
    bidirectional: bool = setting(False, label="Bidirectional", group="Model",
                                  help="A second recurrence reading the sequence backwards")
    batch_size: int = setting(32, label="Batch size", group="Training", limits=(1, 4096),
                              help="Sequences per batch")
    optimizer: str = setting("adam", label="Optimiser", group="Optimiser",
                             help="What updates the weights from their gradients")
    lr: float = setting(1e-3, label="Learning rate", group="Optimiser", limits=(1e-7, 100.0),
                        live=True, log_scale=True, help="The optimiser's step size")
    momentum: float = setting(0.0, label="Momentum", group="Optimiser", limits=(0.0, 0.999),
                              live=True, decimals=3, step=0.05,
                              help="SGD's momentum; the other optimisers have none")
    clip: str = setting("none", label="Clipping", group="Gradient clipping", live=True,
                        help="By value: clamp every component. By norm: rescale the whole "
                             "gradient so its global L2 norm is at most the threshold")
    clip_threshold: float = setting(1.0, label="Threshold", group="Gradient clipping",
                                    limits=(1e-6, 1e6), live=True, log_scale=True,
                                    help="The clipping threshold")
    init: str = setting("default", label="Recurrent init", group="Initialisation",
                        help="How the recurrent matrices start")
    rho: float | None = setting(None, label="Spectral radius ρ", group="Initialisation",
                                limits=(1e-3, 10.0), decimals=3, step=0.05, suggested=1.0,
                                help="Rescale every recurrent matrix to this spectral radius "
                                     "(> 1 tends to explode, < 1 to vanish); off or 'none' "
                                     "keeps the initialisation's own")
    # 1.0 is the usual remedy for early forgetting (Gers et al. 2000; Jozefowicz et al. 2015)
    forget_bias: float = setting(0.0, label="Forget-gate bias", group="Initialisation",
                                 limits=(-10.0, 10.0), decimals=2, step=0.5,
                                 help="The initial forget-gate bias of cells with a forget "
                                      "gate; 1 is the usual remedy for early forgetting")
    # The modern cells' own initialisations (issue 22; docs/modern-cells.md).
    lru_r_min: float = setting(0.9, label="LRU ring r_min", group="Initialisation",
                               limits=(0.0, 0.9999), decimals=4, step=0.01,
                               help="The LRU's smallest initial |λ| (Orvieto et al. 2023); "
                                    "the ring runs between the smaller and the larger of "
                                    "r_min and r_max")
    lru_r_max: float = setting(0.999, label="LRU ring r_max", group="Initialisation",
                               limits=(0.0, 0.9999), decimals=4, step=0.01,
                               help="The LRU's largest initial |λ|: how far back it can "
                                    "remember, about 1/(1 − r_max) steps")
    lru_max_phase: float = setting(0.314, label="LRU max phase", group="Initialisation",
                                   limits=(1e-4, 6.2832), decimals=4, step=0.1,
                                   help="The largest initial phase of the LRU's λ, in radians")
    indrnn_u_max: float | None = setting(None, label="IndRNN max |u|", group="Initialisation",
                                         limits=(0.0, 10.0), decimals=4, step=0.01,
                                         suggested=1.0,
                                         help="IndRNN's recurrent weights start in [0, this] "
                                              "(off: 2^(1/T), the paper's bound), and training "
                                              "keeps |u| within the larger of the two")
    tbptt: int = setting(0, label="Truncated BPTT", group="Training", limits=(0, 5000),
                         special="full",
                         help="Cut the gradient every k timesteps; 0 (full) backpropagates "
                              "through all of T")
    stateful: bool = setting(False, label="Stateful (carry state across batches)",
                             group="Training",
                             help="Carry each batch's final state, detached, into the next "
                                  "batch")
    seed: int = setting(0, label="Seed", group="Training", limits=(0, 2**31 - 1),
                        help="Random seed of the weights and the data: same seed, same run")
    device: str = setting("cpu", label="Device", group="Training", shown=False,
                          help="Where to train")
    dtype: str = setting("float32", label="Precision", group="Training", shown=False,
                         help="Floating-point precision")
    capture_every: int = setting(1, label="Capture every", group="Training",
                                 limits=(1, 100000), live=True,
                                 help="Capture the full internals every n steps")
    steps: int = setting(500, label="Steps", group="Training", limits=(1, 10**9), shown=False,
                         help="Training steps")
    # The app chooses the file with a button of its own, shown for a task that needs one.
    text_file: str | None = setting(None, label="Text file", group="Task", shown=False,
                                    help="A UTF-8 text file for the character language "
                                         "model; none: the source of a few of Python's "
                                         "standard-library modules")
    # Command line and run files only: the control panel has no chooser for them yet.
    series_file: str | None = setting(None, label="Series file", group="Task", shown=False,
                                      help="A CSV file for the series task, which then learns "
                                           "to predict the next value of one of its columns, "
                                           "normalised (default: noisy sines)")
    series_column: str | None = setting(None, label="Series column", group="Task", shown=False,
                                        help="The CSV file's column for the series task: its "
                                             "header's name or its number from 0 (default: the "
                                             "first column of numbers)")

    # -- validation -------------------------------------------------------------------
    def validate(self) -> "RunConfig":
        """Return self if every field is allowed, else raise :class:`ConfigError`."""
        for name, s in settings():
            _check(s, getattr(self, name))
        if self.cell == "lru" and self.hidden % 2:
            raise ConfigError("hidden", f"the LRU needs an even number of units (H/2 complex "
                                        f"units: real and imaginary parts), got {self.hidden}")
        return self

    # -- conversion -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "RunConfig":
        """Build and validate a config from JSON-like data; unknown keys are an error."""
        if not isinstance(data, dict):
            raise ConfigError("config", f"expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_SETTINGS))
        if unknown:
            raise ConfigError(unknown[0], f"unknown setting; known: {', '.join(_SETTINGS)}")
        values = dict(data)
        # JSON has one number type: accept 1.0 for an int field, and 1 for a float field.
        for name, value in values.items():
            kind = _SETTINGS[name].value_type
            if kind is int and isinstance(value, float) and value.is_integer():
                values[name] = int(value)
            elif kind is float and isinstance(value, int) and not isinstance(value, bool):
                values[name] = float(value)
        return cls(**values).validate()

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes).validate()


def _check(s: Setting, value: Any) -> None:
    """Raise ConfigError unless ``value`` is allowed for the setting ``s``."""
    if s.choices is not None:
        if not (isinstance(value, str) and value in s.choices):
            raise ConfigError(s.name, f"unknown value {value!r}; allowed: {', '.join(s.choices)}")
    elif value is None and s.optional:
        return
    elif s.value_type is bool:
        if not isinstance(value, bool):
            raise ConfigError(s.name, f"must be true or false, got {value!r}")
    elif s.value_type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(s.name, f"must be an integer, got {value!r}")
        _check_range(s, value)
    elif s.value_type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            omitted = " or omitted" if s.optional else ""
            raise ConfigError(s.name, f"must be a finite number{omitted}, got {value!r}")
        _check_range(s, value)
    elif not isinstance(value, str):  # the free-text settings: paths and a column's name
        what = "a path" if s.name.endswith("_file") else "a name or a number"
        raise ConfigError(s.name, f"must be {what}, got {value!r}")


def _check_range(s: Setting, value: float) -> None:
    lo, hi = s.limits
    if not lo <= value <= hi:
        raise ConfigError(s.name, f"{value!r} is out of range; {s.allowed}")


def _complete(f: dataclasses.Field, hint: Any) -> Setting:
    """The field's Setting with its name, default and type filled in."""
    if _KEY not in f.metadata:
        raise TypeError(f"RunConfig.{f.name} is declared without setting(…): every field "
                        "needs a label, help text and group")
    args = typing.get_args(hint) or (hint,)
    (value_type,) = [a for a in args if a is not type(None)]
    s = dataclasses.replace(f.metadata[_KEY], name=f.name, default=f.default,
                            value_type=value_type, optional=type(None) in args)
    if value_type in (int, float) and s.limits is None:
        raise TypeError(f"RunConfig.{f.name} is a number without limits")
    return s


_HINTS = typing.get_type_hints(RunConfig)
_SETTINGS: dict[str, Setting] = {f.name: _complete(f, _HINTS[f.name]) for f in fields(RunConfig)}


def settings() -> Iterator[tuple[str, Setting]]:
    """(field name, Setting) of every RunConfig field, in the order they are declared."""
    return iter(_SETTINGS.items())


# Bounds shared by the command line and the app's spin boxes, so that what one accepts
# the other accepts too.
LIMITS: dict[str, tuple[float, float]] = {n: s.limits for n, s in settings() if s.limits}

# Settings that a running training can take on its next step without a new model.
LIVE_FIELDS = frozenset(n for n, s in settings() if s.live)


def structural_change(old: RunConfig, new: RunConfig) -> bool:
    """True if going from ``old`` to ``new`` needs a new model (and so a restart)."""
    return any(getattr(old, f.name) != getattr(new, f.name)
               for f in fields(RunConfig) if f.name not in LIVE_FIELDS | {"steps"})


# How a run's label names a setting: "H 64", "T 50"; a name setting (cell, task,
# optimiser) is named by its value alone, a setting not listed here by its label.
SHORT_NAMES = {"seq_len": "T", "hidden": "H", "batch_size": "batch", "lr": "lr",
               "clip_threshold": "clip at", "rho": "ρ", "seed": "seed", "layers": "layers"}
BARE_VALUES = ("cell", "task", "optimizer")


def _describe_field(config: RunConfig, name: str) -> str:
    value = getattr(config, name)
    if name in BARE_VALUES:
        return str(value)
    if name == "clip":
        return "no clipping" if value == "none" else f"clip by {value}"
    label = SHORT_NAMES.get(name, _SETTINGS[name].label.lower())
    if isinstance(value, bool):
        return label if value else f"not {label}"
    if value is None:
        return f"{label} off"
    return f"{label} {value:g}" if isinstance(value, float) else f"{label} {value}"


def describe(config: RunConfig, others: "typing.Sequence[RunConfig]" = ()) -> str:
    """A short label of ``config`` beside ``others``: its cell and hidden size, then every
    other setting in which it differs from any of them (``"gru, H 64"``, ``"lstm, H 64,
    seed 3"``); the step count, which says how long to train, not what, is left out."""
    names = ["cell", "hidden"] + [
        f.name for f in fields(RunConfig)
        if f.name not in ("cell", "hidden", "steps")
        and any(getattr(config, f.name) != getattr(other, f.name) for other in others)]
    return ", ".join(_describe_field(config, name) for name in names)


# What a comparison's label leaves out: how long to train, and how often to capture,
# say nothing of what was trained.
NOT_COMPARED = ("steps", "capture_every")
# Short words for settings whose label is long, where a label names what differs.
DIFFERENCE_NAMES = {"stateful": "stateful", "tbptt": "truncated BPTT", "init": "init",
                    "dtype": "precision", "bidirectional": "bidirectional",
                    "forget_bias": "forget-gate bias", "momentum": "momentum"}


def _difference_field(config: RunConfig, name: str) -> str:
    value = getattr(config, name)
    if name == "clip":
        return ("no clipping" if value == "none"
                else f"clip by {value} at {config.clip_threshold:g}")
    if name == "tbptt":
        return "full BPTT" if not value else f"truncated BPTT {value}"
    if name == "rho" and value is None:
        return "ρ of the init"
    label = DIFFERENCE_NAMES.get(name) or SHORT_NAMES.get(name) or _SETTINGS[name].label.lower()
    if isinstance(value, bool):
        return label if value else f"not {label}"
    if value is None:
        return f"no {label}"
    if name in BARE_VALUES:
        return str(value)
    if name in ("text_file", "series_file"):
        return f"{label} {os.path.basename(str(value))}"
    return f"{label} {value:g}" if isinstance(value, float) else f"{label} {value}"


def differences(config: RunConfig, others: "typing.Sequence[RunConfig]") -> list[str]:
    """The settings of ``config`` in which it differs from any of ``others``, each named
    with its value in ``config``: ``["no clipping"]`` beside a run clipped by norm,
    ``["forget-gate bias 0"]``; the clipping mode and threshold are one ("clip by norm at
    2"), and a threshold that differs while neither clips is no difference. Empty if
    ``config`` is trained as they are (the step count aside)."""
    def differs(name: str) -> bool:
        return any(getattr(config, name) != getattr(other, name) for other in others)

    out = []
    for f in fields(RunConfig):
        name = f.name
        if name in NOT_COMPARED or name == "clip_threshold":
            continue
        if name == "clip":
            clipping = [o for o in others if o.clip != "none" or config.clip != "none"]
            if differs("clip") or any(o.clip_threshold != config.clip_threshold
                                      for o in clipping):
                out.append(_difference_field(config, "clip"))
        elif differs(name):
            out.append(_difference_field(config, name))
    return out


__all__ = ["RunConfig", "ConfigError", "Setting", "setting", "settings", "GROUPS", "CELLS",
           "TASKS", "OPTIMIZERS", "LIMITS", "LIVE_FIELDS", "structural_change", "describe",
           "differences"]
