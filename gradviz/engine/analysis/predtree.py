"""The next-character prediction tree of a character model (Fig. 1–2 of the course text).

A character model reads a prefix ("The quick brown f") and gives a distribution over the
next character. :func:`prediction_tree` keeps the k most likely next characters, feeds
each one back in and keeps the k most likely after it, to a given depth: a tree whose
leaves are the k^depth most likely continuations, less those whose probability along the
path falls below a floor (they are pruned, with everything below them).

Every distribution comes from :func:`next_distribution`, the one step of the network and
its readout that the text sampler (``Trainer.generate``) draws from, at the same
temperature: softmax(readout(h_t) / temperature), in float64.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from gradviz.engine.model.network import Network

State = tuple[Tensor, Tensor | None] | None
# The largest tree asked for: k ≤ MAX_K candidates per node, MAX_DEPTH levels.
MAX_K = 5
MAX_DEPTH = 4


@torch.no_grad()
def next_distribution(net: Network, indices: Sequence[int], state: State = None,
                      temperature: float = 1.0) -> tuple[Tensor, State]:
    """P(next symbol | the symbols ``indices`` read from ``state``): (V,) float64 on the
    CPU, and the state after them. What the text sampler draws from."""
    I = net.input_size
    p = net.readout.weight
    x = torch.zeros(len(indices), 1, I, dtype=p.dtype, device=p.device)
    x[torch.arange(len(indices)), 0, torch.as_tensor(list(indices), dtype=torch.long)] = 1.0
    fwd = net.run(x, state)
    logits = net.readout(fwd.output[-1, 0]) / temperature
    return torch.softmax(logits.double(), -1).cpu(), (fwd.h_n, fwd.c_n)


@dataclass(frozen=True)
class Branch:
    """One node of the tree: ``symbol`` after the prefix and ``path`` (the symbols between
    them), its probability given all that, and the product along the way."""
    symbol: str
    path: str                 # the symbols before this one, after the prefix
    probability: float        # P(symbol | prefix + path)
    path_probability: float   # P(path + symbol | prefix)
    children: tuple["Branch", ...] = field(default=())

    @property
    def depth(self) -> int:
        return len(self.path) + 1

    @property
    def text(self) -> str:
        return self.path + self.symbol


def check_tree_settings(k: int, depth: int, temperature: float, floor: float) -> None:
    """ValueError naming the setting that is out of range."""
    if not 1 <= k <= MAX_K:
        raise ValueError(f"the tree keeps 1 to {MAX_K} candidates per node, not {k}")
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"the tree's depth is 1 to {MAX_DEPTH}, not {depth}")
    if not temperature > 0 or temperature == float("inf"):
        raise ValueError(f"the temperature must be a positive number, not {temperature}")
    if not 0 <= floor < 1:
        raise ValueError(f"the probability floor is from 0 up to 1, not {floor}")


@torch.no_grad()
def prediction_tree(net: Network, symbols: Sequence[str], prefix: str, k: int = 5,
                    depth: int = 3, temperature: float = 1.0,
                    floor: float = 1e-3) -> tuple[Branch, ...]:
    """The top-``k`` next symbols after ``prefix``, each with its own top ``k``, to
    ``depth`` levels; a branch whose path probability is below ``floor`` is left out
    with all below it. Candidates are in order of probability (ties: vocabulary order).
    ValueError, in one line, for an empty prefix, a symbol the model does not know, a
    bidirectional model (it reads the future) or a setting out of range."""
    check_tree_settings(k, depth, temperature, floor)
    if net.directions == 2:
        raise ValueError("a bidirectional model reads the future, so it predicts no next "
                         "character; train a one-directional one")
    if not prefix:
        raise ValueError("type a prefix of at least one character")
    index = {s: i for i, s in enumerate(symbols)}
    unknown = sorted(set(prefix) - index.keys())
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not one of the {len(symbols)} characters this "
                         f"model knows; use only characters from its text")
    if len(symbols) != net.readout.out_features:
        raise ValueError(f"{len(symbols)} symbols for a model of "
                         f"{net.readout.out_features} outputs")
    probs, state = next_distribution(net, [index[c] for c in prefix], None, temperature)
    return _expand(net, symbols, probs, state, "", 1.0, k, depth, temperature, floor)


def _expand(net, symbols, probs, state, path, path_p, k, depth, temperature, floor):
    # Stable order: by probability, then vocabulary index (torch.topk's order of ties is
    # not specified).
    order = sorted(range(len(probs)), key=lambda i: (-float(probs[i]), i))[:k]
    out = []
    for i in order:
        p = float(probs[i])
        joint = path_p * p
        if joint < floor or p <= 0.0:
            continue
        children: tuple[Branch, ...] = ()
        if depth > 1:
            after, state_after = next_distribution(net, [i], state, temperature)
            children = _expand(net, symbols, after, state_after, path + symbols[i], joint, k,
                               depth - 1, temperature, floor)
        out.append(Branch(symbols[i], path, p, joint, children))
    return tuple(out)


def tree_rows(tree: Sequence[Branch]) -> list[tuple[int, str, str, float, float]]:
    """The tree depth first, parents before their children: (depth, path, symbol,
    probability, path probability) for each node, as the view's CSV has them."""
    rows = []

    def walk(branches):
        for b in branches:
            rows.append((b.depth, b.path, b.symbol, b.probability, b.path_probability))
            walk(b.children)

    walk(tree)
    return rows


__all__ = ["Branch", "next_distribution", "prediction_tree", "tree_rows",
           "check_tree_settings", "MAX_K", "MAX_DEPTH"]
