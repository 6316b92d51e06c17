"""The diagonal cells' gradient through time, from a capture's own numbers.

For minGRU, minLSTM, IndRNN and the LRU, ∂h_t/∂h_{t−1} is diagonal: one factor a_t per unit
(1 − z_t, f′_t, u ⊙ 𝟙[active], |λ| of the unit's complex pair). The reverse scan is then
dh_{t−1} = dout_{t−1} + a_t ⊙ dh_t, so with a loss on the last step alone

    |∂L/∂h_t|_j = |∂L/∂h_{T−1}|_j · ∏_{s=t+1}^{T−1} a_{s,j}

per sequence and unit: an exact product, not the bound a full W_hh allows. A capture holds
the factors as gates (batch means per unit and step: :func:`step_factors`), so
:func:`factor_product` is that product on the captured numbers — exact for one sequence,
and for a batch the product of the mean factors. These replace ρ(W_hh) for these cells.
numpy only, float64; arrays in time order, ``reverse`` for a backward direction.
"""
from __future__ import annotations

import numpy as np

# The gates of each diagonal cell (registry order), and the one that is its factor; True:
# the factor is 1 − that gate (minGRU's z multiplies the candidate, not h_{t−1}).
FACTOR_GATE = {("z", "h"): ("z", True), ("f", "i", "h"): ("f", False),
               ("h", "j"): ("j", False), ("x", "a"): ("a", False)}
FACTOR_WORDS = {("z", "h"): "1 − z", ("f", "i", "h"): "f′", ("h", "j"): "u·𝟙[active]",
                ("x", "a"): "|λ|"}


def is_diagonal(gate_names) -> bool:
    return tuple(gate_names) in FACTOR_GATE


def step_factors(gate_names, gates: np.ndarray) -> np.ndarray | None:
    """(T, H) the factor ∂h_t/∂h_{t−1} per step and unit from one layer-direction's gates
    (G, T, H) as a capture holds them; None for a cell that has no diagonal factor."""
    key = tuple(gate_names)
    if key not in FACTOR_GATE or gates is None:
        return None
    name, flip = FACTOR_GATE[key]
    g = np.asarray(gates[key.index(name)], dtype=np.float64)
    return 1.0 - g if flip else g


def factor_product(dh_last: np.ndarray, factors: np.ndarray, reverse: bool = False) -> np.ndarray:
    """(T,) ‖dh_last ⊙ ∏_{s>t} a_s‖ for every t: ``dh_last`` (H,) the gradient per unit
    (norm over the batch) at the last step of the processing order, ``factors`` (T, H)."""
    a = np.asarray(factors, dtype=np.float64)
    a = a[::-1] if reverse else a
    tail = np.ones_like(a)
    tail[:-1] = np.cumprod(a[:0:-1], axis=0)[::-1]
    values = np.sqrt(((np.asarray(dh_last, dtype=np.float64) * tail) ** 2).sum(-1))
    return values[::-1] if reverse else values


def factor_summary(factors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, min, max) over units of the factor at every step, each (T,)."""
    a = np.asarray(factors, dtype=np.float64)
    return a.mean(-1), a.min(-1), a.max(-1)


__all__ = ["FACTOR_GATE", "FACTOR_WORDS", "is_diagonal", "step_factors", "factor_product",
           "factor_summary"]
