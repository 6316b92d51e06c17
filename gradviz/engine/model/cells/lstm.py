"""The LSTM (Hochreiter & Schmidhuber 1997), and what its variants share with it.

    i, f, o = σ(·), g = tanh(·);  c_t = f ⊙ c_{t-1} + i ⊙ g;  h_t = o ⊙ tanh(c_t).

The reverse scan of every LSTM cell. With dZ_t the gradient of the gate pre-activations
(B, G, H), the recursion is
    dh_t = dout_t + dZ_{t+1} W_hh
    dc_t = dh_t ⊙ A_t + dc_{t+1} ⊙ F_{t+1}
    dZ_t[:G-1] = dc_t ⊙ Kc_t,   dZ_t[G-1] = dh_t ⊙ Ko_t
where A, F, Kc, Ko depend only on the forward pass (F includes the peepholes through
which c_t also reaches step t+1's gates). Step t keeps R_t = [dZ_t, carry_t] (B, G+1, H)
with carry_t = dc_t ⊙ F_t, the only part of dc_t that step t-1 needs. Substituting dc_t,
    R_t = dh_t ⊙ M_t + carry_{t+1} ⊙ N_t,
    M = [A ⊙ Kc, Ko, A ⊙ F],   N = [Kc, 0, F]      (T, B, G+1, H),
so a step is one product for dh_t and two element-wise operations on contiguous
(B, G+1, H) blocks; dc, which only the capture needs, is formed for all t afterwards.
The LSTM makes its coefficients a chunk of timesteps at a time in its own backward pass;
the variants (:mod:`~gradviz.engine.model.cells.lstm_variants`) make them in their forward pass.

Every LSTM cell's forward loop runs in one call of the compiled loops where they are
available (:meth:`LSTMFamily._compiled_recurrence`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gradviz.engine import native

from .base import (Cell, GateStats, LayerCache, LayerGrads, compiled_loops, cut_after,
                   empty_stats, fused_weights, gate_stats_into, shifted, tanh_via_sigmoid)
from gradviz.engine.model.reference import lstm as lstm_step

# Inputs this narrow are multiplied inside the compiled LSTM forward's per-step product: a
# separate product over all timesteps with an inner size this small is slow (MKL, K = 2:
# 3 ms at T = 1000, H = 32, against 0.3 ms more in the per-step products).
_FOLD_INPUT = 16
# Timesteps per chunk of the LSTM's gate recomputation: 32·B·4H floats stay in the cache.
_CHUNK = 32
# Timesteps per chunk of the LSTM's backward pass: its M, N and R (3·16·B·5H floats) fit in L2.
_BACK_CHUNK = 32


@dataclass(kw_only=True)
class LSTMCache(LayerCache):
    """The LSTM's forward pass, for its backward."""
    acts: Tensor              # (T, B, 4, H) i_t, f_t, g_t, o_t
    c0: Tensor                # (B, H) c_{-1}
    xh: Tensor                # (T·B, I+H) rows [x_t, h_{t-1}], for the weight gradients
    # (T, B, H) tanh(c_t) on the compiled path, whose forward makes it anyway; None on the
    # PyTorch path, whose backward makes it a chunk at a time.
    tanh_c: Tensor | None = None


def _compiled_inputs(x: Tensor, h0: Tensor, p: dict[str, Tensor], G: int):
    """What the compiled LSTM forward passes take: (fold, zx, w_t, xh), see _native.c. A
    narrow input (I <= _FOLD_INPUT) is multiplied inside each step's product (zx is then
    the bias for every row, w_t = [W_ih, W_hh]ᵀ); a wide one in one product over all t."""
    T, B, I = x.shape
    H = h0.shape[-1]
    bias = p["bias_ih"] + p["bias_hh"]
    fold = I <= _FOLD_INPUT
    if fold:
        zx = bias.expand(B, G * H).contiguous()
        w_t = torch.cat([p["weight_ih"], p["weight_hh"]], 1).t().contiguous()
    else:
        zx = torch.addmm(bias, x.reshape(T * B, I), p["weight_ih"].t()).view(T, B, G * H)
        w_t = p["weight_hh"].t().contiguous()
    xh = x.new_empty((T, B, I + H))
    xh[:, :, :I] = x
    return fold, zx, w_t, xh


