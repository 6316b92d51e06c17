"""The record of a run, under the name it had before it was split in two:
:mod:`gradviz.engine.history` (the bounded :class:`History` of captures) and
:mod:`gradviz.engine.runfile` (the run folder on disk: :func:`save_run`, :func:`load_run`,
:func:`load_run_config`, :class:`RunFileError`).
"""
from gradviz.engine.history import History
from gradviz.engine.runfile import RunFileError, load_run, load_run_config, save_run

__all__ = ["History", "RunFileError", "save_run", "load_run", "load_run_config"]
