"""The prediction-tree view's part of the window: it asks the training backend for trees,
keeps those that come back with the live run, and shows the one the timeline chooses.

* The view's settings (prefix, k, depth, temperature) go to the backend when they change
  and when a new model is ready (``ask_tree``); the backend answers at once and again
  each time it samples text (``tree_ready``).
* Each tree is kept with the live run (:class:`~gradviz.ui.treerecord.TreeRecord`), with
  the steps trained when it was made; the view shows the newest one of its settings made
  by the end of the step the timeline shows, or says in one line why there is none.
* The view's page is shown for the character models (tasks text and reber) only.
"""
from __future__ import annotations

from PyQt6 import QtCore

from gradviz.registry import task_spec

KEY = "predtree"


def is_language(task: str) -> bool:
    try:
        return task_spec(task).is_language
    except (KeyError, ValueError):
        return False


class TreeWiring(QtCore.QObject):
    """Connects ``window``'s prediction-tree view to its state and backend."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.view = window.views[KEY]
        self.state = window.state
        self.worker = window.model.worker
        self.view.settings_changed.connect(self.ask)
        self.worker.tree_ready.connect(self.on_tree)
        self.worker.ready.connect(self.on_ready)
        self.state.step_selected.connect(self.refresh)
        self.state.runs_changed.connect(self.refresh)
        self.state.config_changed.connect(self.refresh)
        self.show_page(is_language(self.state.config.task))
        self.refresh()

    def ask(self, settings=None) -> None:
        """Ask the backend for the tree of the view's settings (or ``settings``)."""
        ask = getattr(self.worker, "ask_tree", None)
        if ask is not None:
            ask(settings if settings is not None else self.view.settings())
        self.refresh()

    def on_ready(self, language: bool) -> None:
        self.show_page(language)
        if language:
            self.ask()

    def on_tree(self, tree) -> None:
        # A run opened from a folder is not the model the backend trains behind it.
        if self.state.live.source is None:
            self.state.live.trees.add(tree)
        self.refresh()

    def show_page(self, language: bool) -> None:
        tabs = self.window.dashboard.tabs
        page = self.view.page
        for index in range(tabs.count()):
            if tabs.tabText(index) == page:
                tabs.setTabVisible(index, language)

    def refresh(self, *_) -> None:
        """Show the tree the timeline chooses, or why there is none."""
        run, step = self.state.live, self.state.selected_step
        settings = self.view.settings()
        tree = run.trees.at(step, settings)
        self.view.show_tree(tree, "" if tree is not None else self.why_empty(run, step,
                                                                              settings))

    def why_empty(self, run, step, settings) -> str:
        task = run.config.task
        if not is_language(task):
            return (f"The prediction tree is for the character models (tasks text and "
                    f"reber); this run's task is {task}.")
        if run.source is not None:
            return ("Trees are not saved with a run: continue it or train the model to see "
                    "its predictions.")
        first = run.trees.first(settings)
        if first is None:
            return ("No tree yet for these settings: one comes when the model is ready, "
                    "and again each time text is sampled while it trains.")
        return (f"No tree for these settings by step {step:,}: the first was made after "
                f"{first.steps_done:,} steps.")


def install(window) -> TreeWiring | None:
    """Give ``window`` its prediction-tree wiring (None if it has no such view)."""
    if KEY not in window.views:
        return None
    window.tree_wiring = TreeWiring(window)
    return window.tree_wiring


__all__ = ["TreeWiring", "install", "is_language", "KEY"]
