"""The sweep experiments: grids that reproduce a classic curve, with what to look for, and
the check of each lesson on a finished sweep's rows.

``gradviz sweep --experiment NAME --out DIR`` runs one (options given override its grid
and settings); ``python benchmarks/sweep_lessons.py`` runs them and checks their lessons.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from gradviz.config import RunConfig
from gradviz.sweep.results import Point


@dataclass(frozen=True)
class SweepExperiment:
    name: str
    title: str
    watch: str
    expected: str
    source: str
    base: RunConfig
    grid: dict = field(default_factory=dict)   # cells, lengths, seeds, vary


SWEEP_EXPERIMENTS: dict[str, SweepExperiment] = {e.name: e for e in (
    SweepExperiment(
        "vanishing-curve", "The vanishing-gradient curve",
        "Success rate on the adding problem against its length T, over seeds, for the tanh "
        "RNN, the LSTM and the GRU, each trained for the same 2000 steps. The tanh RNN "
        "solves the short problem and falls to zero success as T grows: its gradient "
        "loses decades over T (the decades_init column), so the two marked numbers never "
        "reach the weights. The gated cells keep a path along which the gradient does not "
        "shrink, and their curves stay up at lengths where the tanh curve is at zero.",
        "The tanh RNN's success rate falls to 0 by T = 20 and stays there; at the longest "
        "T, a gated cell solves more seeds than the tanh RNN.",
        "Bengio, Simard & Frasconi 1994; Hochreiter & Schmidhuber 1997 (the adding "
        "problem, Table 7); Pascanu, Mikolov & Bengio 2013, Fig. 7.",
        RunConfig(task="adding", hidden=32, batch_size=32, optimizer="adam", lr=0.01,
                  forget_bias=1.0, steps=2000),
        {"cells": ["rnn-tanh", "lstm", "gru"], "lengths": [5, 10, 20, 50, 100],
         "seeds": 3}),
    SweepExperiment(
        "clipping-curve", "Clipping rescues an exploding RNN",
        "A tanh RNN whose recurrent matrix starts orthogonal at spectral radius 1.5, "
        "trained on the adding problem with SGD at a large learning rate (0.1, momentum "
        "0.9), with and without clipping the gradient norm at 1, over seeds. Without "
        "clipping, a gradient that explodes throws the weights so far that the loss "
        "becomes infinite and the run never recovers (the final_loss column). Clipped, "
        "the same seeds on the same data take bounded steps and solve the short problems.",
        "At every T, clipping solves at least as many seeds as no clipping, and more in "
        "total.",
        "Pascanu, Mikolov & Bengio 2013, On the difficulty of training recurrent neural "
        "networks (Fig. 7: success rate with and without clipping).",
        RunConfig(task="adding", cell="rnn-tanh", hidden=32, batch_size=32, optimizer="sgd",
                  lr=0.1, momentum=0.9, init="orthogonal", rho=1.5, clip_threshold=1.0,
                  steps=2000),
        {"cells": ["rnn-tanh"], "lengths": [5, 10, 20], "seeds": 4,
         "vary": [["clip", ["none", "norm"]]]}),
)}


def sweep_experiment(name: str) -> SweepExperiment:
    try:
        return SWEEP_EXPERIMENTS[name]
    except KeyError:
        raise ValueError(f"no sweep experiment {name!r}; there are: "
                         f"{', '.join(SWEEP_EXPERIMENTS)}") from None


def zero_from(points: list[Point]) -> int | None:
    """The shortest T from which a curve's success rate is 0 at every longer T, or None."""
    found = None
    for point in reversed(points):
        if point.n and point.successes == 0:
            found = point.seq_len
        else:
            break
    return found


def check_lesson(name: str, curves: dict[str, list[Point]]) -> tuple[bool, str]:
    """(held, what was found) for the sweep experiment ``name`` on its ``curves``
    (:func:`gradviz.sweep.results.curves`)."""
    if name == "vanishing-curve":
        tanh = curves.get("rnn-tanh", [])
        zero = zero_from(tanh)
        longest = max(p.seq_len for p in tanh) if tanh else None

        def at_longest(cell):
            return next((p.successes for p in curves.get(cell, []) if p.seq_len == longest), 0)
        gated = max(at_longest("lstm"), at_longest("gru"))
        held = zero is not None and zero <= 20 and gated > at_longest("rnn-tanh")
        rates = ", ".join(f"T={p.seq_len}: {p.successes}/{p.n}" for p in tanh)
        return held, (f"tanh RNN {rates}; zero from T = {zero}; at T = {longest} the best "
                      f"gated cell solved {gated} seeds")
    if name == "clipping-curve":
        cell = SWEEP_EXPERIMENTS[name].grid["cells"][0]
        off = {p.seq_len: p.successes for p in curves.get(f"{cell} clip=none", [])}
        on = {p.seq_len: p.successes for p in curves.get(f"{cell} clip=norm", [])}
        held = bool(on) and all(on[T] >= off.get(T, 0) for T in on) and \
            sum(on.values()) > sum(off.values())
        return held, f"solved without clipping {off}, with clipping {on}"
    raise ValueError(f"no sweep experiment {name!r}")


__all__ = ["SweepExperiment", "SWEEP_EXPERIMENTS", "sweep_experiment", "zero_from",
           "check_lesson"]
