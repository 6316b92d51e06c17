"""Pascanu, Mikolov & Bengio's cliff (2013, Fig. 6): one sigmoid unit through 50 steps.

    x_t = w·σ(x_{t−1}) + b,   x_0 = 0.5,   t = 1 … 50,   L(w, b) = (σ(x_50) − 0.7)²

For some (w, b) the map x ↦ wσ(x) + b has two stable fixed points, and a small change of
(w, b) moves x_50 from one to the other: the loss surface has a wall, and a gradient
step on the wall is huge. Plain gradient descent jumps off it; clipping the gradient's
norm keeps the step short. The gradient is a hand-written BPTT over the 50 steps
(:func:`loss_and_grad`), vectorised over any number of (w, b) pairs; tests check it
against autograd. numpy only, float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEPS = 50
X0 = 0.5
TARGET = 0.7


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))      # σ without overflow for large |x|


def loss_and_grad(w, b, steps: int = STEPS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L, ∂L/∂w, ∂L/∂b at every (w, b) (arrays of one shape, broadcast)."""
    w, b = np.broadcast_arrays(np.asarray(w, np.float64), np.asarray(b, np.float64))
    s = np.empty((steps + 1,) + w.shape)           # s_t = σ(x_t), t = 0 … steps
    s[0] = _sigmoid(np.full(w.shape, X0))
    for t in range(1, steps + 1):
        s[t] = _sigmoid(w * s[t - 1] + b)
    loss = (s[-1] - TARGET) ** 2
    dx = 2.0 * (s[-1] - TARGET) * s[-1] * (1.0 - s[-1])      # ∂L/∂x_steps
    dw, db = np.zeros(w.shape), np.zeros(w.shape)
    for t in range(steps, 0, -1):
        dw += dx * s[t - 1]
        db += dx
        dx = dx * w * s[t - 1] * (1.0 - s[t - 1])            # ∂L/∂x_{t−1}
    return loss, dw, db


def loss_surface(ws: np.ndarray, bs: np.ndarray) -> np.ndarray:
    """L on the grid (len(bs), len(ws)): row j is b = bs[j]."""
    w, b = np.meshgrid(np.asarray(ws, np.float64), np.asarray(bs, np.float64))
    return loss_and_grad(w, b)[0]


@dataclass
class Path:
    """Gradient descent from a start: points (n, 2) of (w, b), the loss at each, and the
    norm of the gradient each step saw before clipping."""
    points: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray


def descend(w0: float, b0: float, lr: float, steps: int, clip: float | None = None) -> Path:
    """``steps`` steps of gradient descent from (w0, b0); with ``clip``, the gradient is
    rescaled to norm ``clip`` where it is longer (clipping by norm). Stops early at a
    non-finite point."""
    points, losses, norms = [(float(w0), float(b0))], [], []
    w, b = float(w0), float(b0)
    for _ in range(steps):
        loss, dw, db = (float(v) for v in loss_and_grad(w, b))
        norm = float(np.hypot(dw, db))
        losses.append(loss)
        norms.append(norm)
        if clip is not None and norm > clip:
            dw, db = dw * clip / norm, db * clip / norm
        w, b = w - lr * dw, b - lr * db
        if not (np.isfinite(w) and np.isfinite(b)):
            break
        points.append((w, b))
    losses.append(float(loss_and_grad(w, b)[0]) if len(points) > len(losses) else np.nan)
    return Path(np.array(points), np.array(losses[:len(points)]), np.array(norms))


__all__ = ["STEPS", "X0", "TARGET", "loss_and_grad", "loss_surface", "Path", "descend"]
