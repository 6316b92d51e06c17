"""Continuing a saved run: its folder opened, its state read and the three files checked
against each other (:mod:`gradviz.engine.runs.runcheck`) before the state goes into a
session. ``gradviz run --resume``, :meth:`Session.resume
<gradviz.engine.training.session.Session.resume>` and the app's Continue all come here, so
a damaged or inconsistent folder is one :class:`~gradviz.engine.runs.runformat.RunFileError`
naming the file and the field, before any step is trained."""
from __future__ import annotations

import os

from gradviz.engine.runs.runcheck import check_state_values, check_whole
from gradviz.engine.runs.runfile import SavedRun, load_run_state, open_run
from gradviz.engine.runs.runstate import check_state, restore_state


def restore_run(session, run: SavedRun | str | os.PathLike) -> SavedRun:
    """Put the state of ``run`` (opened, or its folder or run.json) into ``session``, a fresh
    session of its configuration, once the whole folder is checked; returns the opened run.
    RunFileError, with the session unchanged, if anything does not fit."""
    if not isinstance(run, SavedRun):
        run = open_run(run)
    state = load_run_state(run, session)
    where = str(run.state_file)
    check_state(state, session, where)
    check_state_values(state.arrays, session, where)
    check_whole(run, state.arrays, session)
    restore_state(session, state, where)
    return run


__all__ = ["restore_run"]
