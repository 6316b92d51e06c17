"""The classic pictures of the cells (and of the modern diagonal ones), as data: boxes, ⊙ and + nodes, and paths.

Coordinates are in a 100 × 64 frame (x to the right, y down); the previous state enters
on the left, the new one leaves on the right, x_t enters from below. Each path that a
gradient flows back along names what it carries: a path of gradviz.engine.analysis.paths and an
offset in t (the belt right of c_t carries what step t+1 handed back). No Qt here: the
view (celldiagram) draws these with QPainter.
"""
from __future__ import annotations

from dataclasses import dataclass

from gradviz.engine.runs.capture import Capture
from gradviz.registry import MODERN_CELLS, cell_spec


@dataclass(frozen=True)
class Box:
    name: str                      # the gate it shows (a name of the cell's gates) or a label
    x: float                       # centre
    y: float
    label: str
    equation: str
    gate: bool = True              # shows a gate's value (False: an operation only)
    w: float = 10.0
    h: float = 8.0


@dataclass(frozen=True)
class Node:
    symbol: str                    # "⊙", "+" or "1−"
    x: float
    y: float
    equation: str


@dataclass(frozen=True)
class Edge:
    points: tuple[tuple[float, float], ...]
    grad: tuple[str, int] | None = None    # (path name, offset in t) of the gradient it carries
    label: str = ""
    dashed: bool = False


@dataclass(frozen=True)
class Picture:
    boxes: tuple[Box, ...]
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    texts: tuple[tuple[float, float, str], ...]     # (x, y, text) of the states' names


def _lstm(peephole: bool, coupled: bool) -> Picture:
    peep = " + w_c· ⊙ c_{t−1}" if peephole else ""
    boxes = [
        Box("f", 28, 44, "f", f"f_t = σ(W_if x_t + W_hf h_{{t−1}} + b_f{peep})"),
        Box("i", 40, 44, "1−f" if coupled else "i",
            "i_t = 1 − f_t (coupled gate)" if coupled
            else f"i_t = σ(W_ii x_t + W_hi h_{{t−1}} + b_i{peep})"),
        Box("g", 52, 44, "g", "g_t = tanh(W_ig x_t + W_hg h_{t−1} + b_g)"),
        Box("o", 66, 44, "o", "o_t = σ(W_io x_t + W_ho h_{t−1} + b_o"
            + (" + w_co ⊙ c_t)" if peephole else ")")),
        Box("tanh_c", 80, 28, "tanh", "tanh(c_t)", gate=False),
    ]
    nodes = [Node("⊙", 28, 12, "f_t ⊙ c_{t−1}: what the cell state keeps"),
             Node("+", 46, 12, "c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t"),
             Node("⊙", 46, 28, "i_t ⊙ g_t: what enters the cell state"),
             Node("⊙", 80, 44, "h_t = o_t ⊙ tanh(c_t)")]
    edges = [
        Edge(((0, 12), (28, 12)), ("belt", 0), "f_t ⊙ ∂L/∂c_t to c_{t−1}"),
        Edge(((28, 12), (80, 12)), ("dc", 0), "∂L/∂c_t"),
        Edge(((80, 12), (100, 12)), ("belt", 1), "along the belt from c_{t+1}"),
        Edge(((80, 12), (80, 24)), ("c_h", 0), "into c_t through h_t"),
        Edge(((28, 40), (28, 12))), Edge(((40, 40), (46, 28))), Edge(((52, 40), (46, 28))),
        Edge(((46, 28), (46, 12))), Edge(((71, 44), (80, 44))), Edge(((80, 32), (80, 44))),
        Edge(((80, 44), (80, 56), (100, 56)), ("dh", 0), "∂L/∂h_t"),
        Edge(((0, 56), (28, 56)), ("w", 0), "to h_{t−1} through W_hh"),
        Edge(((28, 56), (66, 56), (66, 48))), Edge(((28, 56), (28, 48))),
        Edge(((40, 56), (40, 48))), Edge(((52, 56), (52, 48))), Edge(((14, 64), (14, 56))),
    ]
    if peephole:
        edges += [Edge(((18, 12), (18, 40), (23, 40)), label="peephole", dashed=True),
                  Edge(((18, 40), (18, 50), (35, 50), (35, 47)), label="peephole", dashed=True),
                  Edge(((90, 12), (90, 38), (71, 38), (71, 41)), label="peephole", dashed=True)]
    if coupled:
        edges.append(Edge(((33, 44), (35, 44)), label="coupled: i = 1 − f", dashed=True))
    texts = ((1, 19, "cₜ₋₁"), (93, 19, "cₜ"), (1, 62, "hₜ₋₁"), (93, 62, "hₜ"),
             (15.5, 64, "xₜ"))
    return Picture(tuple(boxes), tuple(nodes), tuple(edges), texts)


