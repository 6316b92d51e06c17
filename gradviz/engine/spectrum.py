"""ρ(W) and σ_max(W) of every recurrent block, on every captured step, warm-started.

Pascanu, Mikolov & Bengio (2013) tie vanishing and exploding gradients to the spectral
radius ρ and the largest singular value σ_max of each square recurrent block W (H, H).
A full eigen- and singular-value decomposition per block costs more than a small training
step, but the weights move little from one step to the next, so :class:`SpectrumTracker`
keeps, per block, an orthonormal basis (H, p) of the dominant invariant subspace of WᵀW
(for σ_max) and of W (for ρ), and refines it by subspace iteration from the previous
step's (Q ← orth(A Q), then the Rayleigh–Ritz pair of the p × p matrix S = Qᵀ A Q):

* σ_max = √θ, θ the largest eigenvalue of S for A = WᵀW, with Ritz vector x = Q y and
  residual r = ‖A x − θ x‖ (‖x‖ = 1). Converged when r ≤ TOL·θ (A is symmetric, so θ is
  then within TOL·θ of an eigenvalue of WᵀW: Bauer–Fike), or, sooner, when r²/δ ≤ TOL·θ
  and r ≤ δ/10 with δ = θ − θ₂ the gap to the next Ritz value (Temple's r²/gap estimate
  of the error, which needs the gap to be estimated well: the tests check the result).
* ρ = |θ|, θ the eigenvalue of S of largest modulus for A = W (complex for a complex
  pair, which a single real vector never settles on: it rotates), x = Q y.
  Converged when ‖W x − θ x‖ ≤ TOL·|θ|·‖x‖: θ is then an eigenvalue of a matrix within
  TOL·|θ| of W (backward error; for a non-normal W the eigenvalue itself may move more).

A block that has not converged after ITERATIONS iterations is decomposed in full
(``torch.linalg.eigvals``-style ``eig`` / ``svd``), and the dominant vectors from that
decomposition seed the next step; the first step, with nothing to start from, always is.
σ_max converges in a few iterations from the previous step's vectors. ρ often does not:
the eigenvectors of a non-normal W move far under small changes of the weights when the
moduli of its leading eigenvalues are close (a random matrix's crowd at the edge of its
disc), and then this is the full decomposition (the iterations are tried again every
RETRY steps); ``fallbacks`` counts how often. tests/test_theory.py checks both, on every captured step
of training runs of every cell, against ``torch.linalg.eigvals`` / ``svdvals`` of the
weights the step used (relative difference below 1e-5). Everything is float64, whatever
the run's dtype. Shapes: N blocks, H units, p = :func:`subspace` (H).
"""
from __future__ import annotations

import torch
from torch import Tensor

# Least dimension of the tracked subspace: more than the two a complex pair needs, so that
# an eigenvalue overtaking the dominant ones is already inside it.
SUBSPACE = 4
# Iterations per step before a block is decomposed in full. For ρ, once a step needed the
# full decomposition, only every RETRY-th step tries the iterations again: in between they
# rarely converge, and would only add to the decomposition's cost.
ITERATIONS = 10
RETRY = 4
# Where the iterations do not converge, ρ is decomposed in full at most once every
# FULL_EVERY training steps; in between a capture keeps the last exact ρ, and its
# ``rho_step`` says which step's weights that describes. A full decomposition of four
# 128 x 128 blocks takes ~25 ms, more than the whole training step it would describe.
FULL_EVERY = 25
# Relative residual of the Ritz pair at which it counts as converged.
TOL = 1e-7


def _orth(z: Tensor) -> Tensor:
    return torch.linalg.qr(z).Q


