"""What :mod:`gradviz` offers a script or a notebook, beyond the engine's own classes.

* :mod:`~gradviz.api.modules` — :func:`capture`: the gradient flow of a user's own
  ``torch.nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` on their data, exactly;
* :mod:`~gradviz.api.modern` — :class:`Recurrent`: gradviz's own cells (minGRU, minLSTM,
  IndRNN, LRU, orthogonal RNN, and the classic ones) as a torch module that capture follows;
* :mod:`~gradviz.api.watch` — :class:`Watch`: captures every k steps of a user's training
  loop, kept in a history the app opens;
* :mod:`~gradviz.api.runs` — :class:`SavedRun`, :func:`load_run` and :func:`save_run` for
  sessions, watches and histories alike;
* :mod:`~gradviz.api.show` — :func:`show`: the app, in a process of its own, on a run.

:mod:`gradviz` re-exports these names and imports each module only when its name is used.
"""
