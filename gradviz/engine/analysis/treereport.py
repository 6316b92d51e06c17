"""The prediction tree as plain data, for the window: what the training process computes
for the prediction-tree view (:mod:`gradviz.ui.views.predtree`) and sends back.

:class:`TreeSettings` is what the window asks for (a prefix, k, depth, temperature);
:class:`TreeSnapshot` the answer, made by :func:`tree_snapshot` from the model as it is
after ``steps_done`` steps: the tree's rows (:func:`~gradviz.engine.analysis.predtree.tree_rows`),
or the one line that says why there is no tree. Small by construction: k ≤ 5, depth ≤ 3
and branches below :data:`FLOOR` pruned, so at most 155 rows, most often a few dozen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# A branch whose probability along its path is below this is left out, with all below it.
FLOOR = 1e-3
# The view's limits: a deeper tree has too many leaves to read on a projector.
VIEW_MAX_K, VIEW_MAX_DEPTH = 5, 3
# The default prefix is this many characters of a line of the training text, at most.
PREFIX_CHARS = 24

Row = tuple[int, str, str, float, float]   # depth, path, symbol, probability, path probability


@dataclass(frozen=True)
class TreeSettings:
    """What the window asks for. ``prefix`` "" means the default: a line of the training
    text (:func:`default_prefix`)."""
    prefix: str = ""
    k: int = 2
    depth: int = 3
    temperature: float = 1.0


@dataclass(frozen=True)
class TreeSnapshot:
    """The tree for ``settings`` (as asked) after ``steps_done`` training steps: the
    ``prefix`` read (the default filled in) and the rows, depth first, parents before
    children; or, with no rows, ``error``, one line saying why."""
    settings: TreeSettings
    prefix: str
    steps_done: int
    rows: tuple[Row, ...] = ()
    error: str = ""


def default_prefix(task) -> str:
    """A line of the training text: the first with at least 12 characters that are not
    blanks (one that starts with a letter if there is one), its first :data:`PREFIX_CHARS` characters; for a task with no text (Reber),
    the start of its probe sequence."""
    text = getattr(task, "text", None)
    if isinstance(text, str):
        lines = [line.strip() for line in text.splitlines()]
        lines = [line for line in lines if len(line.replace(" ", "")) >= 12]
        # A line of words rather than of markup or code, where there is one.
        words = [line for line in lines if line[0].isalpha()]
        return (words or lines or [text])[0][:PREFIX_CHARS]
    probe = task.probe()                     # (T, 1, V) one-hot
    return task.decode(probe[:PREFIX_CHARS, 0].argmax(-1).tolist())


def tree_snapshot(trainer, settings: TreeSettings, floor: float = FLOOR) -> TreeSnapshot:
    """The tree of ``trainer``'s model now; a refused prefix or setting (ValueError) is the
    snapshot's ``error``, not an exception: the training goes on."""
    # Here, not at the top: the window imports this module (its messages) and no PyTorch.
    from gradviz.engine.analysis.predtree import tree_rows

    steps = trainer.step_index
    try:
        if not (1 <= settings.k <= VIEW_MAX_K and 1 <= settings.depth <= VIEW_MAX_DEPTH):
            raise ValueError(f"the view shows 1 to {VIEW_MAX_K} candidates and 1 to "
                             f"{VIEW_MAX_DEPTH} levels, not k {settings.k}, depth "
                             f"{settings.depth}")
        if not getattr(trainer.task, "is_language", False):
            raise ValueError(f"the {trainer.task.name} task is not a character model; the "
                             "prediction tree needs the text or reber task")
        prefix = settings.prefix or default_prefix(trainer.task)
        tree = trainer.prediction_tree(prefix, settings.k, settings.depth,
                                       settings.temperature, floor)
    except ValueError as err:
        return TreeSnapshot(settings, settings.prefix, steps, error=str(err))
    rows = tuple(tree_rows(tree))
    if not all(math.isfinite(p) for *_, p, _joint in rows):
        return TreeSnapshot(settings, prefix, steps,
                            error="no tree: the model's predictions are not finite numbers")
    return TreeSnapshot(settings, prefix, steps, rows)


__all__ = ["TreeSettings", "TreeSnapshot", "default_prefix", "tree_snapshot", "FLOOR",
           "VIEW_MAX_K", "VIEW_MAX_DEPTH", "PREFIX_CHARS"]
