"""Every cell, task, optimiser and choice gradviz offers, registered once.

The configuration's validation, ``gradviz run``'s options, the app's control panel, the
cells' gate tables and the views' labels all read these tables, so adding a cell or an
optimiser means adding one entry here (and its implementation). Plain data: importing
this module imports neither torch nor Qt.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    """One allowed value of a setting: its name (as in run files and on the command line),
    the label the app shows, and a one-line help text."""
    name: str
    label: str
    help: str = ""


@dataclass(frozen=True)
class GateSpec:
    """A gate as the user sees it: its name in PyTorch's order (i, f, g, o; r, z, n),
    the range of its activation and what it means."""
    name: str
    lo: float
    hi: float
    meaning: str

    @property
    def range(self) -> tuple[float, float]:
        return (self.lo, self.hi)


@dataclass(frozen=True)
class CellSpec(Choice):
    """A recurrent cell. ``blocks`` are the parameter gate blocks in PyTorch's order (the
    rows of ``weight_ih``); ``gates`` those shown to the user (the coupled LSTM shows
    i = 1 − f, which has no block of its own). ``gamma`` bounds the derivative of the
    nonlinearity the recurrent product passes through (1 for tanh and ReLU), which
    Pascanu et al.'s vanishing condition ρ < 1/γ refers to."""
    blocks: tuple[str, ...] = ()
    gates: tuple[GateSpec, ...] = ()
    has_cell_state: bool = False
    has_forget_gate: bool = False
    has_peepholes: bool = False
    gamma: float = 1.0
    # ∂h_t/∂h_{t-1} is diagonal (the modern cells): the gradient through time is a product
    # of per-unit factors, exact, not only bounded (the cell's ``factor``).
    diagonal: bool = False
    # What the spectrum shows in place of the W_h· blocks (one (H, H) matrix each, made by
    # the cell's ``recurrent_blocks``); empty: the blocks of weight_hh.
    recurrent: tuple[str, ...] = ()

    @property
    def rho_names(self) -> tuple[str, ...]:
        """The names of the recurrent matrices whose ρ and σ_max are captured."""
        return self.recurrent or tuple(f"W_h{b}" for b in self.blocks)

    @property
    def gate_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.gates)

    @property
    def gate_ranges(self) -> tuple[tuple[float, float], ...]:
        return tuple(g.range for g in self.gates)


@dataclass(frozen=True)
class TaskSpec(Choice):
    """A training problem. ``is_language``: a character model that can sample text;
    ``needs_file``: it reads the file named by ``RunConfig.text_file`` (the text task: a
    built-in text when it names none)."""
    is_language: bool = False
    needs_file: bool = False


_SIGMOID = (0.0, 1.0)
_TANH = (-1.0, 1.0)


def _gate(name: str, bounds: tuple[float, float], meaning: str) -> GateSpec:
    return GateSpec(name, bounds[0], bounds[1], meaning)


_LSTM_GATES = (
    _gate("i", _SIGMOID, "input gate: how much of the candidate g enters the cell state"),
    _gate("f", _SIGMOID, "forget gate: how much of c_{t-1} the cell state keeps"),
    _gate("g", _TANH, "cell candidate: the new content offered to the cell state"),
    _gate("o", _SIGMOID, "output gate: how much of tanh(c_t) reaches h_t"),
)

# A gate is saturated where its activation lies in the bottom or the top SATURATION_BAND of
# its range: there its derivative is near 0 and the gradient through it fades. The engine's
# counts, the compiled loops' self-check, the views and their keys all use this one band.
SATURATION_BAND = 0.1


def saturation_bounds(lo: float, hi: float) -> tuple[float, float]:
    """The thresholds below and above which an activation in [lo, hi] counts as saturated."""
    return lo + SATURATION_BAND * (hi - lo), lo + (1 - SATURATION_BAND) * (hi - lo)


