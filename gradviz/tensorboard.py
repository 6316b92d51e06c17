"""TensorBoard event files of a run, written with ``torch.utils.tensorboard``.

:class:`BoardWriter` takes captures as they come (``gradviz run --tensorboard DIR``);
:func:`export_history` writes a whole :class:`~gradviz.engine.runs.history.History` (File ▸
Export ▸ TensorBoard…, or a script). Both need the ``tensorboard`` package
(``pip install "gradviz-rnn[tensorboard]"``); without it they raise
:class:`TensorBoardMissing`, which says so. Tags, one point per captured step:

* ``loss``, ``baseline`` (the task's no-memory loss), ``lr``;
* ``grad_norm/pre_clip`` and ``grad_norm/post_clip`` (global L2 norms), ``clipped`` (0/1),
  ``grad_norm/param/NAME`` (each parameter tensor, before clipping: ``weight_hh_l0``, …);
* ``rho/LAYER/BLOCK`` and ``sigma_max/LAYER/BLOCK``: spectral radius and largest singular
  value of each recurrent block, at the steps they were computed for (LAYER ``l0``,
  ``l0_reverse``, …, BLOCK ``W_hi``, …; from a History, at every row);
* ``dh_norm/first/LAYER`` and ``dh_norm/last/LAYER``: ‖∂L/∂h_t‖ at t = 0 and t = T-1;
* the image ``dh_norm/log10``: ‖∂L/∂h_t‖ over t (x, left to right) for each layer and
  direction (bands, top to bottom), brightness log₁₀ of the norm over the 8 decades below
  the step's largest: a vanishing gradient fades to black toward t = 0.

Qt-free: the app and the command line both call it.
"""
from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import numpy as np

from gradviz.engine.runs.capture import Capture
from gradviz.engine.runs.history import History

DECADES = 8.0          # the dynamic range of the dh_norm image, in powers of ten
BAND = 8               # pixel rows per layer and direction in the image
MIN_WIDTH = 256        # columns: short sequences are widened by repeating timesteps

OPTIONAL_SCALARS = ("baseline", "lr")   # left out where not finite
INSTALL_HINT = 'pip install tensorboard (or pip install "gradviz-rnn[tensorboard]")'


class TensorBoardMissing(RuntimeError):
    """The ``tensorboard`` package is not installed; the message says how to install it."""


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TensorBoardMissing("TensorBoard export needs the tensorboard package, which is "
                                 f"not installed: {INSTALL_HINT}") from None
    return SummaryWriter


def layer_name(layer: int, direction: int) -> str:
    """``l0``, ``l0_reverse``: PyTorch's suffix of the parameters of that layer-direction."""
    return f"l{layer}{'_reverse' if direction else ''}"


