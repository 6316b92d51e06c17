"""The compiled loops' self-check, run when a build is first loaded (and again when its
file or the check changes: :mod:`~gradviz.engine.native.checkcache`).

Every loop runs on a small odd-sized case (H 19: vector blocks and leftover columns; B 5:
blocks of 4 rows and a leftover; T 4 with the gradient cut every 2 steps) and is compared
with the cell equations written plainly in :mod:`gradviz.engine.model.reference`: each
forward pass with the equations, each cell's reverse scan with autograd through them.
The LSTM variants' generic scan computes no equation of its own — its coefficients come
from the cells — so it is compared with its recursion on random coefficients, and the
gradient paths' norms with their definitions (:mod:`gradviz.engine.analysis.paths`) on random
gradients.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from gradviz.engine.model import reference
from gradviz.registry import CELLS, saturation_bounds

T_, B_, H_, I_, ROWS_, TBPTT_ = 4, 5, 19, 3, 4, 2


def _bands(cell: str) -> tuple[list[float], list[float]]:
    """The saturation thresholds of each stored gate of ``cell`` (the registry's): the LSTMs
    store i, f, g, o (the coupled one f, g, o), the GRU r, z, n."""
    bounds = [saturation_bounds(*g.range) for g in CELLS[cell].gates]
    return [b[0] for b in bounds], [b[1] for b in bounds]


_LSTM_BANDS = _bands("lstm")
_GRU_BANDS = _bands("gru")


def run(k) -> str | None:
    """What disagreed (e.g. "gru backward, torch.float32"), or None."""
    gen = torch.Generator().manual_seed(0)
    # The first cell to need the loops may be running under no_grad (Network.run is).
    with torch.inference_mode(False), torch.enable_grad():
        for dtype, tol in ((torch.float32, 2e-5), (torch.float64, 1e-12)):
            for check in (_check_lstm, _check_gru, _check_rnn, _check_variants, _check_scan,
                          _check_paths, _check_row_norms, _check_step_norms,
                          _check_norms_on_the_way):
                problem = check(k, dtype, tol, gen)
                if problem:
                    return f"{problem}, {dtype}"
    return _check_top_singular(k, gen)


def _check_top_singular(k, gen: torch.Generator) -> str | None:
    """The spectrum's Lanczos against svdvals: from a random start with room to converge,
    and from the previous vectors after a small change of the blocks, as in training."""
    H = 2 * H_ + 1
    w = torch.randn(3, H, H, generator=gen, dtype=torch.float64) / H ** 0.5
    v = torch.randn(3, H, generator=gen, dtype=torch.float64)
    for _ in range(2):
        sigma, ok = k.top_singular(w, v, H, 1e-10)
        exact = torch.linalg.svdvals(w)[:, 0]
        if not bool(ok.all()) or not torch.allclose(sigma, exact, rtol=1e-8, atol=0):
            return "spectrum lanczos"
        w = w + 1e-3 * torch.randn(w.shape, generator=gen, dtype=torch.float64) / H
    # Float32 blocks, read as they are: the numbers of their float64 copy, bit for bit.
    w32, v32 = w.float(), v.clone()
    sigma32, ok32 = k.top_singular(w32, v32, H, 1e-7)
    sigma64, ok64 = k.top_singular(w32.double(), v, H, 1e-7)
    if not (torch.equal(sigma32, sigma64) and torch.equal(v32, v) and torch.equal(ok32, ok64)):
        return "spectrum lanczos, float32 blocks"
    return None


def _close(a: Tensor, b: Tensor, tol: float) -> bool:
    return bool(torch.allclose(a, b, rtol=tol, atol=tol))


def _stats_close(mean, low, high, acts, lo, hi, tol) -> bool:
    """Means to tol; fractions within one unit of a step (a value on a band's edge may fall
    either side at float32's last bit)."""
    a = acts[:, :ROWS_]
    lo = torch.tensor(lo, dtype=a.dtype).view(1, 1, -1, 1)
    hi = torch.tensor(hi, dtype=a.dtype).view(1, 1, -1, 1)
    step = 1.01 / (ROWS_ * H_)
    return (_close(mean, a.mean(1), tol)
            and bool((low - (a < lo).to(a.dtype).mean((1, 3))).abs().max() <= step)
            and bool((high - (a > hi).to(a.dtype).mean((1, 3))).abs().max() <= step))


def _random(gen: torch.Generator, dtype) -> Callable[..., Tensor]:
    return lambda *shape: torch.randn(shape, generator=gen, dtype=dtype)


def _params(rnd, G: int, split_bias: bool = False, peepholes: bool = False) -> dict[str, Tensor]:
    """Parameters of a cell with G blocks; without ``split_bias`` the whole bias is b_ih
    (the compiled LSTM forward takes their sum)."""
    H, I = H_, I_
    p = {"weight_ih": rnd(G * H, I), "weight_hh": rnd(G * H, H) * 0.3, "bias_ih": rnd(G * H)}
    p["bias_hh"] = rnd(G * H) if split_bias else torch.zeros_like(p["bias_ih"])
    if peepholes:
        p["weight_ch"] = rnd(3 * H)
    return p


def _unrolled(step, p: dict[str, Tensor], x: Tensor, h0: Tensor, c0: Tensor | None,
              dout: Tensor | None = None) -> list[reference.Step]:
    """The reference ``step`` over x (T, B, I) from (h0, c0). With ``dout`` (T, B, H), the
    loss Σ_t dout_t · h_t is also backpropagated by autograd, the flow into step t cut where
    the cells cut it (t a multiple of TBPTT_): h, c, zx and zh of every step then hold the
    total gradient reaching them in ``.grad``."""
    if dout is not None:
        p = {name: w.detach().requires_grad_() for name, w in p.items()}
    steps, h, c = [], h0, c0
    for t in range(x.shape[0]):
        if dout is not None and t % TBPTT_ == 0:
            h, c = h.detach(), None if c is None else c.detach()
        s = step(p, x[t], h, c)
        if dout is not None:
            for v in (s.h, s.c, s.zx, s.zh):
                if v is not None:
                    v.retain_grad()
        steps.append(s)
        h, c = s.h, s.c
    if dout is not None:
        sum((d * s.h).sum() for d, s in zip(dout, steps)).backward()
    return steps


def _stacked(steps: list[reference.Step], name: str, grad: bool = False) -> Tensor:
    values = [getattr(s, name) for s in steps]
    return torch.stack([v.grad if grad else v.detach() for v in values])


def _lstm_inputs(x: Tensor, p: dict[str, Tensor], G: int, fold: bool):
    """zx and w_t as the compiled LSTM forward takes them (see cells.lstm)."""
    T, B, I = x.shape
    bias = p["bias_ih"] + p["bias_hh"]
    if fold:
        return bias.expand(B, G * H_).contiguous(), torch.cat(
            [p["weight_ih"], p["weight_hh"]], 1).t().contiguous()
    return ((x.reshape(T * B, I) @ p["weight_ih"].t() + bias).view(T, B, G * H_),
            p["weight_hh"].t().contiguous())


def _lstm_forward_problem(k, kind: str, step, p, x, h0, c0, tol):
    """The compiled forward of an LSTM cell against the equations, both ways of taking the
    input; (what disagreed or None, the compiled outputs (acts, c, tanh_c))."""
    T, B, I = x.shape
    ref = _unrolled(step, p, x, h0, c0)
    acts_ref, c_ref, h_ref = (_stacked(ref, n) for n in ("gates", "c", "h"))
    G = acts_ref.shape[2]
    lo, hi = (band[4 - G:] for band in _LSTM_BANDS)
    for fold in (False, True):
        zx, w_t = _lstm_inputs(x, p, G, fold)
        acts = x.new_empty((T, B, G, H_))
        c, tanh_c, h = (x.new_empty((T, B, H_)) for _ in range(3))
        xh = torch.cat([x, torch.zeros_like(h)], 2)
        mean, low, high = x.new_empty((T, G, H_)), x.new_empty((T, G)), x.new_empty((T, G))
        k.lstm_forward(I, fold, zx, w_t, h0, c0, acts, c, tanh_c, h, xh, ROWS_, mean, low, high,
                       kind=kind, w_c=p.get("weight_ch"))
        if not (_close(acts, acts_ref, tol) and _close(c, c_ref, tol) and _close(h, h_ref, tol)
                and _close(tanh_c, torch.tanh(c_ref), tol)
                and _close(xh[:, :, I:], torch.cat([h0[None], h_ref[:-1]]), tol)
                and _close(xh[:, :, :I], x, 0)
                and _stats_close(mean, low, high, acts_ref, lo, hi, tol)):
            return f"{kind} forward{' (folded input)' if fold else ''}", None
    return None, (acts, c, tanh_c)


def _check_lstm(k, dtype, tol, gen) -> str | None:
    rnd = _random(gen, dtype)
    x, h0, c0 = rnd(T_, B_, I_), rnd(B_, H_), rnd(B_, H_)
    p = _params(rnd, 4)
    problem, out = _lstm_forward_problem(k, "lstm", reference.lstm, p, x, h0, c0, tol)
    if problem:
        return problem
    acts, c, tanh_c = out
    dout = rnd(T_, B_, H_)
    dh, dc, dz = torch.empty_like(dout), torch.empty_like(dout), x.new_empty((T_, B_, 4 * H_))
    k.lstm_backward(acts, c, c0, tanh_c, dout, p["weight_hh"], TBPTT_, dh, dc, dz,
                    torch.empty_like(c0))
    ref = _unrolled(reference.lstm, p, x, h0, c0, dout)
    if not (_close(dh, _stacked(ref, "h", grad=True), tol)
            and _close(dc, _stacked(ref, "c", grad=True), tol)
            and _close(dz, _stacked(ref, "zx", grad=True), tol)):
        return "lstm backward"
    return None


def _check_gru(k, dtype, tol, gen) -> str | None:
    rnd = _random(gen, dtype)
    T, B, H, I = T_, B_, H_, I_
    x, h0 = rnd(T, B, I), rnd(B, H)
    p = _params(rnd, 3, split_bias=True)
    ref = _unrolled(reference.gru, p, x, h0, None)
    gates_ref, h_ref = _stacked(ref, "gates"), _stacked(ref, "h")
    un_ref = _stacked(ref, "zh")[:, :, 2 * H:]
    zx = (x.reshape(T * B, I) @ p["weight_ih"].t() + p["bias_ih"]).view(T, B, 3 * H)
    gates, un, h = x.new_empty((T, B, 3, H)), x.new_empty((T, B, H)), x.new_empty((T, B, H))
    mean, low, high = x.new_empty((T, 3, H)), x.new_empty((T, 3)), x.new_empty((T, 3))
    k.gru_forward(zx, p["weight_hh"].t().contiguous(), p["bias_hh"].expand(B, 3 * H).contiguous(),
                  h0, gates, un, h, x.new_empty((B, 3 * H)), ROWS_, mean, low, high)
    if not (_close(gates, gates_ref, tol) and _close(un, un_ref, tol) and _close(h, h_ref, tol)
            and _stats_close(mean, low, high, gates_ref, *_GRU_BANDS, tol)):
        return "gru forward"
    dout = rnd(T, B, H)
    h_prev = torch.cat([h0[None], h[:-1]])
    dh, dzh, dzx = torch.empty_like(dout), x.new_empty((T, B, 3 * H)), x.new_empty((T, B, 3 * H))
    k.gru_backward(gates, un, h_prev, dout, p["weight_hh"], TBPTT_, dh, dzh, dzx)
    ref = _unrolled(reference.gru, p, x, h0, None, dout)
    if not (_close(dh, _stacked(ref, "h", grad=True), tol)
            and _close(dzh, _stacked(ref, "zh", grad=True), tol)
            and _close(dzx, _stacked(ref, "zx", grad=True), tol)):
        return "gru backward"
    return None


def _check_rnn(k, dtype, tol, gen) -> str | None:
    rnd = _random(gen, dtype)
    x, h0 = rnd(T_, B_, I_), rnd(B_, H_)
    p = _params(rnd, 1, split_bias=True)
    dout = rnd(T_, B_, H_)
    ref = _unrolled(reference.rnn_tanh, p, x, h0, None, dout)
    h = _stacked(ref, "h")
    zx = (x @ p["weight_ih"].t() + p["bias_ih"] + p["bias_hh"]).contiguous()
    hf, dphi = torch.empty_like(dout), torch.empty_like(dout)
    k.rnn_forward(zx, p["weight_hh"].t().contiguous(), h0, hf, dphi)
    if not (_close(hf, h, tol) and _close(dphi, 1 - h * h, tol)):
        return "rnn forward"
    relu = _stacked(_unrolled(reference.rnn_relu, p, x, h0, None, dout), "h")
    k.rnn_forward(zx, p["weight_hh"].t().contiguous(), h0, hf, dphi, relu=True)
    if not (_close(hf, relu, tol) and torch.equal(dphi, (hf > 0).to(dtype))):
        return "relu rnn forward"
    dh, dz = torch.empty_like(dout), torch.empty_like(dout)
    k.rnn_backward(1 - h * h, dout, p["weight_hh"], TBPTT_, dh, dz)
    if not (_close(dh, _stacked(ref, "h", grad=True), tol)
            and _close(dz, _stacked(ref, "zx", grad=True), tol)):
        return "rnn backward"
    return None


def _check_variants(k, dtype, tol, gen) -> str | None:
    """The peephole and coupled forward passes."""
    rnd = _random(gen, dtype)
    x, h0, c0 = rnd(T_, B_, I_), rnd(B_, H_), rnd(B_, H_)
    for kind, step, G in (("peephole", reference.lstm_peephole, 4),
                          ("coupled", reference.lstm_coupled, 3)):
        p = _params(rnd, G, peepholes=kind == "peephole")
        problem, _ = _lstm_forward_problem(k, kind, step, p, x, h0, c0, tol)
        if problem:
            return problem
    return None


def _check_scan(k, dtype, tol, gen) -> str | None:
    """The variants' scan against its recursion (cells.lstm):
    dh_t = dout_t + dZ_{t+1} W_hh,  R_t = dh_t ⊙ M_t + carry_{t+1} ⊙ N_t."""
    rnd = _random(gen, dtype)
    T, B, H, G = T_, B_, H_, 4
    M, N = rnd(T, B, G + 1, H), rnd(T, B, G + 1, H)
    w_hh, dout = rnd(G * H, H) * 0.3, rnd(T, B, H)
    dh, R = torch.empty_like(dout), dout.new_empty((T, B, G + 1, H))
    k.family_scan(M, N, dout, w_hh, TBPTT_, dh, R)
    for t in range(T - 1, -1, -1):
        flows = t < T - 1 and (t + 1) % TBPTT_ != 0
        dh_t = dout[t] + (R[t + 1, :, :G].reshape(B, G * H) @ w_hh if flows else 0)
        R_t = dh_t.unsqueeze(1) * M[t] + (R[t + 1, :, G:] * N[t] if flows else 0)
        if not (_close(dh[t], dh_t, tol) and _close(R[t], R_t, tol)):
            return "lstm variants' scan"
    return None


def _check_paths(k, dtype, tol, gen) -> str | None:
    """The path norms of an LSTM (G 4, belt f), a GRU (G 3, belt z) and a plain RNN against
    their definitions, over the first ROWS_ of B_ rows; H 263: the loop's chunk of 256 units
    and 7 more (vectors and leftover units in both)."""
    rnd = _random(gen, dtype)
    T, B, H = T_, B_, 263
    dh, dout, dc = rnd(T, B, H), rnd(T, B, H), rnd(T, B, H)

    def norm(v: Tensor) -> Tensor:
        return v[:ROWS_].square().sum(0).sqrt()

    for kind, G in (("lstm", 4), ("gru", 3), ("rnn", 0)):
        gates = torch.rand((T, B, G, H), generator=gen, dtype=dtype) if G else None
        lstm = kind == "lstm"
        # belt_t, zero where the gradient does not cross from step t back to t - 1.
        belt = [gates[t, :, 1] * (dc[t] if lstm else dh[t]) if G and (t == 0 or t % TBPTT_)
                else torch.zeros_like(dh[t]) for t in range(T)]
        paths = {"dh": [norm(dh[t]) for t in range(T)],
                 "w": [torch.full((H,), float("nan"), dtype=dtype)]
                 + [norm(dh[t - 1] - dout[t - 1] - (belt[t] if kind == "gru" else 0))
                    for t in range(1, T)]}
        if G:
            paths["belt"] = [norm(b) for b in belt]
        if lstm:
            paths["dc"] = [norm(dc[t]) for t in range(T)]
            paths["c_h"] = [norm(dc[t] - (belt[t + 1] if t + 1 < T else 0)) for t in range(T)]
        names = {"lstm": ("dh", "dc", "belt", "w", "c_h"), "gru": ("dh", "belt", "w"),
                 "rnn": ("dh", "w")}[kind]
        expected = torch.stack([torch.stack(paths[n]) for n in names])
        out = dh.new_empty((len(names), T, H))
        k.path_norms(ROWS_, TBPTT_, dh, dout, dc if lstm else None, gates, 1, out)
        if not bool(torch.isclose(out, expected, rtol=tol, atol=tol, equal_nan=True).all()):
            return f"{kind} path norms"
    return None


def _check_row_norms(k, dtype, tol, gen) -> str | None:
    """The per-timestep norms against float64 norms of the same numbers, over rows of
    B_ × H_ elements (blocks of four and a leftover) spread from 1e-37 to 1e30 (float32's
    floor and squares that overflow it), and rows of zeros."""
    T = 2 * T_ + 1
    x = torch.randn((T, B_, H_), generator=gen, dtype=dtype)
    x = x * torch.logspace(-37, 30, T, dtype=torch.float64).to(dtype).view(-1, 1, 1)
    x[T // 2] = 0
    out = x.new_empty(T)
    k.row_norms(x, out)
    expected = torch.linalg.vector_norm(x.double().reshape(T, -1), dim=1)
    if not bool(((out == 0) == (expected == 0)).all()) or not torch.allclose(
            out.double(), expected, rtol=tol, atol=0):
        return "per-timestep norms"
    return None


def _check_step_norms(k, dtype, tol, gen) -> str | None:
    """The per-timestep norms of a capture in one call (dh, dout, their difference and dc)
    against float64 norms of the same numbers, with and without dc, over rows spread from
    1e-37 to 1e30 as in _check_row_norms and a row of zeros."""
    T = 2 * T_ + 1
    scale = torch.logspace(-37, 30, T, dtype=torch.float64).to(dtype).view(-1, 1, 1)
    dh, dout, dc = (torch.randn((T, B_, H_), generator=gen, dtype=dtype) * scale
                    for _ in range(3))
    dh[T // 2] = dout[T // 2] = dc[T // 2] = 0
    for with_c in (True, False):
        out = dh.new_empty((4 if with_c else 3, T))
        k.step_norms(dh, dout, dc if with_c else None, out)
        parts = [dh, dout, dh - dout] + ([dc] if with_c else [])
        expected = torch.stack([torch.linalg.vector_norm(x.double().reshape(T, -1), dim=1)
                                for x in parts])
        if not bool(((out == 0) == (expected == 0)).all()) or not torch.allclose(
                out.double(), expected, rtol=tol, atol=0):
            return "per-timestep norms of a capture"
    return None


def _same(a: Tensor, b: Tensor) -> bool:
    return bool(torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))


def _check_norms_on_the_way(k, dtype, tol, gen) -> str | None:
    """Each reverse scan asked for a capture's norms as it goes (native.ScanNorms) writes
    the outputs it writes without, and the norms step_norms and path_norms give for them,
    bit for bit (both are checked above). Random states and gates in their ranges."""
    rnd = _random(gen, dtype)
    T, B, H = T_, B_, H_

    def unit(*shape):
        return torch.rand(shape, generator=gen, dtype=dtype)

    dout = rnd(T, B, H)
    scans = {
        "lstm": (k.lstm_backward, lambda dh, dc, dz: (
            unit(T, B, 4, H), rnd(T, B, H), rnd(B, H), unit(T, B, H), dout,
            rnd(4 * H, H) * 0.3, TBPTT_, dh, dc, dz, dout.new_empty((B, H)))),
        "gru": (k.gru_backward, lambda dh, dzh, dzx: (
            unit(T, B, 3, H), rnd(T, B, H), rnd(T, B, H), dout, rnd(3 * H, H) * 0.3, TBPTT_,
            dh, dzh, dzx)),
        "rnn": (k.rnn_backward, lambda dh, dz: (unit(T, B, H), dout, rnd(H, H) * 0.3, TBPTT_,
                                                dh, dz)),
    }
    shapes = {"lstm": [(T, B, H), (T, B, H), (T, B, 4 * H)],
              "gru": [(T, B, H), (T, B, 3 * H), (T, B, 3 * H)], "rnn": [(T, B, H), (T, B, H)]}
    for kind, (scan, make) in scans.items():
        outputs = [dout.new_empty(shape) for shape in shapes[kind]]
        args = make(*outputs)
        scan(*args)
        before = [o.clone() for o in outputs]
        norms = scan(*args, norms_rows=ROWS_)
        dh = outputs[0]
        dc = outputs[1] if kind == "lstm" else None
        gates = args[0] if kind != "rnn" else None
        steps, paths = dh.new_empty(norms.steps.shape), dh.new_empty(norms.paths.shape)
        k.step_norms(dh, dout, dc, steps)
        k.path_norms(ROWS_, TBPTT_, dh, dout, dc, gates, 1, paths)
        steps_only = scan(*args, norms_rows=0)
        if not (all(_same(a, b) for a, b in zip(before, outputs))
                and _same(norms.steps, steps) and _same(norms.paths, paths)
                and _same(steps_only.steps, steps) and steps_only.paths is None):
            return f"{kind} backward's norms"
    return None