CELLS: dict[str, CellSpec] = {c.name: c for c in (
    CellSpec("rnn-tanh", "RNN (tanh)",
             "h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)",
             blocks=("h",), gates=(_gate("h", _TANH, "hidden state h_t = tanh(…)"),)),
    # ReLU has no upper bound; [0, 1] is the range its saturation fractions refer to.
    CellSpec("rnn-relu", "RNN (ReLU)",
             "h_t = max(0, W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)",
             blocks=("h",), gates=(_gate("h", (0.0, 1.0), "hidden state h_t = max(0, …)"),)),
    CellSpec("lstm", "LSTM",
             "c_t = f ⊙ c_{t-1} + i ⊙ g, h_t = o ⊙ tanh(c_t) (Hochreiter & Schmidhuber 1997)",
             blocks=("i", "f", "g", "o"), gates=_LSTM_GATES, has_cell_state=True,
             has_forget_gate=True),
    CellSpec("lstm-peephole", "LSTM, peephole",
             "LSTM whose gates also see the cell state (Gers & Schmidhuber 2000)",
             blocks=("i", "f", "g", "o"), gates=_LSTM_GATES, has_cell_state=True,
             has_forget_gate=True, has_peepholes=True),
    CellSpec("lstm-coupled", "LSTM, coupled gates",
             "LSTM with the input gate tied to the forget gate, i = 1 − f (Greff et al. 2017)",
             blocks=("f", "g", "o"),
             gates=(_gate("i", _SIGMOID, "input gate, coupled: i = 1 − f"),) + _LSTM_GATES[1:],
             has_cell_state=True, has_forget_gate=True),
    CellSpec("gru", "GRU",
             "h_t = (1 − z) ⊙ n + z ⊙ h_{t-1} (Cho et al. 2014)",
             blocks=("r", "z", "n"), gates=(
                 _gate("r", _SIGMOID, "reset gate: how much of W_hn h_{t-1} + b_hn reaches n"),
                 _gate("z", _SIGMOID, "update gate: how much of h_{t-1} h_t keeps"),
                 _gate("n", _TANH, "new-state candidate"))),
)}

# -- the modern recurrences (issue 22), kept apart from the classic cells above ------------
MODERN_CELLS: dict[str, CellSpec] = {c.name: c for c in (
    CellSpec("mingru", "minGRU",
             "h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t, z and h̃ from x_t only "
             "(Feng et al. 2024)",
             blocks=("z", "h"), gates=(
                 _gate("z", _SIGMOID, "update gate σ(W_z x_t + b_z): ∂h_t/∂h_{t-1} = 1 − z"),
                 _gate("h", _TANH, "candidate h̃_t = W_h x_t + b_h (linear; ±1 for reference)")),
             diagonal=True, recurrent=("1−σ(b_z)",)),
    CellSpec("minlstm", "minLSTM",
             "h_t = f′ ⊙ h_{t-1} + i′ ⊙ h̃_t, f′ = f/(f + i), gates from x_t only "
             "(Feng et al. 2024)",
             blocks=("f", "i", "h"), gates=(
                 _gate("f", _SIGMOID, "normalised forget gate f′ = f/(f + i) = ∂h_t/∂h_{t-1}"),
                 _gate("i", _SIGMOID, "normalised input gate i′ = i/(f + i) = 1 − f′"),
                 _gate("h", _TANH, "candidate h̃_t = W_h x_t + b_h (linear; ±1 for reference)")),
             has_forget_gate=True, diagonal=True, recurrent=("f′ at x = 0",)),
    CellSpec("indrnn", "IndRNN",
             "h_t = ReLU(W x_t + u ⊙ h_{t-1} + b), u a vector (Li et al. 2018)",
             blocks=("h",), gates=(
                 _gate("h", (0.0, 1.0), "hidden state h_t = max(0, …)"),
                 _gate("j", (0.0, 1.0), "∂h_t/∂h_{t-1} = u ⊙ 𝟙[active]")),
             diagonal=True, recurrent=("diag(u)",)),
    CellSpec("lru", "LRU",
             "x_t = λ ⊙ x_{t-1} + γ ⊙ (B u_t), λ = exp(−e^ν + i e^θ), γ = √(1 − |λ|²); "
             "H/2 complex units, shown as real and imaginary parts (Orvieto et al. 2023)",
             blocks=("x",), gates=(
                 _gate("x", _TANH, "state: real parts, then imaginary parts"),
                 _gate("a", _SIGMOID, "|λ| of each unit: ∂ of the state's norm per step")),
             diagonal=True, recurrent=("diag(|λ|)",)),
    CellSpec("rnn-orthogonal", "Orthogonal RNN",
             "h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), W_hh = exp(A) kept "
             "orthogonal (Lezcano-Casado & Martínez-Rubio 2019)",
             blocks=("h",), gates=(_gate("h", _TANH, "hidden state h_t = tanh(…)"),)),
)}
CELLS.update(MODERN_CELLS)

TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("adding", "Adding problem",
             "two marked numbers among T random ones; predict their sum"),
    TaskSpec("adding-1997", "Adding, 1997",
             "the adding problem as Hochreiter & Schmidhuber set it: values in [-1, 1], "
             "target 0.5 + (X1 + X2) / 4, solved when the error is below 0.04"),
    TaskSpec("copy", "Copy / memory", "reproduce a short symbol string after a long gap"),
    TaskSpec("recall", "Delayed recall",
             "report the class of the first symbol after T distractors"),
    TaskSpec("series", "Time series", "predict the next value of a noisy signal"),
    TaskSpec("generate", "One to many",
             "one to many: one seed symbol at step 0, then produce its fixed pattern of T "
             "symbols"),
    TaskSpec("text", "Text (char LM)", "character language model on a UTF-8 text file, "
             "or on Python's own source",
             is_language=True, needs_file=True),
    TaskSpec("reber", "Reber grammar", "the embedded Reber grammar, a long-range dependency",
             is_language=True),
)}

OPTIMIZERS: dict[str, Choice] = {o.name: o for o in (
    Choice("sgd", "SGD", "stochastic gradient descent, with momentum if set"),
    Choice("adam", "Adam", "Adam (Kingma & Ba 2015)"),
    Choice("rmsprop", "RMSprop", "RMSprop (Tieleman & Hinton 2012)"),
    Choice("adagrad", "Adagrad", "Adagrad (Duchi et al. 2011), min-char-rnn's optimiser"),
)}

CLIP_MODES: dict[str, Choice] = {c.name: c for c in (
    Choice("none", "none", "no clipping"),
    Choice("value", "by value", "clamp every gradient component to ± the threshold"),
    Choice("norm", "by global norm",
           "rescale the whole gradient so that its global L2 norm is at most the threshold"),
)}

INITS: dict[str, Choice] = {c.name: c for c in (
    Choice("default", "default", "PyTorch's uniform ±1/√H"),
    Choice("orthogonal", "orthogonal", "a random orthogonal recurrent matrix"),
    Choice("identity", "identity", "the identity recurrent matrix (Le et al. 2015)"),
    Choice("normal", "normal", "Gaussian entries of variance 1/H"),
)}

DEVICES: dict[str, Choice] = {c.name: c for c in (
    Choice("cpu", "CPU"), Choice("cuda", "CUDA GPU"))}

DTYPES: dict[str, Choice] = {c.name: c for c in (
    Choice("float32", "float32"), Choice("float64", "float64"))}

# The tables of the settings whose value is a name, by RunConfig field.
CHOICES: dict[str, dict[str, Choice]] = {
    "task": TASKS, "cell": CELLS, "optimizer": OPTIMIZERS, "clip": CLIP_MODES,
    "init": INITS, "device": DEVICES, "dtype": DTYPES,
}


def cell_spec(name: str) -> CellSpec:
    """The registered cell ``name``; ValueError naming the allowed ones otherwise."""
    return _lookup(CELLS, "cell", name)


def task_spec(name: str) -> TaskSpec:
    return _lookup(TASKS, "task", name)


def _lookup(table: dict, what: str, name: str):
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {what} {name!r}; allowed: {', '.join(table)}") from None


__all__ = ["Choice", "GateSpec", "CellSpec", "TaskSpec", "CELLS", "MODERN_CELLS",
           "TASKS", "OPTIMIZERS",
           "CLIP_MODES", "INITS", "DEVICES", "DTYPES", "CHOICES", "cell_spec", "task_spec"]
