"""Sweeps: many headless runs over a grid (cells × lengths T × seeds × varied settings),
each judged by its task's success criterion; the curve of success rate against T.

* :mod:`~gradviz.sweep.grid` — the grid and the runs it expands to (:class:`Grid`);
* :mod:`~gradviz.sweep.runone` — one run as a worker executes it (:func:`run_one`);
* :mod:`~gradviz.sweep.executors` — a local process pool or a Dask cluster, one loop;
* :mod:`~gradviz.sweep.folder`, :mod:`~gradviz.sweep.results` — sweep.json, sweep.csv,
  the curves with their Wilson intervals;
* :mod:`~gradviz.sweep.driver` — running a grid with a progress line (``gradviz sweep``
  is :mod:`gradviz.sweepcli`);
* :mod:`~gradviz.sweep.experiments` — the sweep experiments and the checks of their lessons.

Qt-free; the Sweep view is :mod:`gradviz.ui.sweepview`. See docs/sweep.md.
"""
