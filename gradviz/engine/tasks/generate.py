"""The one-to-many task: one input symbol at step 0, then a fixed pattern to produce.

Of the four sequence shapes (Karpathy 2015; Fig. 11 of the course text) this is
one-to-many: one input, a sequence out, as in generation from a seed. The other shapes'
tasks are gradviz's too: many-to-one (adding, recall, series), many-to-many synchronised
(text, Reber) and many-to-many delayed (copy).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Batch, ClassificationLoss, Task, accuracy, new_probe_generator, require_length

# The patterns are the task's, not the run's: the same for every seed of every run.
PATTERN_SEED = 20150521


def patterns(seeds: int, symbols: int, seq_len: int) -> torch.Tensor:
    """(T, seeds) long: the pattern of each seed symbol. Each step's column is a random
    permutation of the symbols (seeds == symbols), drawn from PATTERN_SEED, so at every
    step every symbol is one seed's and nothing but the seed tells them apart."""
    generator = torch.Generator().manual_seed(PATTERN_SEED)
    return torch.stack([torch.randperm(symbols, generator=generator)[:seeds]
                        for _ in range(seq_len)])


class GenerateTask(ClassificationLoss, Task):
    """Generate a fixed pattern from one seed symbol (one-to-many).

    Input (T, B, S), one-hot: step 0 one of S = 4 seed symbols, drawn uniformly; every
    later step all zeros. Target (T, B): the seed's pattern of T symbols from an alphabet
    of K = 4 (:func:`patterns`), one at every step (cross-entropy at every step).

    No-memory predictor: at step 0 it sees the seed and names the pattern's first symbol
    (loss 0); after it sees zeros, and since each step's column is a permutation of the
    symbols the best guess is uniform, loss log K. Its mean loss over the T steps is
    (T − 1)/T · log K. :meth:`metric` is the fraction of symbols generated right.
    """

    name = "generate"
    seeds = 4
    symbols = 4
    input_size = seeds
    output_size = symbols
    metric_name = "symbols right"
    # The no-memory predictor's logit for the symbol it is sure of at step 0: its loss
    # there, log(1 + (K − 1) e^−SURE), is below 1e-40.
    SURE = 100.0

    def __init__(self, seq_len: int):
        require_length(self.name, seq_len, 2, "the seed symbol, then at least one to generate")
        self.seq_len = seq_len
        self.loss_positions = slice(0, seq_len)
        self.pattern = patterns(self.seeds, self.symbols, seq_len)
        self.baseline = (seq_len - 1) / seq_len * math.log(self.symbols)
        self._probe = self.batch(1, new_probe_generator()).x

    def batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        seed = torch.randint(0, self.seeds, (batch_size,), generator=generator)
        x = torch.zeros(self.seq_len, batch_size, self.seeds)
        x[0] = F.one_hot(seed, self.seeds).float()
        return Batch(x, self.pattern[:, seed])

    def metric(self, y: torch.Tensor, batch: Batch) -> float:
        return accuracy(y, batch.target)

    def probe(self) -> torch.Tensor:
        return self._probe.clone()

    def trivial_prediction(self, batch: Batch) -> torch.Tensor:
        y = torch.zeros(self.seq_len, batch.x.shape[1], self.symbols)
        seed = batch.x[0].argmax(-1)
        y[0] = self.SURE * F.one_hot(self.pattern[0, seed], self.symbols).float()
        return y


__all__ = ["GenerateTask", "patterns", "PATTERN_SEED"]