class SpectrumTracker:
    """ρ and σ_max of a fixed set of N square blocks, updated as the weights change.

    ``fallbacks`` counts, for "rho" and "sigma", the blocks decomposed in full (the first
    step's included), for the benchmark and the tests.
    """

    def __init__(self) -> None:
        self._q: Tensor | None = None       # (N, H, p) for ρ
        self._v: Tensor | None = None       # (N, H, p) for σ_max
        self.fallbacks = {"rho": 0, "sigma": 0}
        self._rho_misses = 0          # consecutive steps on which ρ was decomposed in full
        self._rho: Tensor | None = None    # (N,) the last exact ρ
        self.rho_step = 0             # the training step whose weights ``_rho`` describes

    def state(self) -> tuple[Tensor, Tensor, int, Tensor, int] | None:
        """What the next step starts from — the bases for ρ and σ_max, (N, H, p) float64,
        the count of steps since ρ last converged, the last exact ρ (N,) and its step — for
        a run that is saved and resumed to go on bit for bit; None before the first step."""
        if self._q is None:
            return None
        return self._q, self._v, self._rho_misses, self._rho, self.rho_step

    def restore(self, q: Tensor, v: Tensor, misses: int, rho: Tensor, rho_step: int) -> None:
        """Go on from a :meth:`state`."""
        self._q, self._v, self._rho_misses = q, v, int(misses)
        self._rho, self.rho_step = rho, int(rho_step)

    def update(self, blocks: Tensor, step: int | None = None) -> tuple[Tensor, Tensor]:
        """ρ and σ_max (N,) float64 of ``blocks`` (N, H, H), any float dtype, as the weights
        of training step ``step`` are. σ_max is always of these weights; ρ is too unless it
        did not converge within FULL_EVERY steps of the last full decomposition, and then
        it is that decomposition's (``rho_step`` names its step). ``step`` None: ρ is
        always of these weights."""
        w = blocks.detach().to(torch.float64)
        if self._q is None or self._q.shape[:2] != w.shape[:2]:
            self._q = self._v = self._rho = None
        may_wait = (step is not None and self._rho is not None
                    and step - self.rho_step < FULL_EVERY)
        rho, q = self._radius(w, may_wait)
        if rho is None:
            rho = self._rho
        else:
            self._rho, self.rho_step = rho, (step if step is not None else self.rho_step)
        sigma, v = self._largest_singular(w)
        self._q, self._v = q, v
        return rho, sigma

    # -- ρ ------------------------------------------------------------------------------
    def _radius(self, w: Tensor, may_wait: bool = False) -> tuple[Tensor | None, Tensor]:
        """(ρ, the new basis); ρ None where the iterations did not converge and
        ``may_wait`` lets the full decomposition wait."""
        n, h, _ = w.shape
        rho = w.new_full((n,), float("nan"))
        done = torch.zeros(n, dtype=torch.bool, device=w.device)
        q = self._q
        if q is not None:
            for _ in range(ITERATIONS if self._rho_misses % RETRY == 0 else 0):
                wq = w @ q
                values, vectors = torch.linalg.eig(q.transpose(-1, -2) @ wq)
                top = values.abs().argmax(-1, keepdim=True)
                theta = values.gather(-1, top)                            # (n, 1)
                y = vectors.gather(-1, top.unsqueeze(1).expand(-1, vectors.shape[1], -1))
                x = q.to(y.dtype) @ y                                      # (n, h, 1)
                residual = torch.linalg.vector_norm(wq.to(y.dtype) @ y - theta.unsqueeze(1) * x,
                                                    dim=(1, 2))
                done = residual <= TOL * theta.abs().squeeze(-1) * torch.linalg.vector_norm(
                    x, dim=(1, 2))
                rho = torch.where(done, theta.abs().squeeze(-1), rho)
                if bool(done.all()):
                    break
                q = _orth(wq)
        todo = (~done).nonzero().flatten()
        self._rho_misses = self._rho_misses + 1 if len(todo) else 0
        if len(todo) and may_wait:
            return None, q
        if len(todo):
            self.fallbacks["rho"] += len(todo)
            values, vectors = torch.linalg.eig(w[todo])
            p = subspace(h)
            order = values.abs().argsort(-1, descending=True)[:, :p]
            rho[todo] = values.abs().amax(-1)
            top = torch.gather(vectors, 2, order.unsqueeze(1).expand(-1, h, -1))
            # The real span of the dominant eigenvectors: a complex pair v, v̄ spans the
            # plane of Re v and Im v, a real one its line. The leading left singular vectors
            # of [Re v₁, Im v₁, Re v₂, …] are an orthonormal basis of it.
            parts = torch.stack([top.real, top.imag], -1).flatten(-2)
            seed = torch.linalg.svd(parts, full_matrices=False).U[:, :, :p]
            q = w.new_zeros((n, h, p)) if q is None else q.clone()
            q[todo] = seed
        return rho, q

    # -- σ_max ----------------------------------------------------------------------------
    def _largest_singular(self, w: Tensor) -> tuple[Tensor, Tensor]:
        n, h, _ = w.shape
        wtw = w.transpose(-1, -2) @ w
        sigma = w.new_full((n,), float("nan"))
        done = torch.zeros(n, dtype=torch.bool, device=w.device)
        v = self._v
        if v is not None:
            for _ in range(ITERATIONS):
                av = wtw @ v
                values, vectors = torch.linalg.eigh(v.transpose(-1, -2) @ av)
                theta, y = values[:, -1], vectors[:, :, -1:]             # (n,), (n, p, 1)
                residual = torch.linalg.vector_norm(av @ y - theta.view(-1, 1, 1) * (v @ y),
                                                    dim=(1, 2))
                # For a symmetric matrix the Ritz value's error is about r² / gap (Temple),
                # the gap estimated by the next Ritz value: far sooner small than r itself.
                gap = theta - values[:, -2] if values.shape[1] > 1 else theta
                done = (residual <= TOL * theta.abs()) | (
                    (residual <= 0.1 * gap) & (residual ** 2 <= TOL * theta.abs() * gap))
                sigma = torch.where(done, theta.clamp_min(0).sqrt(), sigma)
                if bool(done.all()):
                    break
                v = _orth(av)
        todo = (~done).nonzero().flatten()
        if len(todo):
            self.fallbacks["sigma"] += len(todo)
            _, values, vh = torch.linalg.svd(w[todo])
            sigma[todo] = values[:, 0]
            v = w.new_zeros((n, h, subspace(h))) if v is None else v.clone()
            v[todo] = vh[:, :subspace(h)].transpose(-1, -2)
        return sigma, v


def subspace(h: int) -> int:
    """Dimension of the tracked subspace of an (h, h) block."""
    return min(h, max(SUBSPACE, h // 4))


__all__ = ["SpectrumTracker", "SUBSPACE", "ITERATIONS", "RETRY", "FULL_EVERY", "TOL",
           "subspace"]
