"""What the run file of a run recorded from Python says it is (:func:`recorded`): that it
came from Python, the model's description and sizes, the optimiser and learning rate when
one was given, and the user's clipping as the watch measured it; never a gradviz task,
clipping, initialisation or seed that it was not trained with
(:mod:`gradviz.engine.runs.recorded`). A model beyond the app's limits (five layers, a
cell of the user's own) is recorded and saved all the same.

:func:`nearest_config` is the other direction, for a user who wants gradviz to train a
model like the one watched: the nearest settings the app allows (``Watch.config``).
"""
from __future__ import annotations

from gradviz.config import LIMITS, ConfigError, RunConfig


def _within(name: str, value):
    low, high = LIMITS.get(name, (None, None))
    if low is None:
        return value
    kind = type(value)
    return kind(min(max(value, low), high))


def nearest_config(watch) -> RunConfig:
    """The app's settings nearest to what ``watch`` recorded (a Watch or TraceWatch): a
    gradviz model to train like it (its task is gradviz's default: the watch has none)."""
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


def recorded(watch, api: str) -> dict:
    """The ``recorded`` object of ``watch``'s run file (see the module docstring)."""
    from gradviz.api.modules import CELL_OF_MODE
    from gradviz.api.recorder import describe_module, describe_optimizer
    from gradviz.engine.runs.recorded import PYTHON, measured_clipping

    history = watch.history
    model = watch.model if watch.model is not None else watch.module
    out: dict = {"source": PYTHON, "api": api, **describe_module(model)}
    out["description"] = out.pop("model_repr")
    module = watch.module
    sizes: dict = {}
    mode = getattr(module, "mode", None)
    if mode in CELL_OF_MODE and module is not model:
        sizes["module"] = " ".join(repr(module).split())
    if mode in CELL_OF_MODE:
        sizes.update(cell=CELL_OF_MODE[mode], input_size=int(module.input_size),
                     hidden_size=int(module.hidden_size), num_layers=int(module.num_layers),
                     bidirectional=bool(module.bidirectional),
                     batch_first=bool(module.batch_first))
    if len(history):
        sizes["seq_len_max"] = int(history.dh_norm.shape[-1])
        sizes["layers_recorded"] = int(history.dh_norm.shape[1])
    shape = getattr(watch, "_shape", None)
    if shape is not None:
        sizes["batch_size"] = int(shape[1])
    out["sizes"] = sizes
    out.update(describe_optimizer(watch.optimizer))
    hooked = watch.recorder.reads_clipping
    out["clipping"] = measured_clipping(history, watch.recorder.clipped_steps,
                                        "optimizer step pre-hook" if hooked else None)
    marks = getattr(watch, "marks", ())
    if marks:
        out["marks"] = list(marks)
        out["gate_marks"] = list(history.gate_names)
    return out


__all__ = ["nearest_config", "recorded"]
