"""Recurrent cells with hand-written backpropagation through time.

One module per family, and the equations they are checked against:

* :mod:`~gradviz.engine.model.cells.base` — the :class:`Cell` contract, the cache every forward
  pass leaves (:class:`LayerCache`, typed per family, recording the code path), the
  gradients a backward pass returns (:class:`LayerGrads`) and the gate statistics;
* :mod:`~gradviz.engine.model.cells.rnn` — the plain RNN, tanh and ReLU;
* :mod:`~gradviz.engine.model.cells.lstm` — the LSTM and the reverse scan of every LSTM cell;
* :mod:`~gradviz.engine.model.cells.lstm_variants` — the peephole and coupled-gate LSTMs;
* :mod:`~gradviz.engine.model.cells.gru` — the GRU;
* :mod:`~gradviz.engine.model.cells.diagonal` — what the diagonal recurrences share (one
  factor ∂h_t/∂h_{t-1} per unit and step), and :mod:`~.minimal` (minGRU, minLSTM),
  :mod:`~.indrnn` (IndRNN) and :mod:`~.lru` (the LRU) that build on it; the orthogonal RNN
  is in :mod:`~.rnn`;
* :mod:`~gradviz.engine.model.reference` — one timestep of every cell written plainly in
  PyTorch, differentiable by autograd: what the compiled loops check themselves against
  and what the tests compare whole networks with.

The per-timestep work of each reverse scan is a handful of small tensor operations; all
products that do not depend on the recursion (gate recomputation, parameter gradients,
input gradients) are done for all timesteps at once. Every cell's sequential loops (the
forward passes of the LSTMs and the GRU, and every reverse scan) run as compiled C where
that could be built (:mod:`gradviz.engine.native`), and as PyTorch operations otherwise;
the two paths compute the same numbers to rounding.

Parameters follow PyTorch's ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``: ``weight_ih`` (G·H, I),
``weight_hh`` (G·H, H), ``bias_ih`` and ``bias_hh`` (G·H,), with gate blocks in the order
i, f, g, o (LSTM) and r, z, n (GRU, where r multiplies ``W_hn h + b_hn``). The peephole LSTM
adds ``weight_ch`` (3·H,): diagonal peepholes for i, f (on c_{t-1}) and o (on c_t). The
coupled LSTM has blocks f, g, o and uses i = 1 - f. A cell's name, blocks and gates are its
entry in :mod:`gradviz.registry`.
"""
from __future__ import annotations

from gradviz.registry import cell_spec

from .base import Cell, GateStats, LayerCache, LayerGrads, empty_stats, gate_stats_into
from .gru import GRUCache, GRUCell
from .lstm import LSTMCache, LSTMCell
from .lstm_variants import CoupledLSTMCell, PeepholeLSTMCell, ScanCache
from .rnn import OrthogonalRNNCell, ReLURNNCell, RNNCache, RNNCell, TanhRNNCell
from .diagonal import DiagonalCache, DiagonalCell
from .indrnn import IndRNNCell
from .lru import LRUCell
from .minimal import MinGRUCell, MinLSTMCell

# The implementation of each registered cell.
CELL_CLASSES: dict[str, type[Cell]] = {
    "rnn-tanh": TanhRNNCell,
    "rnn-relu": ReLURNNCell,
    "lstm": LSTMCell,
    "lstm-peephole": PeepholeLSTMCell,
    "lstm-coupled": CoupledLSTMCell,
    "gru": GRUCell,
    # the modern recurrences (registry.MODERN_CELLS)
    "mingru": MinGRUCell,
    "minlstm": MinLSTMCell,
    "indrnn": IndRNNCell,
    "lru": LRUCell,
    "rnn-orthogonal": OrthogonalRNNCell,
}


def make_cell(name: str) -> Cell:
    """The registered cell called ``name``; the registry's ValueError for any other."""
    spec = cell_spec(name)
    return CELL_CLASSES[spec.name](spec)


__all__ = ["Cell", "LayerCache", "LayerGrads", "GateStats", "gate_stats_into", "empty_stats",
           "RNNCache", "LSTMCache", "ScanCache", "GRUCache", "RNNCell", "TanhRNNCell",
           "ReLURNNCell", "LSTMCell", "PeepholeLSTMCell", "CoupledLSTMCell", "GRUCell",
           "DiagonalCache", "DiagonalCell", "MinGRUCell", "MinLSTMCell", "IndRNNCell", "LRUCell",
           "OrthogonalRNNCell", "CELL_CLASSES", "make_cell"]
