"""How much memory a run needs, known before anything is built.

:func:`estimate_bytes` adds up, from the shapes of a :class:`~gradviz.config.RunConfig`
alone, what one training step of it holds at its peak; :func:`check` compares that with
:func:`available_bytes` and returns one line for the user when it does not fit, and
:func:`warning` one when it fits with little room to spare. Plain Python: importing this
module imports neither torch nor Qt, so the command line and the window can ask before a
training process exists.

Shapes: T timesteps, B batch rows (+1 for the probe row that rides along every step),
L layers, D directions, H hidden units, G gate blocks of the cell, I a layer's input size
(the task's for layer 0, D·H above it), O the readout's outputs, P loss positions.

Where the bytes go (:class:`Estimate`), for every layer and direction:

* the forward caches, T·(B+1) rows each: h_t and h_{t-1}, the cell states, the gate
  activations and whatever else the cell's backward pass reads (see ``_CELL_ROWS``), and
  the layer's input (a reversed copy of it for the backward direction);
* the backward pass's results, kept until the capture has read them: ∂L/∂h_t, ∂L/∂c_t and
  ∂L/∂x_t;
* the temporaries of the largest pass (the pre-activation gradients of a layer walked
  back, say), and the holes that the passes leave in the heap;
* the parameters, their gradients, the trainer's copy for undoing a bad update, the
  optimiser's state (Adam: two per parameter) and its temporaries;
* the capture: per-unit gate means, the probe's states, and the eigen- and singular-value
  decompositions of every recurrent block, all while the caches are still alive;
* the task's batch (float32, then cast) and the readout's logits at the loss positions;
* a fixed base: the interpreter with torch, numpy and the engine loaded.

The cells run compiled loops or PyTorch operations (:mod:`gradviz.engine.native`), which
keep different tensors; the estimate assumes the compiled loops unless it is told
otherwise or ``GRADVIZ_NATIVE=0`` turns them off. Held against the peak resident memory
of real training steps (tests/test_faults_memory.py), it came within 0.9-1.3 times it.
The history a session keeps grows with the run but is bounded on its own (at most 256 MB,
see :class:`~gradviz.engine.runs.history.History`) and is not part of one step.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

from gradviz.config import RunConfig
from gradviz.registry import cell_spec

# Resident memory of a process that has imported torch and gradviz.engine.training.train and
# trained one tiny step (T 3, H 1, B 1): 308-316 MB measured on Linux x86-64 with torch
# 2.13 for the CPU. Most of it is torch's libraries, which a first step faults in.
BASE_BYTES = 320 * 2**20

# A configuration whose estimate is above this fraction of the available memory is warned
# about: the estimate is not exact, and the machine has other programs to run.
NEAR_FRACTION = 0.6

# What one layer-direction of each cell holds (gradviz.engine.model.cells), in (T, B+1, H)
# tensors: (kept from its forward pass to the end of the step, its forward pass's
# temporaries, its backward pass's temporaries); [compiled loops] and [PyTorch operations].
# The LSTMs keep the x_t half of their [x_t, h_{t-1}] rows too (I more floats per row):
# all three in the compiled loops, the plain LSTM in PyTorch's.
#   rnn       kept: h, h_{t-1}, φ'; fwd: the fused kernel's W_ih x, h²; bwd: dz
#   lstm      kept: 4 gates, c, h, h_{t-1}, the h_{t-1} half of xh, [tanh c];
#             fwd: [W_ih x for all t] [the fused kernel's W_ih x and steps];
#             bwd: [dz (4H)] [one chunk of timesteps, small]
#   peephole, kept: 4 (coupled: 3) gates, c, h, h_{t-1}, [the h_{t-1} half of xh], the
#   coupled   scan's M and N ((G+1)·H each) and A, the peephole's c_{t-1} too;
#             fwd: tanh c, c_{t-1}, the peephole or coupling factors, their stack; bwd: R
#   gru       kept: [3 gates, u_n] [r, z, n, K_h, K_x], h, h_{t-1};
#             fwd: [W_ih x] [W_ih x, W_hh h, C_r, C_z, C_n and some twenty element-wise
#             temporaries, which the heap fills only in part: measured]; bwd: dz_h, dz_x
_CELL_ROWS: dict[bool, dict[str, tuple[int, int, int]]] = {
    True: {"rnn-tanh": (3, 2, 1), "rnn-relu": (3, 2, 1), "lstm": (9, 4, 4),
           "lstm-peephole": (20, 12, 6), "lstm-coupled": (16, 10, 5), "gru": (6, 3, 6)},
    False: {"rnn-tanh": (3, 2, 1), "rnn-relu": (3, 2, 1), "lstm": (8, 6, 1),
            "lstm-peephole": (19, 12, 6), "lstm-coupled": (15, 10, 5), "gru": (11, 20, 6)},
}
# The modern cells run PyTorch operations on either path (the orthogonal RNN's scan is the
# tanh RNN's); rows counted from their caches (h, h_{t-1}, the factor, the gates shown)
# and the tensors their passes make, not measured.
_MODERN_ROWS = {"mingru": (5, 4, 5), "minlstm": (6, 7, 9), "indrnn": (6, 2, 3),
                "lru": (4, 4, 5)}
for _rows in _CELL_ROWS.values():
    _rows.update(_MODERN_ROWS, **{"rnn-orthogonal": _rows["rnn-tanh"]})
# Heap holes per layer-direction, as (T, B+1, H) tensors (see ``temporaries`` below).
_HOLES = 2
_KEEPS_XH = {True: frozenset({"lstm", "lstm-peephole", "lstm-coupled"}),
             False: frozenset({"lstm"})}

# Copies of the parameters that each optimiser keeps as its state.
_OPTIMIZER_STATE = {"sgd": 0, "adam": 2, "rmsprop": 1, "adagrad": 1}

# The text task's vocabulary when the text itself is not given: plain Latin text.
TEXT_VOCABULARY = 128


@dataclass(frozen=True)
class Estimate:
    """The bytes one training step needs at its peak, by where they go."""
    base: int          # the interpreter, torch, numpy and the engine
    parameters: int    # weights, gradients, the undo copy, optimiser state and temporaries
    batch: int         # the task's inputs and targets, the readout at the loss positions
    forward: int       # every layer-direction's forward cache and input
    backward: int      # the backward pass's results
    temporaries: int   # the largest pass's temporaries and the holes the passes leave
    capture: int       # per-unit captures and ρ/σ of the recurrent blocks

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


def task_sizes(config: RunConfig, text: str | None = None) -> tuple[int, int, int]:
    """(input size I, output size O, loss positions P) of ``config``'s task. ``text``: the
    text task's contents (its vocabulary is its distinct characters); without it the text
    task is assumed to have ``TEXT_VOCABULARY`` characters."""
    T = config.seq_len
    if config.task in ("adding", "adding-1997"):
        return 2, 1, 1
    if config.task == "copy":
        return 10, 8, min(10, max(1, T // 3))   # 8 symbols, a blank and a delimiter
    if config.task == "recall":
        return 8, 4, 1                           # 4 classes, 4 distractors
    if config.task == "series":
        return 1, 1, 1
    if config.task == "generate":
        return 4, 4, T                           # 4 seed symbols, 4 pattern symbols
    if config.task == "reber":
        return 7, 7, T
    if config.task == "text":
        V = len(set(text)) if text else TEXT_VOCABULARY
        return V, V, T
    raise ValueError(f"unknown task {config.task!r}")


def estimate(config: RunConfig, text: str | None = None, compiled: bool | None = None,
             sizes: tuple[int, int, int] | None = None) -> Estimate:
    """Where the memory of one training step of ``config`` goes (see the module's text).

    ``compiled``: whether the cells run the compiled loops (gradviz.engine.native); None
    assumes they do unless ``GRADVIZ_NATIVE=0`` turns them off. ``sizes``: (I, O, P) in
    place of the task's (:func:`task_sizes`), for a model that is not gradviz's own."""
    if compiled is None:
        compiled = os.environ.get("GRADVIZ_NATIVE", "1") != "0"
    cell = cell_spec(config.cell)
    keep_h, fwd_tmp, bwd_tmp = _CELL_ROWS[compiled][config.cell]
    s = 8 if config.dtype == "float64" else 4
    T, H, L = config.seq_len, config.hidden, config.layers
    D = 2 if config.bidirectional else 1
    G = len(cell.blocks)
    R = T * (config.batch_size + 1)
    I0, O, P = sizes or task_sizes(config, text)
    has_c = cell.has_cell_state

    def layer_in(k: int) -> int:
        return I0 if k == 0 else D * H

    # Parameters: every layer-direction's weights and biases, and the readout.
    n_params = sum(G * H * (layer_in(k) + H + 2) + (3 * H if cell.has_peepholes else 0)
                   for k in range(L)) * D + O * (D * H + 1)
    # The weights, their gradients and the copy that undoes a non-finite update, the
    # optimiser's state and one set of temporaries (the update's, the clipping's, and
    # the transposed weights and gradients the cells make).
    copies = 3 + _OPTIMIZER_STATE[config.optimizer] + 1
    if config.optimizer == "sgd" and config.momentum > 0:
        copies += 1
    parameters = copies * n_params * s

    # The batch as the task makes it (float32), cast to the dtype with the probe row; the
    # readout at the loss positions with its logits, softmax and their gradients.
    batch = 4 * T * config.batch_size * I0 + s * R * I0 \
        + s * P * config.batch_size * (2 * D * H + 4 * O)

    # Forward: each layer-direction's cache; for a backward direction a reversed copy of
    # its input; above the first layer of a bidirectional network the concatenated input;
    # the network's output (the top layer's h, concatenated when bidirectional).
    forward_rows = 0
    for k in range(L):
        I = layer_in(k)
        forward_rows += D * (keep_h * H + (I if config.cell in _KEEPS_XH[compiled] else 0))
        if D == 2:
            forward_rows += I + (D * H if k > 0 else 0)
    if D == 2:
        forward_rows += D * H
    forward_rows += D * H                                    # ∂L/∂output
    forward = forward_rows * R * s

    # Backward: ∂L/∂h_t (and ∂L/∂c_t) of every layer-direction and ∂L/∂x_t above layer
    # 0, all kept until the capture has read them.
    backward = (D * L * H * (2 if has_c else 1) + D * (L - 1) * D * H) * R * s

    # The largest pass's temporaries: a forward pass's, or a backward pass's with the
    # gradient arriving from the layer above and its contiguous per-direction copy. And
    # the holes that every pass leaves in the heap, too small or too scattered for a
    # later tensor (measured: about two (T, B+1, H) tensors per layer-direction).
    walk = max(fwd_tmp, bwd_tmp + (D if L > 1 else 0) + (1 if D == 2 else 0))
    temporaries = (walk + _HOLES * L * D) * H * R * s

    # Capture: the gate means (T, G', H) and the probe's states (T, H) of every
    # layer-direction: in the caches, stacked, as float32 arrays, and the previous step's
    # arrays that the session still holds; the blocks' eigen- and singular values (a
    # float64 copy of every (H, H) block and LAPACK's working copy of it).
    shown = len(cell.gates)
    per_unit = L * D * T * H * (shown + (2 if has_c else 1))
    spectral = L * D * G * H * H * (s + 2 * 8)
    capture = per_unit * (2 * s + 2 * 4) + spectral

    return Estimate(base=BASE_BYTES, parameters=parameters, batch=batch, forward=forward,
                    backward=backward, temporaries=temporaries, capture=capture)


def estimate_bytes(config: RunConfig, text: str | None = None,
                   compiled: bool | None = None) -> int:
    """The peak memory one training step of ``config`` needs, in bytes (see
    :func:`estimate` for ``text`` and ``compiled``)."""
    return estimate(config, text, compiled).total


def available_bytes() -> int | None:
    """Memory a new process can take without swapping: MemAvailable on Linux (less where
    a cgroup limit is lower), else the physical memory; None where neither is known."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    limit = _cgroup_room()
    if limit is not None:
        found.append(limit)
    if found:
        return min(found)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):   # no sysconf (Windows), or no such name
        return None