class LSTMFamily(Cell):
    """What every LSTM cell shares: the compiled forward loop and the stored gates."""
    kind = ""          # the compiled forward's name for the cell: "lstm", "peephole", "coupled"

    def _compiled_recurrence(self, loops: native.Kernels, x, h0, c0, p, stats_rows):
        """The whole forward loop in one call of the compiled loops: acts (T, B, G, H), h,
        c, tanh(c) (T, B, H), xh ([x_t, h_{t-1}] rows, (T·B, I+H)) and the statistics of
        the gates shown (or None)."""
        T, B, I = x.shape
        H, G = h0.shape[-1], self.n_blocks
        fold, zx, w_t, xh = _compiled_inputs(x, h0, p, G)
        acts = x.new_empty((T, B, G, H))
        c, tanh_c, h = (x.new_empty((T, B, H)) for _ in range(3))
        stats = empty_stats(T, G, H, x) if stats_rows is not None else None
        loops.lstm_forward(I, fold, zx, w_t, h0.contiguous(), c0.contiguous(), acts, c,
                           tanh_c, h, xh, stats_rows or 0,
                           *((stats.mean, stats.low, stats.high) if stats else ()),
                           kind=self.kind, w_c=p.get("weight_ch"))
        return acts, h, c, tanh_c, xh.view(T * B, I + H), self._shown_stats(stats)

    def _shown_stats(self, stats: GateStats | None) -> GateStats | None:
        """Statistics of the stored gates as statistics of the gates shown (gate_names)."""
        return stats

    def gates(self, cache):
        return cache.acts


