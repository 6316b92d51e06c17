"""The textbook bounds on the gradient through time, from a capture's own numbers.

Plain RNNs (Pascanu, Mikolov & Bengio 2013, eq. 5-7). With h_t = φ(W_hh h_{t-1} + …)
and γ the bound of |φ'| (1 for tanh and for ReLU), the backward pass is
    ∂L/∂h_t = dout_t + (∂L/∂h_{t+1} ⊙ φ'(z_{t+1})) W_hh,
where dout_t is the gradient reaching h_t from outside the recurrence (the readout at t,
or the layer above). The Frobenius norm of a product is at most the norm times σ_max, so
    (step)      ‖∂L/∂h_t‖ ≤ ‖dout_t‖ + γ·σ_max·‖∂L/∂h_{t+1}‖,
and, unrolled from the last step T−1 (where ∂L/∂h_{T−1} = dout_{T−1}),
    (unrolled)  B_{T−1} = ‖∂L/∂h_{T−1}‖,  B_t = ‖dout_t‖ + γ·σ_max·B_{t+1}.
For a task whose loss reads the last step only, dout_t = 0 for t < T−1 in the top layer,
and B_t is the familiar ‖∂L/∂h_{T−1}‖·(γ·σ_max)^{T−1−t}; with a loss at every step (or
in a lower layer, which the layer above feeds at every t) the local terms ‖dout_t‖ keep
the bound true. Truncated BPTT only lowers the measured curve. The view draws the
unrolled bound, which holds for every task; :func:`rnn_step_bound` is its one-step form.

LSTM cells: ∂L/∂c_{t−1} receives f_t ⊙ ∂L/∂c_t along the cell state. Its scale from
the last step back is :func:`forget_product`, ‖∂L/∂c_{T−1}‖·∏_{s=t+1}^{T−1} f̄_s with
f̄_s the mean forget gate at s (over batch and units): the constant error carousel of
Hochreiter & Schmidhuber, drawn beside the measured ‖∂L/∂c_t‖. It is a picture of the
belt's share, not a bound (the path through h adds to it).

The split of ∂L/∂h_t (the sequence shapes, Fig. 11 of the course text): dout_t is the
*local* part, the gradient that arrives from the loss at t (or the layer above at t);
∂L/∂h_t − dout_t is the part *carried* back through the recurrence from later steps
(:func:`carried_gradient`). With a loss at the last step only, the local part is zero
before T−1 and the total is the carried part, which vanishes; with a loss at every step
the local terms keep the total up while the carried part still vanishes.

Every function below but :func:`carried_gradient` takes one layer-direction's (T,) arrays in time order and ``reverse``
for a backward direction (which runs from t = T−1 to 0); numpy only, float64.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

# sup |φ'| of the nonlinearity each recurrent block feeds, by the block's letter
# (W_hi feeds i = σ(·), W_hg feeds g = tanh(·), W_hh of a plain RNN feeds tanh or ReLU).
BLOCK_GAMMA = {"i": 0.25, "f": 0.25, "o": 0.25, "r": 0.25, "z": 0.25,
               "g": 1.0, "n": 1.0, "h": 1.0}
GAMMA_WORDS = {0.25: "σ′ ≤ ¼", 1.0: "tanh′, ReLU′ ≤ 1"}


class _Grads(Protocol):
    dh: object
    dout: object


def carried_gradient(grads: _Grads):
    """(T, B, H) ∂L/∂h_t − dout_t of one layer-direction's backward pass (a
    ``LayerGrads`` that :meth:`Network.backward` filled, processing order): the part of
    the total gradient carried back through the recurrence. Tensors in, a tensor out."""
    return grads.dh - grads.dout


def block_gamma(block_name: str) -> float:
    """γ of a recurrent block named as captures name them (``W_hi``, ``W_hh``, …)."""
    return BLOCK_GAMMA[block_name.removeprefix("W_h")]


def _processing(x: np.ndarray, reverse: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[::-1] if reverse else x


def rnn_step_bound(dh: np.ndarray, dout: np.ndarray, gamma_sigma: float,
                   reverse: bool = False) -> np.ndarray:
    """‖dout_t‖ + γσ_max‖∂L/∂h_{t+1}‖ from the measured ‖∂L/∂h_{t+1}‖; at the last step,
    which nothing follows, ‖dout‖ itself (equal to ‖∂L/∂h‖ there)."""
    h, d = _processing(dh, reverse), _processing(dout, reverse)
    bound = d.copy()
    bound[:-1] += gamma_sigma * h[1:]
    return _processing(bound, reverse)


def rnn_unrolled_bound(dh: np.ndarray, dout: np.ndarray, gamma_sigma: float,
                       reverse: bool = False) -> np.ndarray:
    """B_t = ‖dout_t‖ + γσ_max·B_{t+1} from B_{T−1} = ‖∂L/∂h_{T−1}‖."""
    h, d = _processing(dh, reverse), _processing(dout, reverse)
    bound = np.empty_like(h)
    bound[-1] = h[-1]
    for t in range(len(h) - 2, -1, -1):
        bound[t] = d[t] + gamma_sigma * bound[t + 1]
    return _processing(bound, reverse)


def forget_product(dc: np.ndarray, forget_mean: np.ndarray, reverse: bool = False) -> np.ndarray:
    """‖∂L/∂c_{T−1}‖·∏_{s=t+1}^{T−1} f̄_s for every t (T,)."""
    c, f = _processing(dc, reverse), _processing(forget_mean, reverse)
    tail = np.ones_like(f)
    tail[:-1] = np.cumprod(f[:0:-1])[::-1]
    return _processing(c[-1] * tail, reverse)


def decay_ratio(dh: np.ndarray, reverse: bool = False) -> np.ndarray:
    """‖∂L/∂h_t‖ / ‖∂L/∂h_{t+1}‖ (T−1,) in processing order's pairs, time order out:
    below 1 the gradient shrinks at that step on its way back. NaN where either is 0 or
    not finite."""
    h = _processing(dh, reverse)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = h[:-1] / h[1:]
    ratio[~np.isfinite(ratio) | (ratio <= 0)] = np.nan
    return _processing(ratio, reverse)


def geometric_mean(ratio: np.ndarray) -> float:
    """exp(mean log r) over the finite ratios; NaN if none."""
    r = np.asarray(ratio, dtype=np.float64)
    r = r[np.isfinite(r) & (r > 0)]
    return float(np.exp(np.log(r).mean())) if r.size else float("nan")


__all__ = ["carried_gradient", "BLOCK_GAMMA", "GAMMA_WORDS", "block_gamma", "rnn_step_bound",
           "rnn_unrolled_bound", "forget_product", "decay_ratio", "geometric_mean"]
