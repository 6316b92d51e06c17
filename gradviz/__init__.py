"""gradviz: watch gradients flow through recurrent networks while they train.

The public API, for scripts and notebooks (the README's "Use from Python" shows each)::

    RunConfig                  a run's typed, validated settings (gradviz.config)
    Session(config)            trains one run: run(steps, ...), history, save(folder)
    capture(module, x, loss_fn, h0=None, tbptt=0, lengths=None)
                               the exact gradient flow of your own nn.RNN / LSTM / GRU
    Recurrent(cell, input_size, hidden_size, ...)
                               gradviz's own cells (minGRU, LRU, …) as a module capture follows
    watch(module, every=k)     captures every k steps of your own training loop
    trace()                    any recurrence you write: tr.mark(h, t) in the loop
    load_run(path)             a saved run: its config, history and summary
    save_run(session_or_history, path)
    show(run_or_history)       the app on a run, in a process of its own

``import gradviz`` imports neither torch nor Qt: each name is imported when first used.
"""
from __future__ import annotations

import importlib

__version__ = "0.2.0"

# Where each public name lives; imported on first use (PEP 562).
_EXPORTS = {
    "RunConfig": "gradviz.config",
    "Session": "gradviz.engine.training.session",
    "Capture": "gradviz.engine.runs.capture",
    "History": "gradviz.engine.runs.history",
    "capture": "gradviz.api.capturing",
    "Recurrent": "gradviz.api.modern",
    "watch": "gradviz.api.watch",
    "Watch": "gradviz.api.watch",
    "SavedRun": "gradviz.api.runs",
    "load_run": "gradviz.api.runs",
    "save_run": "gradviz.api.runs",
    "show": "gradviz.api.show",
    "trace": "gradviz.api.trace",
    "Trace": "gradviz.api.trace",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gradviz' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    importlib.import_module("gradviz.api.notebook")     # inline display in Jupyter
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