def dh_image(dh_norm: np.ndarray) -> np.ndarray:
    """(L·D·BAND, max(T, MIN_WIDTH)) uint8 image of ``dh_norm`` (L, D, T): log₁₀ of each
    norm over the DECADES below the largest finite one, 0 (black) for zero or non-finite."""
    L, D, T = dh_norm.shape
    rows = np.asarray(dh_norm, np.float64).reshape(L * D, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(rows)
    finite = np.isfinite(logs)
    top = logs[finite].max() if finite.any() else 0.0
    level = np.where(finite, np.clip((logs - top) / DECADES + 1.0, 0.0, 1.0), 0.0)
    repeat = max(1, math.ceil(MIN_WIDTH / T))
    return np.repeat(np.repeat((level * 255).round().astype(np.uint8), BAND, 0), repeat, 1)


def _quiet_writer_threads() -> None:
    """The event files are written by a thread of tensorboard's, which prints a traceback
    when a write fails (a full disk) and then fails the next call of ours with the same
    error: that is the one :class:`BoardWriter` reports, so the thread's print is left out."""
    try:
        from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread
    except ImportError:          # another layout of tensorboard: its own reports stand
        return
    previous = threading.excepthook
    if getattr(previous, "_gradviz_board", False):
        return

    def hook(args) -> None:
        if not (isinstance(args.thread, _AsyncWriterThread)
                and issubclass(args.exc_type, OSError)):
            previous(args)
    hook._gradviz_board = True
    threading.excepthook = hook


class BoardWriter:
    """Event files in ``folder`` (created if needed); use as a context manager, or close().

    A write that fails (a full disk, a folder made unwritable) ends the writing: the error
    is kept in :attr:`failed` and every later call does nothing, so that training and
    saving the run go on; the caller reports it in one line."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.failed: OSError | None = None
        self._writer = _summary_writer_class()(log_dir=str(self.folder))
        _quiet_writer_threads()
        self._rho_step: int | None = None

    def __enter__(self) -> "BoardWriter":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _give_up(self, exc: OSError) -> None:
        self.failed = self.failed or exc
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass

    def close(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError as exc:
                self._give_up(exc)
            self._writer = None

    def add_capture(self, cap: Capture) -> None:
        """Everything the module docstring lists, at step ``cap.step``."""
        if self._writer is None:
            return
        try:
            self._add_capture(cap)
        except OSError as exc:
            self._give_up(exc)

    def _add_capture(self, cap: Capture) -> None:
        self.add_row(cap.step, {"loss": cap.loss, "baseline": cap.baseline, "lr": cap.lr,
                                "grad_norm/pre_clip": cap.grad_norm,
                                "grad_norm/post_clip": cap.grad_norm_clipped,
                                "clipped": float(cap.clipped)},
                     cap.param_names, cap.param_grad_norm, cap.dh_norm)
        self.add_spectral(cap)

    def add_row(self, step: int, scalars: dict[str, float], param_names, param_norms,
                dh_norm: np.ndarray) -> None:
        """The scalars given, each parameter's norm and the dh_norm (L, D, T) tags."""
        w = self._writer
        for tag, value in scalars.items():
            # A capture of a user's module has no baseline and no learning rate (nan).
            if tag not in OPTIONAL_SCALARS or math.isfinite(value):
                w.add_scalar(tag, float(value), step)
        for name, value in zip(param_names, np.asarray(param_norms, np.float64)):
            w.add_scalar(f"grad_norm/param/{name}", float(value), step)
        L, D, _ = dh_norm.shape
        for k in range(L):
            for d in range(D):
                w.add_scalar(f"dh_norm/first/{layer_name(k, d)}", float(dh_norm[k, d, 0]), step)
                w.add_scalar(f"dh_norm/last/{layer_name(k, d)}", float(dh_norm[k, d, -1]), step)
        w.add_image("dh_norm/log10", dh_image(dh_norm), step, dataformats="HW")

    def add_spectral(self, cap: Capture) -> None:
        """ρ and σ_max of every recurrent block, each at the step whose weights it
        describes: σ_max at the capture's step; ρ at its ``rho_step`` (an earlier step
        where it was kept from the last full decomposition), once per step."""
        new_rho = cap.rho_step != self._rho_step
        L, D, _ = cap.rho.shape
        for k in range(L):
            for d in range(D):
                for b, block in enumerate(cap.rho_names):
                    where = f"{layer_name(k, d)}/{block}"
                    rho, sigma = float(cap.rho[k, d, b]), float(cap.sigma_max[k, d, b])
                    if new_rho and math.isfinite(rho):      # nan: a trace has no W_hh
                        self._writer.add_scalar(f"rho/{where}", rho, cap.rho_step)
                    if math.isfinite(sigma):
                        self._writer.add_scalar(f"sigma_max/{where}", sigma, cap.step)
        self._rho_step = cap.rho_step

    def add_qualified(self, cap: Capture) -> None:
        """The tags of the PyTorch ecosystem (Lightning's), at step ``cap.step``:
        ``grad_2.0_norm/<qualified.param>`` (each parameter's L2 norm, before clipping),
        ``grad_2.0_norm_total`` and ``grad_2.0_norm_total/post_clip``; and ‖∂L/∂x_t‖ as
        the image ``dx_norm/log10`` and the scalars ``dx_norm/first``, ``dx_norm/last``.
        A failed write ends the writing, as in :meth:`add_capture`."""
        if self._writer is None:
            return
        try:
            self._add_qualified(cap)
        except OSError as exc:
            self._give_up(exc)

    def _add_qualified(self, cap: Capture) -> None:
        w, step = self._writer, cap.step
        for name, value in zip(cap.param_names, np.asarray(cap.param_grad_norm, np.float64)):
            w.add_scalar(f"grad_2.0_norm/{name}", float(value), step)
        w.add_scalar("grad_2.0_norm_total", float(cap.grad_norm), step)
        w.add_scalar("grad_2.0_norm_total/post_clip", float(cap.grad_norm_clipped), step)
        if cap.dx_norm is not None:
            self.add_dx(step, cap.dx_norm)

    def add_dx(self, step: int, dx_norm: np.ndarray) -> None:
        """‖∂L/∂x_t‖ (T,) at ``step``, where it has any finite value."""
        dx = np.asarray(dx_norm, np.float64)
        finite = np.flatnonzero(np.isfinite(dx))
        if not len(finite):
            return
        self._writer.add_scalar("dx_norm/first", float(dx[finite[0]]), step)
        self._writer.add_scalar("dx_norm/last", float(dx[finite[-1]]), step)
        self._writer.add_image("dx_norm/log10", dh_image(dx.reshape(1, 1, -1)), step,
                               dataformats="HW")

    def add_spectral_row(self, step: int, rho: np.ndarray, sigma: np.ndarray,
                         names) -> None:
        """ρ and σ_max (L, D, R) of one history row, at its step (non-finite left out)."""
        L, D, _ = np.shape(rho)
        for k in range(L):
            for d in range(D):
                for b, block in enumerate(names):
                    where = f"{layer_name(k, d)}/{block}"
                    for tag, arr in (("rho", rho), ("sigma_max", sigma)):
                        value = float(arr[k, d, b])
                        if math.isfinite(value):
                            self._writer.add_scalar(f"{tag}/{where}", value, step)


def export_history(history: History, folder: str | os.PathLike) -> Path:
    """Write every row of ``history`` (a merged row at its last step) and the latest
    capture's ρ and σ_max as event files in ``folder``; returns the folder.
    ValueError if the history is empty."""
    if len(history) == 0:
        raise ValueError("nothing to export: the run has no captured step yet")
    with BoardWriter(folder) as board:
        for i, step in enumerate(history.step):
            scalars = {"loss": history.loss[i], "baseline": history.baseline,
                       "lr": history.lr[i], "grad_norm/pre_clip": history.grad_norm[i],
                       "grad_norm/post_clip": history.grad_norm_clipped[i],
                       "clipped": float(history.clipped[i])}
            length = int(history.time_len[i])        # a ragged watch's row: its own steps
            board.add_row(int(step), scalars, history.param_names, history.param_grad_norm[i],
                          history.dh_norm[i][..., :length])
            if history.latest is not None:
                board.add_spectral_row(int(step), history.rho[i], history.sigma_max[i],
                                       history.latest.rho_names)
            if np.isfinite(history.dx_norm[i]).any():
                board.add_dx(int(step), history.dx_norm[i][:length])
    if board.failed is not None:      # found on closing: the last events never reached disk
        raise board.failed
    return Path(folder)


__all__ = ["BoardWriter", "export_history", "TensorBoardMissing", "dh_image", "layer_name",
           "INSTALL_HINT"]
