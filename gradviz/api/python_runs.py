"""The settings a run file holds for a run recorded from Python (:func:`recorded_config`).

A run file names its model in the app's settings (:class:`~gradviz.config.RunConfig`).
A watched model may be beyond what the app trains (five layers, a cell of the user's own):
those settings are then only the nearest the app allows, and the run's summary says what
was really trained (``source``, ``model``, sizes, optimiser, clipping, marks), so the
recording is saved whatever the model's size.
"""
from __future__ import annotations

from gradviz.config import LIMITS, ConfigError, RunConfig


def _within(name: str, value):
    low, high = LIMITS.get(name, (None, None))
    if low is None:
        return value
    kind = type(value)
    return kind(min(max(value, low), high))


def recorded_config(watch) -> RunConfig:
    """The app's settings nearest to what ``watch`` recorded (a Watch or TraceWatch)."""
    from gradviz.api.modules import CELL_OF_MODE

    history = watch.history
    values: dict = {"steps": max(1, watch.steps), "capture_every": watch.every}
    if len(history):
        values["seq_len"] = int(history.dh_norm.shape[-1])
        values["layers"] = int(history.dh_norm.shape[1])
        values["bidirectional"] = int(history.dh_norm.shape[2]) == 2
    module = getattr(watch, "module", None)
    mode = getattr(module, "mode", None)
    if mode in CELL_OF_MODE:
        weight = module.weight_ih_l0
        values.update(cell=CELL_OF_MODE[mode], hidden=module.hidden_size,
                      layers=module.num_layers, bidirectional=module.bidirectional,
                      dtype="float64" if str(weight.dtype) == "torch.float64" else "float32",
                      device="cuda" if weight.is_cuda else "cpu")
        shape = getattr(watch, "_shape", None)
        if shape is not None:
            values["batch_size"] = shape[1]
            values["seq_len"] = max(values.get("seq_len", 0), shape[0])
    optimizer = getattr(watch, "optimizer", None)
    if optimizer is not None and "lr" in optimizer.param_groups[0]:
        values["lr"] = float(optimizer.param_groups[0]["lr"])
    values = {k: _within(k, v) for k, v in values.items()}
    try:
        return RunConfig(**values).validate()
    except ConfigError:
        return RunConfig(steps=values["steps"]).validate()


__all__ = ["recorded_config"]
