"""The linear recurrent unit (Orvieto et al. 2023, "Resurrecting recurrent neural networks
for long sequences"):

    x_t = λ ⊙ x_{t-1} + γ ⊙ (B u_t),  λ_j = exp(−exp(ν_j) + i·exp(θ_j)),  γ_j = √(1 − |λ_j|²)

over N = H/2 complex units. The layer's h_t is the state as real numbers, [Re x_t, Im x_t],
so ‖∂L/∂h_t‖ is the norm over real and imaginary parts. The paper's output map
y_t = Re(C x_t) + D u_t is linear, and so is everything that reads a layer here (the
readout, or the next layer's B): it is left to them, and a stack of LRU layers is linear up
to the readout (docs/modern-cells.md). ∂x_t/∂x_{t-1} = diag(λ): with the gradient of a
complex unit written g = ∂L/∂Re x + i ∂L/∂Im x, the reverse scan is

    g_t = dout_t + conj(λ) ⊙ g_{t+1},

so each unit's gradient norm shrinks by exactly |λ_j| per step. Parameters: nu_log,
theta_log (N,), B_re and B_im (N, I). Initialised on the ring r_min ≤ |λ| ≤ r_max, phase
in [0, max phase] (the paper's §3.3), B ~ N(0, 1/(2I)) in each part.
"""
from __future__ import annotations

import math

import torch

from .base import LayerGrads
from .diagonal import DiagonalCache, DiagonalCell, diag_blocks, scan_backward
from gradviz.engine.model.reference import lru, lru_lambda

# The defaults of the ring: the paper's setting for its long-range tasks.
R_MIN, R_MAX, MAX_PHASE = 0.9, 0.999, math.pi / 10


def _complex(h):
    n = h.shape[-1] // 2
    return torch.complex(h[..., :n], h[..., n:])


class LRUCell(DiagonalCell):
    reference_step = staticmethod(lru)

    def param_shapes(self, input_size, hidden):
        if hidden % 2:
            raise ValueError(f"hidden: the LRU needs an even number of units (H/2 complex "
                             f"units, real and imaginary parts), got {hidden}")
        n = hidden // 2
        return {"nu_log": (n,), "theta_log": (n,), "B_re": (n, input_size),
                "B_im": (n, input_size)}

    def reset(self, p, generator, options):
        r_min, r_max = sorted((options.get("lru_r_min", R_MIN), options.get("lru_r_max", R_MAX)))
        phase = options.get("lru_max_phase", MAX_PHASE)
        n, i = p["B_re"].shape
        f64 = torch.float64
        with torch.no_grad():
            u1 = torch.rand(n, generator=generator, dtype=f64)
            u2 = torch.rand(n, generator=generator, dtype=f64)
            # |λ| = √(u1 (r_max² − r_min²) + r_min²): uniform over the ring's area.
            p["nu_log"].copy_(torch.log(-0.5 * torch.log(u1 * (r_max ** 2 - r_min ** 2)
                                                         + r_min ** 2)))
            p["theta_log"].copy_(torch.log((phase * u2).clamp_min(1e-12)))
            for name in ("B_re", "B_im"):
                p[name].copy_(torch.randn(n, i, generator=generator, dtype=f64)
                              / math.sqrt(2 * i))

    def forward(self, x, h0, c0, p, stats_rows=None):
        T, B, I = x.shape
        lam, gamma = lru_lambda(p)
        xr = x.reshape(T * B, I)
        bu = torch.complex((xr @ p["B_re"].t()).view(T, B, -1), (xr @ p["B_im"].t()).view(T, B, -1))
        v = bu * gamma
        state = torch.empty_like(v)
        v_t, s_t = v.unbind(0), state.unbind(0)
        prev = _complex(h0)
        for t in range(T):
            torch.add(v_t[t], lam * prev, out=s_t[t])
            prev = s_t[t]
        h = torch.cat([state.real, state.imag], -1)
        a = lam.abs().repeat(2).expand(T, B, -1)
        cache = DiagonalCache(x=x, h_prev=torch.cat([h0.unsqueeze(0), h[:-1]]), h=h, a=a,
                              acts=torch.stack([h, a], 2), bu=bu)
        return self._with_stats(cache, stats_rows)

    def backward(self, cache, p, dout, tbptt=0, need_dx=True):
        T, B, H = dout.shape
        lam, gamma = lru_lambda(p)
        g = scan_backward(lam.conj().expand(T, 1, -1), _complex(dout), tbptt)
        dh = torch.cat([g.real, g.imag], -1)
        prev = _complex(cache.h_prev)
        g_lam = (g * prev.conj()).sum((0, 1))                   # ∂L/∂Re λ + i ∂L/∂Im λ
        g_gamma = (g.real * cache.bu.real + g.imag * cache.bu.imag).sum((0, 1))
        e_nu, e_theta = torch.exp(p["nu_log"]), torch.exp(p["theta_log"])
        mod2 = torch.exp(-2 * e_nu)                              # |λ|²
        d_nu = (g_lam.conj() * (-e_nu * lam)).real + g_gamma * mod2 * e_nu / gamma
        d_theta = (g_lam.conj() * (1j * e_theta * lam)).real
        dv_re, dv_im = (g.real * gamma).reshape(T * B, -1), (g.imag * gamma).reshape(T * B, -1)
        xr = cache.x.reshape(T * B, -1)
        grads = {"nu_log": d_nu, "theta_log": d_theta, "B_re": (xr.t() @ dv_re).t().contiguous(),
                 "B_im": (xr.t() @ dv_im).t().contiguous()}
        dx = (dv_re @ p["B_re"] + dv_im @ p["B_im"]).view(cache.x.shape) if need_dx else None
        return LayerGrads(dh=dh, dc=None, params=grads, dx=dx)

    def recurrent_blocks(self, p, hidden):
        return diag_blocks(lru_lambda(p)[0].abs().repeat(2))


__all__ = ["LRUCell", "R_MIN", "R_MAX", "MAX_PHASE"]
