"""ρ(W) and σ_max(W) of every recurrent block, on every captured step, cheaply.

Pascanu, Mikolov & Bengio (2013) tie vanishing and exploding gradients to the spectral
radius ρ and the largest singular value σ_max of each square recurrent block W (H, H).
Full decompositions of four 128 × 128 blocks take ~6 ms (singular values) and ~21 ms
(eigenvalues) here, as long as a small training step or longer, so
:class:`SpectrumTracker` does less:

* σ_max, of every captured step's own weights: Lanczos on WᵀW (symmetric), started from
  the previous step's top right singular vector. The weights move little from one step
  to the next, so that vector is nearly the new one and a few Krylov vectors settle it.
  With θ the largest Ritz value of the tridiagonal Tⱼ, y its eigenvector and βⱼ the last
  off-diagonal, the residual is r = βⱼ·|yⱼ| and, WᵀW being symmetric, θ is within r of an
  eigenvalue (Bauer–Fike), or about r²/δ (Kato–Temple) with δ = θ − θ₂ the gap to the
  next Ritz value. σ_max = √θ is accepted when r ≤ TOL·θ, or when r ≤ δ/10 and
  r²/δ ≤ TOL·θ; a block that has not converged within KRYLOV vectors gets an exact
  ``svdvals`` (and so does the first step, which has nothing to start from). Every
  vector is reorthogonalised against all before it: without that, Lanczos in floating
  point loses orthogonality and repeats Ritz values. The compiled loops
  (:mod:`gradviz.engine.native`) run it in one call for all blocks; without them,
  :func:`lanczos_top` runs the same in numpy (~1 ms a step: its small operations cost
  more than their arithmetic).
* ρ: the eigenvalues of W move far under small changes of the weights where the moduli
  of its leading ones are close (a random matrix's crowd at the edge of its disc), so no
  warm start settles them reliably; they are decomposed in full (``eigvals``) on the
  first captured step and then once at least :func:`rho_interval` steps have passed, and a
  capture in between keeps the last value, with ``rho_step`` naming the step whose weights
  it describes. The interval weighs the decomposition against the training step: about 2%
  of the training time goes to it, so large blocks in a small step wait longest (at most
  MAX_EVERY steps) and small blocks in a long step are decomposed on every step.

tests/test_theory.py checks both, on every captured step of training runs of every cell,
against ``torch.linalg.eigvals`` / ``svdvals`` of the weights that step (for ρ: step
``rho_step``) used, to 1e-5 relative. Everything is float64, whatever the run's dtype.
``fallbacks`` counts the blocks decomposed in full, for the benchmark and the tests.
Shapes: N blocks, H units.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from gradviz.engine import native
from gradviz.engine.model.finite import first_nonfinite, refuse_nonfinite
from gradviz.engine.model.init import spectral_radius

# ρ is decomposed at least once every MAX_EVERY steps, more often where it is cheap
# against the training step (:func:`rho_interval`).
MAX_EVERY = 100
# ``eigvals`` of one h × h block takes about as long here as EIG_COST · h³ multiply-adds of a
# training step's matrix products (LAPACK's Hessenberg QR: ~10 h³ flops, at a far lower rate
# than a product's: four 128 × 128 blocks ~20 ms against a 318-million-multiply-add LSTM
# step's ~10 ms on the machine of issue 24).
EIG_COST = 75
# The share of training time the decompositions may take.
RHO_SHARE = 0.02
# Most Krylov vectors per step before σ_max is decomposed in full.
KRYLOV = 24
# Relative accuracy at which a Ritz value counts as converged.
TOL = 1e-7


def rho_interval(h: int, blocks: int = 1, step_macs: int | None = None) -> int:
    """Training steps between full decompositions of ρ for ``blocks`` (h, h) blocks in a
    training step of ``step_macs`` multiply-adds (:func:`step_multiply_adds`): so many that
    the decompositions take about RHO_SHARE of the training time, between 1 and MAX_EVERY.
    ``step_macs`` None: MAX_EVERY. E.g. a one-layer LSTM at batch 32 (and the probe row),
    H 128: 96 steps at T 50, 24 at T 200, 5 at T 1000; at H 32: 24 at T 50, 6 at T 200."""
    if step_macs is None or step_macs <= 0:
        return MAX_EVERY
    cost = EIG_COST * blocks * h ** 3 / (RHO_SHARE * step_macs)
    return min(MAX_EVERY, max(1, math.ceil(cost - 1e-9)))


def step_multiply_adds(T: int, B: int, H: int, inputs: list[int], gate_blocks: int,
                       recurrent: bool = True) -> int:
    """Multiply-adds of the matrix products of one training step (forward and backward) of
    a recurrent network with a layer (and direction) for each entry of ``inputs`` (its
    input size): T·B·G·H·(3H + 2I) each (the forward x W_ihᵀ and h W_hhᵀ, the backward
    dz W_hh, Σ dzᵀh and Σ dzᵀx), without the recurrent terms where the recurrence is not a
    product (``recurrent`` False: the diagonal cells)."""
    rec = 3 * H if recurrent else 0
    return sum(T * B * gate_blocks * H * (rec + 2 * i) for i in inputs)


class SpectrumTracker:
    """ρ and σ_max of a fixed set of N square blocks, updated as the weights change.

    It runs once a captured step, right after a large training step has filled the
    caches with other things, and there every small operation costs several times what it
    does in a loop (numpy's array calls ~10-30 us each here): so it makes few of them, and
    keeps its state in float64 tensors that the compiled Lanczos updates in place."""

    def __init__(self, step_macs: int | None = None) -> None:
        """``step_macs``: the multiply-adds of the training step whose weights it follows
        (:func:`step_multiply_adds`), against which :func:`rho_interval` weighs a full
        decomposition; None: one every MAX_EVERY steps."""
        self.step_macs = step_macs
        self._v: Tensor | None = None      # (N, H) the last top right singular vectors
        self._rho: Tensor | None = None    # (N,) the last decomposed ρ
        self.rho_step = 0                  # the training step whose weights ``_rho`` are
        self.fallbacks = {"rho": 0, "sigma": 0}

    def state(self) -> tuple[Tensor, Tensor, int] | None:
        """What the next step starts from — the top right singular vectors (N, H), the last
        decomposed ρ (N,) and its step — for a saved and resumed run to go on bit for bit;
        None before the first step."""
        if self._v is None:
            return None
        return self._v.clone(), self._rho.clone(), self.rho_step

    def restore(self, v: Tensor, rho: Tensor, rho_step: int) -> None:
        """Go on from a :meth:`state`."""
        self._v = v.detach().to("cpu", torch.float64).contiguous().clone()
        self._rho = rho.detach().to("cpu", torch.float64).clone()
        self.rho_step = int(rho_step)

    def update(self, blocks: Tensor, step: int | None = None,
               names: list[str] | None = None, finite: bool = False) -> tuple[Tensor, Tensor]:
        """ρ and σ_max (N,) float64 of ``blocks`` (N, H, H), any float dtype, the weights of
        training step ``step``. σ_max is always of these weights; ρ is too on a step that
        decomposes it (see :func:`rho_interval`), else it is the last decomposition's and
        ``rho_step`` names its step. ``step`` None: ρ is always of these weights.
        NonFiniteWeights, naming the block (``names``, one a block), where one holds a NaN
        or ±inf: LAPACK would crash on it. ``finite``: the caller has just found these very
        weights finite, and they are not checked again."""
        if not finite and first_nonfinite([("", blocks)]) is not None:
            labels = names or [f"recurrent block {i}" for i in range(len(blocks))]
            refuse_nonfinite(zip(labels, blocks), "the spectrum")
        source = blocks.detach().to("cpu").contiguous()
        n, h, _ = source.shape
        loops = native.kernels()
        # A float64 copy only where something needs one: the compiled Lanczos reads float32
        # blocks as they are (the numbers it would read from the copy).
        in_float64 = functools.cache(lambda: source.to(torch.float64))
        lanczos = source if loops is not None and source.dtype == torch.float32 else in_float64()
        if self._v is None or tuple(self._v.shape) != (n, h):
            self._v = self._rho = None
        due = step is None or self._rho is None or \
            step - self.rho_step >= rho_interval(h, n, self.step_macs)
        if due:
            self.fallbacks["rho"] += n
            self._rho = torch.linalg.eigvals(in_float64()).abs().amax(-1)
            self.rho_step = step if step is not None else self.rho_step
        return self._rho.clone(), self._largest_singular(lanczos, in_float64, loops)

    def _largest_singular(self, w: Tensor, in_float64: Callable[[], Tensor],
                          loops: native.Kernels | None) -> Tensor:
        """σ_max (N,) float64 of the blocks ``w`` (N, H, H), float64, or float32 for the
        compiled Lanczos (``in_float64()`` gives them in float64); ``_v`` becomes their
        top right singular vectors (N, H)."""
        n, h, _ = w.shape
        if self._v is None:
            self._v = torch.zeros((n, h), dtype=torch.float64)
            sigma = torch.full((n,), float("nan"), dtype=torch.float64)
            done = torch.zeros(n, dtype=torch.bool)
        elif loops is not None:
            sigma, done = loops.top_singular(w, self._v, KRYLOV, TOL)     # _v in place
        else:
            values, vectors, converged = lanczos_top(w.numpy(), self._v.numpy())
            sigma, done = torch.from_numpy(values), torch.from_numpy(converged)
            self._v = torch.from_numpy(vectors)
        if not bool(done.all()):
            todo = (~done).nonzero().flatten()
            self.fallbacks["sigma"] += len(todo)
            _, values, vh = torch.linalg.svd(in_float64()[todo])
            sigma[todo] = values[:, 0]
            self._v[todo] = vh[:, 0]
        return sigma


def lanczos_top(w: np.ndarray, start: np.ndarray, steps: int = KRYLOV,
                tol: float = TOL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Largest singular value of each block of ``w`` (N, H, H) by Lanczos on WᵀW from
    ``start`` (N, H): (σ_max (N,), the unit Ritz vectors (N, H), converged (N,) bool).
    Where a block has not converged its σ_max is the best estimate so far (an
    underestimate: Ritz values of WᵀW lie inside its spectrum)."""
    n, h, _ = w.shape
    m = min(steps, h)
    wt = np.ascontiguousarray(w.transpose(0, 2, 1))    # a product with a transposed view is
    basis = np.zeros((n, m + 1, h))                    # ~2x slower; the Lanczos vectors as rows
    basis[:, 0] = start / np.maximum(np.linalg.norm(start, axis=1, keepdims=True), 1e-300)
    tri = np.zeros((n, m, m))                   # the tridiagonal Tⱼ, filled as it grows
    broke = np.zeros(n, bool)    # an invariant subspace was found: its Ritz values are exact
    tiny = None
    for j in range(m):
        q = basis[:, j, :, None]                                       # (n, h, 1)
        z = wt @ (w @ q)                                               # WᵀW q_j
        a = (q * z).sum(axis=(1, 2))
        tri[:, j, j] = a
        if tiny is None:      # breakdown: z vanishes against WᵀW's scale (≥ q₀ᵀWᵀWq₀)
            tiny = 1e-14 * np.maximum(np.abs(a), 1e-300)
        # Full reorthogonalisation against q_0 … q_j, twice ("twice is enough").
        done_basis = basis[:, :j + 1]                                  # (n, j + 1, h)
        for _ in range(2):
            z -= done_basis.transpose(0, 2, 1) @ (done_basis @ z)
        b = np.sqrt((z * z).sum(axis=(1, 2)))
        new = b <= tiny
        if new.any():
            broke |= new
            b[broke] = 0.0
            z[broke] = 0.0
        basis[:, j + 1] = z[:, :, 0] / np.where(broke, 1.0, b)[:, None]
        k = j + 1
        if k == 1:
            theta, y = a, np.ones((n, 1))
            converged = broke | (b <= tol * np.abs(theta))
        else:
            values, vectors = np.linalg.eigh(tri[:, :k, :k])
            theta, y = values[:, -1], vectors[:, :, -1]
            residual = b * np.abs(y[:, -1])
            converged = broke | (residual <= tol * np.abs(theta))
            if k > 2:
                # Temple's r²/gap, the gap estimated by the next Ritz value: it needs two
                # Ritz values beside the one tested to mean something, so not before.
                gap = theta - values[:, -2]
                converged |= (residual <= 0.1 * gap) & (residual ** 2 <= tol * np.abs(theta) * gap)
        if converged.all():
            break
        if k < m:
            tri[:, j, j + 1] = tri[:, j + 1, j] = b
    x = (y[:, None, :] @ basis[:, :k])[:, 0]
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    return np.sqrt(np.maximum(theta, 0.0)), x, converged


@torch.no_grad()
def spectral(net) -> tuple[Tensor, Tensor]:
    """Spectral radius and largest singular value of every recurrent block of ``net``,
    (L, D, G') float64, on the CPU: the blocks are copied there once (from a GPU, the one
    host sync of the spectrum), where the eigenvalues are computed in float64."""
    L, D, H = net.layers, net.directions, net.hidden
    with torch.no_grad():
        blocks = torch.stack([net.cell.recurrent_blocks(net.layer_params(k, d), H)
                              for k in range(L) for d in range(D)])   # (L·D, G', H, H)
        blocks = blocks.to("cpu", torch.float64)
    refuse_nonfinite(((f"weight_hh_l{k}{'_reverse' if d else ''}", blocks[k * D + d])
                      for k in range(L) for d in range(D)), "the spectrum")
    rho = spectral_radius(blocks).view(L, D, -1)
    sigma = torch.linalg.matrix_norm(blocks.double(), ord=2).view(L, D, -1)
    return rho, sigma


__all__ = ["SpectrumTracker", "spectral", "MAX_EVERY", "EIG_COST", "RHO_SHARE", "KRYLOV",
           "TOL", "rho_interval", "step_multiply_adds", "lanczos_top"]
