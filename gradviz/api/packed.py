"""Sequences of different lengths: :func:`capture_packed`, what ``gradviz.capture(…,
lengths=)`` (or a PackedSequence) runs.

PyTorch's module on a packed batch runs each sequence over its own steps only: the
forward direction stops at the sequence's last step, and the reverse direction *starts*
there (a padded batch would run the reverse pass through the padding first, and its
gradients would be wrong). This module runs the same recurrence step by step with the
module's own parameters, in PyTorch's gate order, through autograd: at a step beyond a
sequence's end that sequence's state is carried unchanged (forward) or stays the initial
state (reverse, until its end is reached), and its output is 0, as
``pad_packed_sequence`` gives it. The gradient reaching each h_t (and c_t) is read by
:class:`~gradviz.api.trace.Trace` marks over the sequences still running at t only, so
every norm and gate statistic is over valid steps; a step no sequence reaches is nan.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from gradviz.api import guards
from gradviz.api.trace import Trace
from gradviz.engine.runs.capture import Capture


def _as_lengths(lengths, B: int, T: int) -> Tensor:
    """(B,) int64 on the CPU, each in 1…T; ValueError naming the problem otherwise."""
    try:
        out = torch.as_tensor(lengths).detach().to("cpu")
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"gradviz.capture: lengths must be a sequence of whole numbers, one "
                         f"per sequence; got {type(lengths).__name__}") from None
    if out.dim() != 1 or out.shape[0] != B or out.is_floating_point() or out.is_complex():
        raise ValueError(f"gradviz.capture: lengths must be {B} whole numbers (one per "
                         f"sequence); got shape {tuple(out.shape)} of {out.dtype}")
    out = out.to(torch.int64)
    if B and (int(out.min()) < 1 or int(out.max()) > T):
        raise ValueError(f"gradviz.capture: every length must be between 1 and T={T}; got "
                         f"{int(out.min())}…{int(out.max())}")
    return out


def padded_input(module: nn.RNNBase, x, lengths) -> tuple[Tensor, Tensor]:
    """(x as (T, B, I), lengths (B,)) from a PackedSequence, or a padded x with lengths."""
    from gradviz.api.modules import _time_major

    if isinstance(x, PackedSequence):
        if lengths is not None:
            raise ValueError("gradviz.capture: a PackedSequence carries its lengths; do not "
                             "pass lengths= with it")
        xs, lengths = pad_packed_sequence(x)
        xs = _time_major(xs.transpose(0, 1) if module.batch_first else xs, module)
        return xs, _as_lengths(lengths, xs.shape[1], xs.shape[0])
    if isinstance(x, Tensor) and x.dim() != 3:
        raise ValueError("gradviz.capture: lengths= needs a batch, x of shape (T, B, I) or "
                         "(B, T, I) with batch_first")
    xs = _time_major(x, module)
    return xs, _as_lengths(lengths, xs.shape[1], xs.shape[0])


def module_output(module: nn.RNNBase, x, h0, lengths) -> Tensor:
    """The padded output of ``module`` on the packed batch, in the module's layout: what
    :func:`capture_packed` gives ``loss_fn`` (for a watch's steps that are not captured)."""
    if isinstance(x, PackedSequence):
        out, _ = module(x, h0)
        return pad_packed_sequence(out, batch_first=module.batch_first)[0]
    T = x.shape[1 if module.batch_first else 0]
    lengths = _as_lengths(lengths, x.shape[0 if module.batch_first else 1], T)
    packed = pack_padded_sequence(x, lengths, batch_first=module.batch_first,
                                  enforce_sorted=False)
    out, _ = module(packed, h0)
    return pad_packed_sequence(out, batch_first=module.batch_first, total_length=T)[0]


def _step(mode: str, x: Tensor, h: Tensor, c, p: dict) -> tuple[Tensor, Tensor | None, list]:
    """One step of PyTorch's cell ``mode``: (h_t, c_t, [gate activations in order])."""
    gi = x @ p["weight_ih"].T + p["bias_ih"]
    gh = h @ p["weight_hh"].T + p["bias_hh"]
    if mode == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, 1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        return o * torch.tanh(c), c, [i, f, g, o]
    if mode == "GRU":
        ir, iz, in_ = gi.chunk(3, 1)
        hr, hz, hn = gh.chunk(3, 1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        return (1 - z) * n + z * h, None, [r, z, n]
    h = torch.tanh(gi + gh) if mode == "RNN_TANH" else torch.relu(gi + gh)
    return h, None, [h]


def _forward_backward(module: nn.RNNBase, net, xs: Tensor, mask: Tensor, h_init, c_init,
                      loss_fn: Callable[[Tensor], Tensor], tr: Trace) -> Tensor:
    """The module's recurrence over the packed batch, step by step through autograd with
    the states and gates marked on ``tr``, ``loss_fn`` of its padded output, and the
    backward pass; returns the loss."""
    from gradviz.api.modules import _user_layout

    T = xs.shape[0]
    L, D = module.num_layers, 2 if module.bidirectional else 1
    mode = module.mode
    gate_names, ranges = tuple(net.cell.gate_names), tuple(net.cell.gate_ranges)
    inp = tr.inputs(xs, 0)
    for k in range(L):
        outs = []
        for d in range(D):
            p = {s: (getattr(net, f"{s}_l{k}{'_reverse' if d else ''}")) for s in
                 ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            h, c = h_init[k * D + d], (c_init[k * D + d] if c_init is not None else None)
            out = [None] * T
            for t in (range(T) if d == 0 else range(T - 1, -1, -1)):
                m = mask[t]
                h_new, c_new, acts = _step(mode, inp[t], h, c, p)
                tag = f"{k}.{d}"
                tr.mark(h_new, t, "state h" + tag, rows=m)
                if c_new is not None:
                    tr.mark(c_new, t, "state c" + tag, rows=m)
                for g, a, span in zip(gate_names, acts, ranges):
                    tr.mark(a, t, f"gate {g}{tag}", gate=True, span=span, of="state h" + tag,
                            rows=m)
                keep = m[:, None]
                h = torch.where(keep, h_new, h)
                if c_new is not None:
                    c = torch.where(keep, c_new, c)
                out[t] = torch.where(keep, h_new, torch.zeros_like(h_new))
            outs.append(torch.stack(out))
        inp = torch.cat(outs, -1) if D == 2 else outs[0]
    loss = loss_fn(_user_layout(inp, module, False))
    if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
        raise ValueError("gradviz.capture: loss_fn(output) must return a scalar tensor computed "
                         "from the output it is given")
    loss.backward()
    return loss


def capture_packed(module: nn.RNNBase, x, loss_fn: Callable[[Tensor], Tensor], h0,
                   lengths) -> Capture:
    """:func:`gradviz.capture` over sequences of their own lengths (module docstring).
    ``loss_fn`` gets the padded output in the module's layout, 0 beyond each sequence's
    end: ``pad_packed_sequence(module(pack_padded_sequence(x, lengths,
    enforce_sorted=False))[0], total_length=T)[0]``."""
    from gradviz.api.modules import _initial_state, shared_network
    from gradviz.engine.training.timesteps import spectral

    net = shared_network(module)
    xs, lens = padded_input(module, x, lengths)
    T, B = xs.shape[:2]
    L, D = module.num_layers, 2 if module.bidirectional else 1
    mode, H = module.mode, module.hidden_size
    h_init, c_init = _initial_state(module, h0, B, False, mode == "LSTM")
    guards.refuse_beyond_memory(module, net.cell.name, xs, packed=True)
    mask = torch.arange(T)[:, None] < lens[None, :]                 # (T, B)
    mask = mask.to(xs.device)
    gate_names = tuple(net.cell.gate_names)
    ranges = tuple(net.cell.gate_ranges)
    tr = Trace()
    params = dict(module.named_parameters())
    before = {name: p.grad for name, p in params.items()}
    done = False
    try:                                # whatever fails, the caller's .grad stays as it was
        for p in params.values():
            p.grad = None
        loss = _forward_backward(module, net, xs, mask, h_init, c_init, loss_fn, tr)
        new = {name: p.grad if p.grad is not None else torch.zeros_like(p)
               for name, p in params.items()}
        done = True
    finally:
        for name, p in params.items():
            if done and p.requires_grad:
                p.grad = new[name] if before[name] is None else before[name].add_(new[name])
            else:
                p.grad = before[name]
    tc = tr.capture()
    dtype = np.float64 if xs.dtype == torch.float64 else np.float32
    valid = mask.to("cpu").numpy()

    def grid(prefix: str) -> np.ndarray:
        out = np.full((L, D, T), np.nan)
        for k in range(L):
            for d in range(D):
                series = tc.norms[f"state {prefix}{k}.{d}"]
                out[k, d, :len(series)] = series
        out[:, :, ~valid.any(1)] = np.nan           # steps no sequence reaches
        return out.astype(dtype)

    G = len(gate_names)
    gates = np.full((L, D, G, T, H), np.nan)
    low, high = np.full((L, D, G, T), np.nan), np.full((L, D, G, T), np.nan)
    probe = np.full((L, D, T, H), np.nan)
    probe_c = np.full((L, D, T, H), np.nan) if mode == "LSTM" else None
    for k in range(L):
        for d in range(D):
            for j, g in enumerate(gate_names):
                stats = tc.gates[f"gate {g}{k}.{d}"]
                gates[k, d, j], low[k, d, j], high[k, d, j] = (stats["mean"], stats["low"],
                                                               stats["high"])
            probe[k, d] = tc.probe[f"state h{k}.{d}"]
            if probe_c is not None:
                probe_c[k, d] = tc.probe[f"state c{k}.{d}"]
    gates[..., ~valid.any(1), :] = np.nan
    low[..., ~valid.any(1)] = high[..., ~valid.any(1)] = np.nan
    probe[:, :, ~valid[:, 0]] = np.nan
    if probe_c is not None:
        probe_c[:, :, ~valid[:, 0]] = np.nan
    with torch.no_grad():
        norms = torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64)
                             for g in new.values()])
        grad_norm = float(torch.linalg.vector_norm(norms))
        rho, sigma = spectral(net)
    loss_value = float(loss.detach())
    names = tuple(params)
    from gradviz.engine.model.network import owners_from_names
    dx = tc.input_norms.get("x")
    return Capture(
        step=0, loss=loss_value, baseline=math.nan, lr=math.nan, clip="none",
        clip_threshold=math.nan, dh_norm=grid("h"),
        dc_norm=grid("c") if mode == "LSTM" else None, gate_names=gate_names,
        gate_ranges=ranges, gates=gates.astype(dtype), sat_low=low.astype(dtype),
        sat_high=high.astype(dtype), probe_h=probe.astype(dtype),
        probe_c=None if probe_c is None else probe_c.astype(dtype),
        param_names=names, param_owners=owners_from_names(names),
        param_grad_norm=norms.to("cpu").numpy().astype(dtype), grad_norm=grad_norm,
        grad_norm_clipped=grad_norm, clipped=False,
        nonfinite=not (math.isfinite(loss_value) and math.isfinite(grad_norm)),
        rho=rho.cpu().numpy(), sigma_max=sigma.cpu().numpy(),
        rho_names=tuple(f"W_h{b}" for b in net.cell.blocks), rho_step=0,
        dx_norm=None if dx is None else dx.astype(dtype))


__all__ = ["capture_packed", "module_output", "padded_input"]