def _gru() -> Picture:
    boxes = (
        Box("r", 22, 44, "r", "r_t = σ(W_ir x_t + W_hr h_{t−1} + b_r)"),
        Box("z", 38, 44, "z", "z_t = σ(W_iz x_t + W_hz h_{t−1} + b_z)"),
        Box("n", 64, 44, "n", "n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))"),
    )
    nodes = (Node("⊙", 38, 12, "z_t ⊙ h_{t−1}: what h_t keeps of h_{t−1}"),
             Node("+", 74, 12, "h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}"),
             Node("1−", 52, 28, "1 − z_t"),
             Node("⊙", 64, 28, "(1 − z_t) ⊙ n_t"),
             Node("⊙", 50, 52, "r_t ⊙ (W_hn h_{t−1} + b_hn)"))
    edges = (
        Edge(((0, 12), (38, 12)), ("belt", 0), "z_t ⊙ ∂L/∂h_t to h_{t−1}"),
        Edge(((38, 12), (100, 12)), ("dh", 0), "∂L/∂h_t"),
        Edge(((8, 12), (8, 58), (22, 58)), ("w", 0), "to h_{t−1} through W_hh"),
        Edge(((22, 58), (50, 58), (50, 52))), Edge(((22, 58), (22, 48))),
        Edge(((38, 58), (38, 48))), Edge(((27, 44), (30, 44), (30, 52), (50, 52))),
        Edge(((50, 52), (59, 52), (59, 48))), Edge(((38, 40), (38, 12))),
        Edge(((38, 28), (52, 28))), Edge(((52, 28), (64, 28))), Edge(((64, 40), (64, 28))),
        Edge(((64, 28), (74, 28), (74, 12))), Edge(((16, 64), (16, 58))),
    )
    texts = ((1, 19, "hₜ₋₁"), (93, 19, "hₜ"), (17, 64, "xₜ"))
    return Picture(boxes, nodes, edges, texts)


def _rnn(relu: bool) -> Picture:
    phi = "max(0, ·)" if relu else "tanh"
    boxes = (Box("h", 50, 32, "ReLU" if relu else "tanh",
                 f"h_t = {phi}(W_ih x_t + b_ih + W_hh h_{{t−1}} + b_hh)", w=14, h=10),)
    edges = (Edge(((0, 32), (43, 32)), ("w", 0), "to h_{t−1} through W_hh"),
             Edge(((57, 32), (100, 32)), ("dh", 0), "∂L/∂h_t"),
             Edge(((50, 64), (50, 37))))
    texts = ((1, 39, "hₜ₋₁"), (93, 39, "hₜ"), (51.5, 64, "xₜ"))
    return Picture(boxes, (), edges, texts)