def _cgroup_room() -> int | None:
    """What the cgroup v2 memory limit leaves (memory.max - memory.current), if any."""
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            used = int(f.read().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def human_bytes(n: float) -> str:
    """A size as a person says it: 850 MB, 3.2 GB, 31 GB (powers of 1024)."""
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 else f"{round(value)} {unit}"
    return f"{int(n)} bytes"


def _largest(config: RunConfig, name: str, budget: float, text: str | None,
             compiled: bool | None) -> int:
    """The largest value of the integer setting ``name``, at most its current one, whose
    estimate is within ``budget``; 0 if not even 1 is."""
    lo, hi = 0, getattr(config, name)
    while lo < hi:                       # the estimate grows with every such setting
        mid = (lo + hi + 1) // 2
        if estimate_bytes(config.replace(**{name: mid}), text, compiled) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _what_to_lower(config: RunConfig, have: int, text: str | None,
                   compiled: bool | None) -> str:
    """What would bring the estimate within NEAR_FRACTION of ``have``: the batch size or
    the sequence length alone, with the value that fits, where one of them is enough."""
    budget = NEAR_FRACTION * have
    options = []
    for name, label in (("batch_size", "batch size"), ("seq_len", "sequence length")):
        fits = _largest(config, name, budget, text, compiled)
        if fits:
            options.append(f"the {label} to {fits}")
    if not options:
        return "lower the batch size, sequence length, hidden size or layers together"
    return "lower " + " or ".join(options)


def check(config: RunConfig, text: str | None = None, compiled: bool | None = None) -> str | None:
    """None if one training step of ``config`` fits in the available memory, else one
    line for the user saying what it needs, what the machine has and what to lower. On a
    CUDA device the step's tensors live on the GPU, whose memory is not asked: None."""
    if config.device != "cpu":
        return None
    need, have = estimate_bytes(config, text, compiled), available_bytes()
    if have is None or need <= have:
        return None
    return (f"needs about {human_bytes(need)} of memory; this machine has "
            f"{human_bytes(have)} available; {_what_to_lower(config, have, text, compiled)}")


def warning(config: RunConfig, text: str | None = None, compiled: bool | None = None) -> str | None:
    """One line when ``config`` fits but takes more than ``NEAR_FRACTION`` of the
    available memory; None otherwise (also when :func:`check` refuses it)."""
    if config.device != "cpu":
        return None
    need, have = estimate_bytes(config, text, compiled), available_bytes()
    if have is None or need > have or need <= NEAR_FRACTION * have:
        return None
    return (f"needs about {human_bytes(need)} of memory, {round(100 * need / have)}% of "
            f"the {human_bytes(have)} this machine has available; other programs may "
            f"slow down or fail; to leave room, "
            f"{_what_to_lower(config, have, text, compiled)}")


__all__ = ["Estimate", "BASE_BYTES", "NEAR_FRACTION", "TEXT_VOCABULARY", "estimate",
           "estimate_bytes", "available_bytes", "check", "warning", "human_bytes",
           "task_sizes"]
