"""The prediction trees a run keeps, and which one the timeline shows.

The training process sends a tree (:class:`~gradviz.engine.analysis.treereport.TreeSnapshot`)
when the window asks for one and each time it samples text. A run keeps them as it keeps
its text samples (:class:`~gradviz.ui.state.ShownRun`): bounded, the older ones thinned,
each with the number of steps trained when it was made. The view shows the newest tree
for its settings made by the end of the step the timeline shows.
"""
from __future__ import annotations

import bisect

# Trees a run keeps (each at most a few dozen rows: k ≤ 5, depth ≤ 3, pruned by a floor).
TREE_SAMPLES = 256


class TreeRecord:
    """The trees of one run, oldest first."""

    def __init__(self) -> None:
        self.trees: list = []

    def __len__(self) -> int:
        return len(self.trees)

    def add(self, tree) -> None:
        """Keep ``tree`` (a TreeSnapshot); when full, every other one of the older ones
        goes and the newest stays, so that they stay spread over the run."""
        self.trees.append(tree)
        self.trees.sort(key=lambda t: t.steps_done)     # stable: equal steps keep their order
        if len(self.trees) > TREE_SAMPLES:
            self.trees = self.trees[:-1:2] + self.trees[-1:]

    def at(self, step: int | None, settings):
        """The newest tree of ``settings`` made by the end of training step ``step`` (step
        k is done when k + 1 steps are; None: the newest of all); None if there is none."""
        mine = [t for t in self.trees if t.settings == settings]
        if step is None:
            return mine[-1] if mine else None
        index = bisect.bisect_right([t.steps_done for t in mine], step + 1)
        return mine[index - 1] if index else None

    def first(self, settings):
        """The oldest tree of ``settings``, or None."""
        return next((t for t in self.trees if t.settings == settings), None)

    def clear(self) -> None:
        self.trees.clear()


__all__ = ["TreeRecord", "TREE_SAMPLES"]