# The modern diagonal cells: (factor box, candidate box) as (gate, label, equation), and
# what the belt's ⊙ multiplies h_{t−1} by.
_DIAGONAL = {
    "mingru": (("z", "z", "z_t = σ(W_z x_t + b_z): sees x_t only"),
               ("h", "h̃", "h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t, h̃_t = W_h x_t + b_h"),
               "1 − z_t"),
    "minlstm": (("f", "f′", "f′_t = f_t/(f_t + i_t), f = σ(W_f x_t + b_f): sees x_t only"),
                ("h", "h̃", "h_t = f′_t ⊙ h_{t−1} + i′_t ⊙ h̃_t, h̃_t = W_h x_t + b_h"),
                "f′_t"),
    "indrnn": (("j", "u·𝟙", "j_t = u ⊙ 𝟙[W x_t + u ⊙ h_{t−1} + b > 0] = ∂h_t/∂h_{t−1}"),
               ("h", "ReLU", "h_t = max(0, W x_t + u ⊙ h_{t−1} + b)"), "u ⊙ 𝟙[active]"),
    "lru": (("a", "|λ|", "a = |λ|, λ = exp(−e^ν + i e^θ): the state turns by arg λ and "
                         "shrinks by |λ| per step"),
            ("x", "x_t", "x_t = λ ⊙ x_{t−1} + γ ⊙ (B u_t), γ = √(1 − |λ|²)"), "λ"),
}


def _diagonal(cell: str) -> Picture:
    """h_{t−1} ⊙ (the factor) + (what x_t brings) = h_t: the gradient to h_{t−1} is the
    factor times ∂L/∂h_t, and nothing else."""
    (fg, fl, fe), (cg, cl, ce), times = _DIAGONAL[cell]
    boxes = (Box(fg, 38, 44, fl, fe), Box(cg, 64, 44, cl, ce))
    if cell == "minlstm":
        boxes += (Box("i", 51, 44, "i′", "i′_t = i_t/(f_t + i_t), i = σ(W_i x_t + b_i): "
                                         "how much of h̃_t enters"),)
    nodes = (Node("⊙", 38, 12, f"{times} ⊙ h_{{t−1}}: what h_t keeps of h_{{t−1}}"),
             Node("+", 74, 12, ce.split(",")[0]))
    edges = (
        Edge(((0, 12), (38, 12)), ("w", 0), f"{times} ⊙ ∂L/∂h_t to h_{{t−1}}, all of it"),
        Edge(((38, 12), (74, 12))),
        Edge(((74, 12), (100, 12)), ("dh", 0), "∂L/∂h_t"),
        Edge(((38, 40), (38, 12))), Edge(((64, 40), (64, 28), (74, 28), (74, 12))),
        Edge(((16, 64), (16, 56), (64, 56), (64, 48))), Edge(((38, 56), (38, 48))),
    )
    texts = ((1, 19, "hₜ₋₁"), (93, 19, "hₜ"), (17, 64, "xₜ"))
    return Picture(boxes, nodes, edges, texts)


def picture(cell: str) -> Picture:
    """The picture of the registered cell ``cell``."""
    spec = cell_spec(cell)
    if cell in _DIAGONAL:
        return _diagonal(cell)
    if spec.has_cell_state:
        return _lstm(spec.has_peepholes, "i" not in spec.blocks)
    if "z" in spec.gate_names:
        return _gru()
    return _rnn(cell == "rnn-relu")


def cell_of(cap: Capture) -> str:
    """The registered cell a capture comes from, from what it names: its gates and their
    ranges, its recurrent blocks and its parameters (peephole weights ``weight_ch``)."""
    for name, spec in MODERN_CELLS.items():
        if spec.recurrent and tuple(cap.rho_names) == spec.recurrent:
            return name
    if any(n.startswith("parametrizations.") for n in cap.param_names):
        return "rnn-orthogonal"
    letters = tuple(b.removeprefix("W_h") for b in cap.rho_names)
    if "f" in cap.gate_names:
        if "i" not in letters:
            return "lstm-coupled"
        return "lstm-peephole" if any(n.startswith("weight_ch") for n in cap.param_names) \
            else "lstm"
    if "z" in cap.gate_names:
        return "gru"
    return "rnn-relu" if tuple(cap.gate_ranges[0]) == (0.0, 1.0) else "rnn-tanh"


__all__ = ["Box", "Node", "Edge", "Picture", "picture", "cell_of"]