class LSTMCell(LSTMFamily):
    """i, f, o = σ(·), g = tanh(·); c_t = f ⊙ c_{t-1} + i ⊙ g; h_t = o ⊙ tanh(c_t)."""
    kind = "lstm"
    reference_step = staticmethod(lstm_step)

    def forward(self, x, h0, c0, p, stats_rows=None):
        loops = compiled_loops(x)
        if loops is not None:
            # The whole forward pass in one call of the compiled loop: gates, states,
            # statistics and [x_t, h_{t-1}] for the weight gradients, nothing computed twice.
            acts, h, c, tanh_c, xh, stats = self._compiled_recurrence(loops, x, h0, c0, p,
                                                                      stats_rows)
            # h_{t-1} is already in xh's last H columns (a view, not a copy).
            T, B, I = x.shape
            h_prev = xh.view(T, B, -1)[:, :, I:]
            return LSTMCache(x=x, h_prev=h_prev, h=h, c=c, acts=acts, c0=c0,
                             tanh_c=tanh_c, xh=xh, stats=stats, loops=loops)
        T, B, _ = x.shape
        H = h0.shape[-1]
        with torch.no_grad():
            h, _, _ = torch.lstm(x, (h0.unsqueeze(0), c0.unsqueeze(0)), fused_weights(p), True,
                                 1, 0.0, False, False, False)
            h_prev = shifted(h, h0)
            # Now that every h_{t-1} is known, recompute the gates: one product over
            # [x_t, h_{t-1}] (a narrow input makes two products slow) and one sigmoid pass for
            # all four, g = tanh(z) = 2σ(2z) - 1 with the 2 folded into the weights.
            xh = torch.cat([x, h_prev], 2).view(T * B, -1)
            w = torch.cat([p["weight_ih"], p["weight_hh"]], 1).t().contiguous()
            bias = p["bias_ih"] + p["bias_hh"]
            w[:, 2 * H:3 * H] *= 2
            bias[2 * H:3 * H] *= 2
            c = torch.empty((T, B, H), dtype=x.dtype, device=x.device)
            acts = torch.empty((T, B, 4, H), dtype=x.dtype, device=x.device)
            stats = empty_stats(T, 4, H, x) if stats_rows is not None else None
            c_last = c0
            # A chunk of timesteps at a time, so that its gate tensors stay in the cache.
            for s in range(0, T, _CHUNK):
                e = min(T, s + _CHUNK)
                n = e - s
                # a = σ([z_i, z_f, 2 z_g, z_o]); then g = 2 a_g - 1.
                a = acts[s:e]
                torch.addmm(bias, xh[s * B:e * B], w, out=a.view(n * B, 4 * H)).sigmoid_()
                if stats is not None:
                    # On this scale every gate's bottom and top 10% are a < 0.1 and a > 0.9.
                    gate_stats_into(stats, s, a, stats_rows, ((0.0, 1.0),) * 4)
                a[:, :, 2].mul_(2).sub_(1)
                i, f, g, _ = a.unbind(2)
                cc = torch.mul(i, g, out=c[s:e])
                cc_t, f_t = cc.unbind(0), f.unbind(0)
                for t in range(n):
                    cc_t[t].addcmul_(f_t[t], cc_t[t - 1] if t else c_last)
                c_last = cc_t[-1]
            if stats is not None:
                stats.mean[:, 2].mul_(2).sub_(1)    # mean g = 2 mean σ(2 z_g) - 1
        return LSTMCache(x=x, h_prev=h_prev, h=h, c=c, acts=acts, c0=c0, xh=xh, stats=stats)

    @staticmethod
    def _coefs_into(M: Tensor, N: Tensor, A: Tensor, acts: Tensor, c: Tensor,
                    c_prev: Tensor) -> None:
        """The scan's coefficients for a run of timesteps (see the module docstring):
        N = [Kc_i, Kc_f, Kc_g, 0, f] with Kc = ∂c/∂z = [g σ'_i, c_{t-1} σ'_f, i (1-g²)],
        M = [A ⊙ Kc, Ko, A ⊙ f] with A = o (1 - tanh² c) and Ko = ∂h/∂z_o = tanh(c) σ'_o."""
        i, f, g, o = acts.unbind(2)
        tanh_c = tanh_via_sigmoid(c)
        torch.addcmul(i, i, i, value=-1, out=N[:, :, 0]).mul_(g)
        torch.addcmul(f, f, f, value=-1, out=N[:, :, 1]).mul_(c_prev)
        torch.addcmul(i, i, g * g, value=-1, out=N[:, :, 2])
        N[:, :, 3].zero_()
        N[:, :, 4].copy_(f)
        torch.addcmul(o, o * tanh_c, tanh_c, value=-1, out=A)
        torch.mul(N, A.unsqueeze(2), out=M)
        torch.addcmul(o, o, o, value=-1, out=M[:, :, 3]).mul_(tanh_c)

    def backward(self, cache: LSTMCache, p, dout, tbptt=0, need_dx=True):
        """The scan of the module docstring, a chunk of timesteps at a time from the end:
        each chunk's coefficients are made just before it is scanned and its parameter
        gradients accumulated just after, so nothing of size T·B·5H ever leaves the cache."""
        if cache.loops is not None:
            return self._compiled_backward(cache, p, dout, tbptt, need_dx)
        T, B, H = dout.shape
        acts, c, xh = cache.acts, cache.c, cache.xh
        I = cache.x.shape[-1]
        w_hh = p["weight_hh"]
        dh = torch.empty_like(dout)
        dc = torch.empty_like(dout)
        gw = dout.new_zeros((I + H, 4 * H))              # (∂L/∂[W_ih, W_hh])ᵀ
        gb = dout.new_zeros(4 * H)
        dx = cache.x.new_empty(cache.x.shape) if need_dx else None
        n_max = min(T, _BACK_CHUNK)
        M = dout.new_empty((n_max, B, 5, H))
        N = torch.empty_like(M)
        A = dout.new_empty((n_max, B, H))
        Rs = [dout.new_empty((n_max, B, 5, H)) for _ in range(2)]   # this chunk's and the next
        nxt = None                 # R_{e} of the chunk after this one: (B, 5, H)
        for k, s in enumerate(range((T - 1) // n_max * n_max, -1, -n_max)):
            e = min(T, s + n_max)
            n = e - s
            c_prev = c[s - 1:e - 1] if s else torch.cat([cache.c0.unsqueeze(0), c[:e - 1]])
            self._coefs_into(M[:n], N[:n], A[:n], acts[s:e], c[s:e], c_prev)
            R = Rs[k % 2][:n]
            dout_t, dh_t, R_t = dout[s:e].unbind(0), dh[s:e].unbind(0), R.unbind(0)
            dh_col = dh[s:e].unsqueeze(2).unbind(0)
            dz_t = R.view(n, B, 5 * H)[:, :, :4 * H].unbind(0)
            carry_col = R[:, :, 4:].unbind(0)
            M_t, N_t = M[:n].unbind(0), N[:n].unbind(0)
            for j in range(n - 1, -1, -1):
                t = s + j
                if t < T - 1 and not cut_after(t, tbptt):
                    if j == n - 1:
                        nz, ncarry = nxt.view(B, 5 * H)[:, :4 * H], nxt[:, 4:]
                    else:
                        nz, ncarry = dz_t[j + 1], carry_col[j + 1]
                    torch.addmm(dout_t[j], nz, w_hh, out=dh_t[j])
                    torch.mul(ncarry, N_t[j], out=R_t[j])
                    R_t[j].addcmul_(dh_col[j], M_t[j])
                else:
                    dh_t[j].copy_(dout_t[j])
                    torch.mul(dh_col[j], M_t[j], out=R_t[j])
            # dc_t = dh_t ⊙ A_t + carry_{t+1}, where the gradient flows on from t+1.
            dcc = torch.mul(dh[s:e], A[:n], out=dc[s:e])
            dcc[:-1] += R[1:, :, 4]
            if e < T and not cut_after(e - 1, tbptt):
                dcc[-1] += nxt[:, 4]
            for t in range(s, e - 1):
                if cut_after(t, tbptt):
                    torch.mul(dh[t], A[t - s], out=dc[t])
            dz = R.view(n * B, 5 * H)[:, :4 * H]
            gw.addmm_(xh[s * B:e * B].t(), dz)
            gb += dz.sum(0)
            if need_dx:
                torch.mm(dz, p["weight_ih"], out=dx[s:e].view(n * B, I))
            nxt = R[0]
        grads = {"weight_ih": gw[:I].t().contiguous(), "weight_hh": gw[I:].t().contiguous(),
                 "bias_ih": gb, "bias_hh": gb.clone()}
        return LayerGrads(dh=dh, dc=dc, params=grads, dx=dx)

    @staticmethod
    def _compiled_backward(cache: LSTMCache, p, dout, tbptt, need_dx):
        """The same scan in one call of the compiled loops; what does not depend on the
        recursion (the parameter and input gradients) batched over t in PyTorch."""
        T, B, H = dout.shape
        I = cache.x.shape[-1]
        dh, dc = torch.empty_like(dout), torch.empty_like(dout)
        dz = dout.new_empty((T, B, 4 * H))
        norms = cache.loops.lstm_backward(cache.acts, cache.c, cache.c0.contiguous(),
                                          cache.tanh_c, dout, p["weight_hh"], tbptt, dh, dc,
                                          dz, dout.new_empty((B, H)), cache.norms_rows)
        dz = dz.view(T * B, 4 * H)
        gb = dz.sum(0)                                # while dz is still in cache
        gw = cache.xh.t() @ dz                        # (∂L/∂[W_ih, W_hh])ᵀ
        grads = {"weight_ih": gw[:I].t().contiguous(), "weight_hh": gw[I:].t().contiguous(),
                 "bias_ih": gb, "bias_hh": gb.clone()}
        dx = (dz @ p["weight_ih"]).view(cache.x.shape) if need_dx else None
        return LayerGrads(dh=dh, dc=dc, params=grads, dx=dx, norms=norms)


__all__ = ["LSTMCache", "LSTMFamily", "LSTMCell"]
