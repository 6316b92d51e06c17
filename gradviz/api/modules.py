"""Capturing a user's own ``torch.nn.RNN``, ``nn.LSTM`` or ``nn.GRU``.

PyTorch's fused recurrent modules expose neither their per-timestep states nor the
gradients reaching them. gradviz's recurrence (:mod:`gradviz.engine.model.network`) computes
exactly what theirs computes, with the same parameter names, shapes and gate order, so
:func:`capture` runs it with the module's own parameters — the very tensors, not copies —
over the user's input, backpropagates the user's loss through time by hand and returns a
:class:`~gradviz.engine.runs.capture.Capture`: ‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖) per layer, direction
and timestep in time order, the gates and their saturation, per-parameter gradient norms
and ρ(W_hh). The module's ``.grad`` is left as ``loss_fn(module(x)[0]).backward()`` leaves
it, so a capture can take the place of that call in a training loop.

Refused, each with a message that says why and what to do: anything but those three
modules, LSTM projections (``proj_size``), dropout between layers in training mode (it is
random, and gradviz's recurrence has none), packed sequences and an initial state that
requires a gradient. Shapes follow PyTorch: x (T, B, I), (B, T, I) with ``batch_first``,
or (T, I) unbatched; h0 (L·D, B, H) or (L·D, H), for an LSTM a pair (h0, c0).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from gradviz.api.modern import Recurrent
from gradviz.api import guards
from gradviz.engine.analysis.norms import each_norm, total_norm
from gradviz.engine.runs.capture import Capture
from gradviz.engine.model.network import Network, owners_from_names, param_name
from gradviz.engine.training.timesteps import spectral, timestep_arrays

# gradviz's cell for each of PyTorch's recurrent modes (``nn.RNNBase.mode``).
CELL_OF_MODE = {"RNN_TANH": "rnn-tanh", "RNN_RELU": "rnn-relu", "LSTM": "lstm", "GRU": "gru"}


def cell_of(module: nn.Module) -> str:
    """gradviz's name of ``module``'s cell ("lstm", …); TypeError or ValueError, with the
    reason and the remedy, for a module that :func:`capture` cannot follow exactly."""
    if isinstance(module, Recurrent):     # gradviz's own cells (minGRU, LRU, …)
        return module.cell_name
    if not isinstance(module, nn.RNNBase) or getattr(module, "mode", None) not in CELL_OF_MODE:
        raise TypeError(f"gradviz.capture follows torch.nn.RNN, nn.LSTM and nn.GRU (and gradviz.Recurrent); got "
                        f"{type(module).__name__}: for a loop of your own (nn.LSTMCell, a "
                        "hand-written cell) mark its states with gradviz.trace()")
    kind = type(module).__name__
    if getattr(module, "proj_size", 0):
        raise ValueError(f"gradviz.capture: this nn.{kind} has proj_size={module.proj_size}; "
                         "gradviz's LSTM has no projection of h_t. Use proj_size=0.")
    if module.dropout > 0 and module.training and module.num_layers > 1:
        raise ValueError(f"gradviz.capture: this nn.{kind} has dropout={module.dropout} "
                         "between its layers, which is random and which gradviz's recurrence "
                         "does not apply, so the gradients could not be exact. Use dropout=0, "
                         "or capture in eval mode (module.eval()), where dropout is off.")
    return CELL_OF_MODE[module.mode]


def shared_network(module: nn.RNNBase) -> Network:
    """A gradviz :class:`Network` whose recurrent parameters are ``module``'s own tensors
    (zero biases where the module has none); its readout is unused."""
    cell = cell_of(module)
    if isinstance(module, Recurrent):     # a gradviz network already
        return module
    weight = module.weight_ih_l0
    # Made on the meta device: it allocates nothing and draws nothing from torch's global
    # generator, whose state the user's own training must find as it left it.
    net = Network(cell, module.input_size, module.hidden_size, 1, module.num_layers,
                  module.bidirectional, weight.dtype, "meta")
    G = net.cell.n_blocks
    for k in range(net.layers):
        for d in range(net.directions):
            for short in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                full = param_name(short, k, d)
                param = getattr(module, full, None) if module.bias or short[0] == "w" else None
                if param is None:
                    param = nn.Parameter(weight.new_zeros(G * module.hidden_size),
                                         requires_grad=False)
                setattr(net, full, param)
    return net


def _time_major(x: Tensor, module: nn.RNNBase) -> Tensor:
    """x as (T, B, I), from (T, B, I), (B, T, I) with batch_first, or (T, I) unbatched."""
    if isinstance(x, nn.utils.rnn.PackedSequence):
        raise TypeError("gradviz.capture: a PackedSequence is read by gradviz.capture itself "
                        "(gradviz.api.capturing), not here")
    if not isinstance(x, Tensor) or x.dim() not in (2, 3):
        raise ValueError(f"gradviz.capture: x must be a tensor of shape (T, B, I), (B, T, I) "
                         f"with batch_first or (T, I); got {getattr(x, 'shape', type(x))}")
    weight = next(module.parameters())
    if weight.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"gradviz.capture: the module is {weight.dtype}; gradviz computes in "
                         "float32 or float64 (module.float() or module.double())")
    if x.shape[-1] != module.input_size:
        raise ValueError(f"gradviz.capture: x has {x.shape[-1]} features per timestep; the "
                         f"module's input_size is {module.input_size}")
    if x.dtype != weight.dtype or x.device != weight.device:
        raise ValueError(f"gradviz.capture: x is {x.dtype} on {x.device}, the module "
                         f"{weight.dtype} on {weight.device}; they must agree")
    if x.dim() == 2:
        x = x.unsqueeze(1)
    elif module.batch_first:
        x = x.transpose(0, 1)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"gradviz.capture: x has no timesteps or no sequences ({tuple(x.shape)})")
    return x


def _user_layout(t: Tensor, module: nn.RNNBase, unbatched: bool) -> Tensor:
    """(T, B, ·) back in the layout the module returns for the input given."""
    if unbatched:
        return t.squeeze(1)
    return t.transpose(0, 1) if module.batch_first else t


def _initial_state(module: nn.RNNBase, h0, B: int, unbatched: bool, has_c: bool):
    """(h0, c0) as (L·D, B, H) each (c0 None without a cell state), zeros where not given."""
    weight = next(module.parameters())
    shape = (module.num_layers * (2 if module.bidirectional else 1), B, module.hidden_size)
    if h0 is None:
        zeros = weight.new_zeros(shape)
        return zeros, (torch.zeros_like(zeros) if has_c else None)
    parts = tuple(h0) if has_c and isinstance(h0, (tuple, list)) else (h0,)
    if len(parts) != (2 if has_c else 1) or not all(isinstance(p, Tensor) for p in parts):
        what = "a pair (h0, c0) of tensors" if has_c else "a tensor"
        raise ValueError(f"gradviz.capture: h0 must be {what} for this module")
    if any(p.requires_grad for p in parts):
        raise ValueError("gradviz.capture: h0 requires a gradient, which gradviz does not "
                         "compute (only the parameters' and the input's); pass h0.detach()")
    parts = tuple(p.unsqueeze(1) if unbatched else p for p in parts)
    for p in parts:
        if tuple(p.shape) != shape:
            raise ValueError(f"gradviz.capture: h0 has shape {tuple(p.shape)}; this module and "
                             f"input need {shape} (layers·directions, batch, hidden)")
    return parts[0].to(weight.dtype), (parts[1].to(weight.dtype) if has_c else None)


def capture(module: nn.RNNBase, x: Tensor, loss_fn: Callable[[Tensor], Tensor], h0=None,
            tbptt: int = 0) -> Capture:
    """Run ``module`` over ``x`` with gradviz's recurrence, backpropagate
    ``loss_fn(output)`` and capture the gradient flow.

    ``loss_fn`` gets what ``module(x, h0)[0]`` returns and gives a scalar tensor; other
    parameters it uses (a readout, say) get their gradients as usual, and so does whatever
    produced ``x`` if it requires a gradient (an embedding). Every ``.grad`` is then what
    ``loss_fn(module(x, h0)[0]).backward()`` would leave: accumulated onto an existing one.
    ``tbptt`` > 0 cuts the gradient every ``tbptt`` steps of each direction's processing
    order, as gradviz's own training does (the gradient is then the truncated one).

    The capture holds ``dh_norm[layer, direction, t]`` (Frobenius norm over batch × units
    of the total ∂L/∂h_t, t in time order for both directions), ``dc_norm`` for an LSTM,
    the gates and saturation over the whole batch, the trajectory of batch row 0 as the
    probe, the norm of each parameter's gradient from this loss, and ρ and σ_max of each
    recurrent block; arrays in float64 for a float64 module, else float32. ``step``,
    ``lr`` and the clipping fields are 0, nan and "none": it is not a training step.
    """
    if isinstance(tbptt, bool) or not isinstance(tbptt, int) or tbptt < 0:
        raise ValueError(f"gradviz.capture: tbptt must be a whole number >= 0, got {tbptt!r}")
    net = shared_network(module)
    unbatched = isinstance(x, Tensor) and x.dim() == 2
    xs = _time_major(x, module)
    B = xs.shape[1]
    state = _initial_state(module, h0, B, unbatched, net.has_cell_state)
    guards.refuse_nonfinite_weights(module)
    guards.refuse_beyond_memory(module, net.cell.name, xs)
    with guards.without_autocast(xs):
        fwd = net.run(xs.detach(), state, stats_rows=B)
    out = _user_layout(fwd.output, module, unbatched).detach().requires_grad_()
    loss = loss_fn(out)
    if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
        raise ValueError("gradviz.capture: loss_fn(output) must return a scalar tensor computed "
                         "from the output it is given")
    # The gradient reaching the output first, keeping the loss's graph for the single
    # backward pass below, which also reaches x's graph: a loss_fn that shares part of it
    # (a skip connection from an embedding) would otherwise be backpropagated twice.
    d_out, = torch.autograd.grad(loss, out, retain_graph=True, allow_unused=True)
    d_tbh = torch.zeros_like(fwd.output) if d_out is None else (
        d_out.unsqueeze(1) if unbatched else d_out.transpose(0, 1) if module.batch_first else d_out)
    params = dict(module.named_parameters())
    before = {name: p.grad for name, p in params.items()}
    try:                                # whatever fails, the caller's .grad stays as it was
        for p in params.values():
            p.grad = None
        with guards.without_autocast(xs):
            grads = net.backward(fwd, d_tbh.contiguous(), tbptt, input_grad=True)
        new = {name: p.grad if p.grad is not None else torch.zeros_like(p)
               for name, p in params.items()}
    finally:
        for name, p in params.items():
            p.grad = before[name]
    tensors, seeds = [loss], [None]
    dx = grads[0][0].dx if net.directions == 1 else grads[0][0].dx + grads[0][1].dx.flip(0)
    if x.requires_grad:
        tensors.append(x)
        seeds.append(_user_layout(dx, module, unbatched))
    torch.autograd.backward(tensors, seeds)
    for name, p in params.items():
        if p.requires_grad:             # frozen: autograd would leave its .grad alone
            p.grad = new[name] if p.grad is None else p.grad.add_(new[name])

    with torch.no_grad():
        norms = each_norm(list(new.values()))
        grad_norm = total_norm(norms)
        rho, sigma = spectral(net)
    dtype = torch.float64 if xs.dtype == torch.float64 else torch.float32
    loss_value = float(loss.detach())
    names = tuple(params)
    return Capture(
        step=0, loss=loss_value, baseline=math.nan, lr=math.nan, clip="none",
        clip_threshold=math.nan, gate_names=tuple(net.cell.gate_names),
        gate_ranges=tuple(net.cell.gate_ranges),
        **timestep_arrays(net, fwd, grads, 0, dtype),
        param_names=names, param_owners=owners_from_names(names),
        param_grad_norm=norms.to("cpu", dtype).numpy(), grad_norm=grad_norm,
        grad_norm_clipped=grad_norm, clipped=False,
        nonfinite=not (math.isfinite(loss_value) and math.isfinite(grad_norm)),
        rho=rho.cpu().numpy(), sigma_max=sigma.cpu().numpy(),
        rho_names=net.cell.spec.rho_names, rho_step=0,
        dx_norm=torch.linalg.vector_norm(dx, dim=(1, 2), dtype=torch.float64)
        .to("cpu", dtype).numpy())


__all__ = ["capture", "cell_of", "shared_network", "CELL_OF_MODE"]
