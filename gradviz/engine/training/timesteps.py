"""The arrays of a capture computed from one forward and backward pass: the per-timestep
norms (‖∂L/∂h_t‖, its local and carried parts, ‖∂L/∂c_t‖, the path norms), the gate
statistics and the probe's states."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gradviz.engine.analysis.norms import step_norms
from gradviz.engine.analysis.paths import path_names, path_norms
# Importable from here as from engine/training/train.py (gradviz.api imports it so).
from gradviz.engine.analysis.spectrum import spectral  # noqa: F401
from gradviz.engine.model.network import Network


def orthogonal_singular_values(dphi: Tensor, rows: int) -> Tensor:
    """(3, T) the batch mean over the first ``rows`` sequences of the largest, smallest and
    mean singular value of ∂h_t/∂h_{t−1} = diag(1 − h_t²)·W_hh at every step, for an
    orthogonal W_hh; ``dphi`` (T, B, H) is 1 − h_t². With W orthogonal,
    (DW)(DW)ᵀ = D², so the singular values of D·W are exactly the |entries| of D: the
    Jacobian shrinks a direction only where tanh saturates, never through W."""
    d = dphi[:, :rows].abs()
    return torch.stack([d.amax(-1).mean(1), d.amin(-1).mean(1), d.mean((1, 2))])


@torch.no_grad()
def timestep_arrays(net: Network, fwd, grads, probe: int | None,
                    dtype: torch.dtype = torch.float32, rows: int | None = None,
                    tbptt: int = 0) -> dict[str, np.ndarray | tuple | None]:
    """The per-timestep arrays of a :class:`Capture`, in time order for both directions,
    from a forward pass (``fwd``, run with gate statistics unless ``probe`` is None) and
    its backward pass (``grads``): ``dh_norm``, ``dc_norm``, ``dout_norm``, ``carried_norm``,
    ``path_names``
    and, with ``probe`` (the batch row whose trajectory is kept), ``gates``, ``sat_low``,
    ``sat_high``, ``probe_h``, ``probe_c``, ``paths`` and, for the orthogonal RNN,
    ``jacobian_sv`` (over the first ``rows`` batch
    rows, all if None: those the loss sees); numpy arrays of ``dtype``, None where the
    cell has no such thing."""
    L, D, H = net.layers, net.directions, net.hidden
    T = fwd.output.shape[0]
    G = len(net.cell.gate_names)

    def in_time_order(t: Tensor, d: int, time_dim: int = 0) -> Tensor:
        return t if d == 0 else t.flip(time_dim)

    def host(parts: list[Tensor], shape: tuple[int, ...]) -> np.ndarray:
        """The parts stacked, as a numpy array of ``shape`` and ``dtype`` of its own (one
        copy: a single part is not stacked first)."""
        if len(parts) == 1:
            return parts[0].to("cpu", dtype, copy=True,
                               memory_format=torch.contiguous_format).reshape(shape).numpy()
        return torch.stack(parts).reshape(shape).to("cpu", dtype).numpy()

    pairs = [(k, d) for k in range(L) for d in range(D)]
    # Rows ‖dh_t‖, ‖dout_t‖, ‖dh_t − dout_t‖ (the carried part) and ‖dc_t‖, in one call.
    # (the scan's, where it computed them as it went: the same numbers).
    norms = [(grads[k][d].norms.steps if grads[k][d].norms is not None
              else step_norms(grads[k][d].dh, grads[k][d].dout, grads[k][d].dc), d)
             for k, d in pairs]
    dh = [in_time_order(n[0], d) for n, d in norms]
    dc = [in_time_order(n[3], d) for n, d in norms if n.shape[0] == 4]
    dout = [in_time_order(n[1], d) for n, d in norms]
    carried = [in_time_order(n[2], d) for n, d in norms]
    out = {"dh_norm": host(dh, (L, D, T)), "dc_norm": host(dc, (L, D, T)) if dc else None,
           "dout_norm": host(dout, (L, D, T)),
           "carried_norm": host(carried, (L, D, T)), "path_names": path_names(net.cell),
           "gates": None, "sat_low": None, "sat_high": None, "probe_h": None, "probe_c": None,
           "paths": None, "jacobian_sv": None}
    if probe is None:
        return out
    gates, low, high, ph, pc, paths, sv = [], [], [], [], [], [], []
    rows = grads[0][0].dh.shape[1] if rows is None else rows
    for k, d in pairs:
        cache = fwd.caches[k][d]
        fused = grads[k][d].norms
        if fused is not None and fused.paths is not None and fused.rows == rows:
            by_path = fused.paths                  # the scan's, as path_norms gives them
        else:
            by_path = path_norms(net.cell, cache, grads[k][d], rows, tbptt)
        # Each in the capture's order (time second to last), copied there once by host.
        paths.append(in_time_order(by_path, d, 1))                          # (Q, T, H)
        gates.append(in_time_order(cache.stats.mean.transpose(0, 1), d, 1))  # (G, T, H)
        low.append(in_time_order(cache.stats.low.t(), d, 1))                # (G, T)
        high.append(in_time_order(cache.stats.high.t(), d, 1))
        ph.append(in_time_order(cache.h[:, probe], d))
        if cache.c is not None:
            pc.append(in_time_order(cache.c[:, probe], d))
        if getattr(net.cell, "orthogonal", False):
            sv.append(in_time_order(orthogonal_singular_values(cache.dphi, rows), d, 1))
    out["gates"] = host(gates, (L, D, G, T, H))
    out["sat_low"] = host(low, (L, D, G, T))
    out["sat_high"] = host(high, (L, D, G, T))
    out["probe_h"] = host(ph, (L, D, T, H))
    out["probe_c"] = host(pc, (L, D, T, H)) if pc else None
    Q = len(out["path_names"])
    out["paths"] = host(paths, (L, D, Q, T, H))
    if sv:
        out["jacobian_sv"] = host(sv, (L, D, 3, T))
    return out


__all__ = ["timestep_arrays", "orthogonal_singular_values", "spectral"]
