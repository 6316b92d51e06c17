"""``gradviz.capture``: the capture of a user's ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``, over
a padded batch (:func:`gradviz.api.modules.capture`, gradviz's recurrence) or over
sequences of their own lengths (:func:`gradviz.api.packed.capture_packed`, through
autograd, exactly as the module runs a packed batch)."""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from gradviz.api import guards, modules
from gradviz.engine.runs.capture import Capture


def capture(module: nn.RNNBase, x, loss_fn: Callable[[Tensor], Tensor], h0=None,
            tbptt: int = 0, lengths=None) -> Capture:
    """Run ``module`` over ``x``, backpropagate ``loss_fn(output)`` and capture the
    gradient flow: see :func:`gradviz.api.modules.capture`.

    ``lengths`` (one whole number per sequence), or a PackedSequence ``x``: each sequence
    is run over its own steps, as the module runs a packed batch (both directions: the
    reverse pass starts at each sequence's own end); ``loss_fn`` gets the padded output,
    0 beyond each end; norms and gate statistics are over the valid steps only, nan at a
    step no sequence reaches (:mod:`gradviz.api.packed`)."""
    if lengths is None and not isinstance(x, nn.utils.rnn.PackedSequence):
        return modules.capture(module, x, loss_fn, h0, tbptt)
    if isinstance(tbptt, bool) or not isinstance(tbptt, int) or tbptt:
        raise ValueError("gradviz.capture: tbptt is not supported with lengths (a packed "
                         "batch); leave it 0")
    modules.cell_of(module)
    guards.refuse_nonfinite_weights(module)
    if isinstance(module, modules.Recurrent):
        raise ValueError("gradviz.capture: lengths and packed batches are for torch's own "
                         "modules; for gradviz.Recurrent pad the batch and mask the loss")
    from gradviz.api.packed import capture_packed
    return capture_packed(module, x, loss_fn, h0, lengths)


__all__ = ["capture"]
