"""What :func:`gradviz.capture` (and so :class:`gradviz.watch`) checks before it computes.

* Weights that hold NaN or ±inf are refused, naming the tensor: the spectrum's
  eigenvalue routine (LAPACK through MKL) crashes the whole process on them
  (:mod:`gradviz.engine.model.finite`).
* Memory: the peak of one capture is estimated from the shapes alone with the training
  step's model (:mod:`gradviz.engine.training.memory`: the forward caches, the backward
  pass's results, its temporaries and the captured arrays; not the interpreter or the
  weights, which the caller's process already holds) and a capture that would not fit in
  the available memory is refused in one line before anything is allocated. A capture
  over sequences of their own lengths (``lengths=``, :mod:`gradviz.api.packed`) steps the
  recurrence through autograd instead, and is held to its own estimate
  (:func:`packed_capture_bytes`).
* ``torch.autocast``: gradviz's recurrence runs in the module's own dtype (float32 or
  float64) with autocast turned off inside it (:func:`without_autocast`); ``loss_fn``
  runs under the caller's autocast as usual. The captured gradients are then those of
  the float32 recurrence, not of a float16/bfloat16 one.
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from gradviz.config import RunConfig
from gradviz.engine.model.finite import refuse_nonfinite
from gradviz.engine.training import memory


def refuse_nonfinite_weights(module: nn.Module) -> None:
    """ValueError naming the first of ``module``'s parameters that holds a NaN or ±inf."""
    refuse_nonfinite(module.named_parameters(), "gradviz.capture")


def capture_bytes(module: nn.RNNBase, cell: str, T: int, B: int) -> int:
    """The peak memory one capture of ``module`` over x (T, B, I) adds, in bytes."""
    config = RunConfig(cell=cell, hidden=module.hidden_size, layers=module.num_layers,
                       bidirectional=module.bidirectional, seq_len=T, batch_size=B,
                       dtype="float64" if next(module.parameters()).dtype == torch.float64
                       else "float32", task="series", optimizer="sgd")
    part = memory.estimate(config, sizes=(module.input_size, 1, 1))
    return part.batch + part.forward + part.backward + part.temporaries + part.capture


# Of one step of one layer-direction of the packed recurrence, the B x H tensors autograd
# keeps, per gate block G: x W_ih and h W_hh and their sum (3 G), and besides those the
# activations' and states' updates, the kept state and output (torch.where) and the mask's
# zeros (12, more than any of the three cells makes).
PACKED_PER_GATE, PACKED_EXTRA = 3, 12


def packed_capture_bytes(module: nn.RNNBase, T: int, B: int) -> int:
    """The peak memory one capture of ``module`` over x (T, B, I) with ``lengths=`` adds,
    in bytes: what autograd keeps of every step of every layer-direction
    (:data:`PACKED_PER_GATE`, :data:`PACKED_EXTRA`) and each layer's input and output, half
    as much again for the backward pass's gradients at their peak, and the parameters'
    gradients and their copies (the user's are kept aside and added back). Measured as the
    peak resident memory a capture added (torch 2.13, CPU, float32): LSTM 2 layers T 200
    B 64 H 128, 270 MB (this says 472); bidirectional GRU T 300 B 32 H 256, 510 MB (623);
    RNN T 400 B 64 H 128, 143 MB (302)."""
    s = 8 if next(module.parameters()).dtype == torch.float64 else 4
    H, L = module.hidden_size, module.num_layers
    D = 2 if module.bidirectional else 1
    G = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
    steps = T * B * H * L * D * (PACKED_PER_GATE * G + PACKED_EXTRA)
    inputs = T * B * (module.input_size + (L - 1) * D * H + D * H)
    params = sum(p.numel() for p in module.parameters())
    return s * (3 * (steps + inputs) // 2 + 3 * params)


def refuse_beyond_memory(module: nn.RNNBase, cell: str, x: Tensor, packed: bool = False) -> None:
    """MemoryError, in one line, where a capture of ``module`` over ``x`` (T, B, I) would
    not fit in the available memory (CPU only: a GPU's memory is not asked). ``packed``:
    a capture with ``lengths=`` (:func:`packed_capture_bytes`)."""
    if x.device.type != "cpu":
        return
    T, B = x.shape[0], x.shape[1]

    def need_for(t: int) -> int:
        return packed_capture_bytes(module, t, B) if packed else capture_bytes(module, cell, t, B)

    need, have = need_for(T), memory.available_bytes()
    if have is None or need <= have:
        return
    fits = T
    while fits > 1 and need_for(fits) > have:
        fits //= 2
    hint = (f"capture at most about {fits} timesteps at a time" if fits > 1 and
            need_for(fits) <= have else "capture fewer sequences")
    raise MemoryError(f"gradviz.capture: x of shape (T {T}, batch {B}) on this "
                      f"{type(module).__name__}({module.input_size}, {module.hidden_size}) "
                      f"needs about {memory.human_bytes(need)} of memory; this machine has "
                      f"{memory.human_bytes(have)} available; {hint}")


def without_autocast(x: Tensor) -> contextlib.AbstractContextManager:
    """A block in which autocast is off on ``x``'s device (a no-op where it is off)."""
    kind = x.device.type
    if kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind):
        return torch.autocast(device_type=kind, enabled=False)
    return contextlib.nullcontext()


__all__ = ["refuse_nonfinite_weights", "refuse_beyond_memory", "capture_bytes",
           "packed_capture_bytes",
           "without_autocast"]
