"""One training step — forward, loss, BPTT, clipping, optimiser — and its capture.

:class:`Trainer` is a plain object with no threads: ``step()`` trains on one batch and,
every ``capture_every`` steps, returns a :class:`~gradviz.engine.runs.capture.Capture`. The app's
worker process and the headless command both drive it; so do the tests.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import os

import torch
from torch import Tensor

from gradviz.config import RunConfig
from gradviz import registry
from gradviz.engine.runs.capture import Capture
from gradviz.engine.training.divergence import Divergence, DivergenceWatch
from gradviz.engine.model.init import initialise
from gradviz.engine.model.network import Network, param_name
from gradviz.engine.analysis.norms import each_norm, total_norm
from gradviz.engine.training.optimizers import OPTIMISERS, Optimiser
from gradviz.engine.analysis.predtree import next_distribution, prediction_tree
from gradviz.engine.analysis.spectrum import (SpectrumTracker, spectral,  # noqa: F401 (re-export)
                                              step_multiply_adds)
from gradviz.engine.tasks import Task, make_task
from gradviz.engine.training.timesteps import timestep_arrays

def prepare_training_process() -> None:
    """Tune the process for training. Call it first thing in a training process.

    * Denormal floats are flushed to zero. Vanished gradients are exactly the tiny numbers
      that turn into denormals, and those made plain training up to 7× slower here; the
      setting only reaches torch's worker threads that start after it. With it, gradients
      below ~1e-38 (float32) become 0.
    * glibc is asked to keep freed memory for reuse instead of returning it to the system:
      otherwise the megabyte-sized buffers of every step are mapped afresh and each page
      faulted in again (~2,000 page faults per LSTM step at T = 200, ~9,000 at T = 1000).
    """
    torch.set_flush_denormal(True)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 2**30)
    mallopt(m_trim_threshold, 2**30)


# Multiply-adds of one timestep's recurrent product (B × H by H × G·H) from which more
# than one torch thread pays. Below it the per-step work is too small to share: threads
# only add waiting, and under CPU contention torch's pool made a small rnn-tanh run ~40×
# slower (330 -> 7 steps/s with another busy process on 2 cores; 290 with one thread).
THREADS_FROM_MACS = 2**22


def set_training_threads(n: int) -> None:
    """Use ``n`` threads for training: torch's pool and the BLAS under numpy
    (:mod:`gradviz.engine.training.blas`), which torch's setting does not reach."""
    from gradviz.engine.training.blas import set_blas_threads

    torch.set_num_threads(n)
    set_blas_threads(n)


def threads_for(config: RunConfig) -> int:
    """How many torch threads a training process for ``config`` should use: one for the
    small models gradviz is mostly used with, all cores for large products."""
    from gradviz.registry import cell_spec

    blocks = len(cell_spec(config.cell).blocks)
    macs = (config.batch_size + 1) * config.hidden * blocks * config.hidden
    return 1 if macs < THREADS_FROM_MACS else max(1, os.cpu_count() or 1)


def copy_each(into: list[Tensor], tensors: list[Tensor]) -> None:
    """``into[i].copy_(tensors[i])`` for every i, in one fused call where torch has it."""
    fused = getattr(torch, "_foreach_copy_", None)
    if fused is not None:
        fused(into, tensors)
    else:
        for a, b in zip(into, tensors):
            a.copy_(b)


def all_finite(tensors: list[Tensor]) -> bool:
    """True if no element of any tensor is NaN or ±inf. By the smallest and largest
    element of each (min and max propagate NaN, and an inf is one of them): exact, and
    ~10x faster than torch.isfinite, which made a six-tensor check cost ~0.4 ms here; on
    the CPU read at once, on a GPU in one copy."""
    with torch.no_grad():
        ends = [torch.aminmax(t.detach()) for t in tensors if t.numel()]
    if all(t.device.type == "cpu" for t in tensors):
        return all(math.isfinite(e.min.item()) and math.isfinite(e.max.item()) for e in ends)
    return not ends or bool(torch.isfinite(torch.stack([v for e in ends for v in e])).all())


def make_optimizer(name: str, params, lr: float, momentum: float = 0.0) -> Optimiser:
    """The optimiser registered as ``name`` (:data:`gradviz.registry.OPTIMIZERS`), from
    :mod:`gradviz.engine.training.optimizers` (torch.optim's arithmetic without its import
    of torch._dynamo); ``momentum`` is SGD's only."""
    if name not in registry.OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(registry.OPTIMIZERS)}")
    if name not in OPTIMISERS:
        raise NotImplementedError(f"the registered optimizer {name!r} has no construction here")
    if name == "sgd":
        return OPTIMISERS[name](params, lr=lr, momentum=momentum)
    return OPTIMISERS[name](params, lr=lr)


class Trainer:
    """Trains one network on one task and captures the gradient flow.

    Seeding: the weights come from ``seed`` and the batches from a generator of their own
    derived from it, so two cells started with the same seed see the same data.

    Every step goes to ``watch`` (:mod:`gradviz.engine.training.divergence`); ``divergence`` is what
    it reported for the latest step: None, unless the run was found diverged on that step.
    """

    def __init__(self, config: RunConfig, text: str | None = None):
        self.config = config.validate()
        self.device = torch.device(config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device: CUDA is not available here; use --device cpu")
        self.dtype = torch.float64 if config.dtype == "float64" else torch.float32
        self.task: Task = make_task(config, text)
        self.net = Network(config.cell, self.task.input_size, config.hidden, self.task.output_size,
                           config.layers, config.bidirectional, self.dtype, self.device)
        initialise(self.net, config.init, config.rho, config.forget_bias,
                   torch.Generator().manual_seed(config.seed), config)
        self.params = list(self.net.parameters())
        self.param_names = tuple(n for n, _ in self.net.named_parameters())
        self.param_owners = self.net.param_owners()
        self.optimizer = make_optimizer(config.optimizer, self.params, config.lr, config.momentum)
        self._data_gen = torch.Generator().manual_seed(config.seed + 1_000_003)
        self._backup = [p.detach().clone() for p in self.params]
        self.probe = self.task.probe().to(self.device, self.dtype)   # (T, 1, I)
        self._state: tuple[Tensor, Tensor | None] | None = None       # carried when stateful
        self.step_index = 0
        self.last_loss = math.nan
        self.baseline = float(self.task.baseline)
        self._gen_count = 0
        self._block_names = self.net.cell.spec.rho_names
        # ρ and σ_max, warm-started from step to step; ρ's full decompositions as often as
        # they cost ~2% of what these steps cost.
        net = self.net
        inputs = [self.task.input_size if k == 0 else net.directions * net.hidden
                  for k in range(net.layers) for _ in range(net.directions)]
        self.spectrum = SpectrumTracker(step_multiply_adds(
            config.seq_len, config.batch_size + 1, net.hidden, inputs, net.cell.n_blocks,
            recurrent=not net.cell.spec.diagonal))
        self._rho_step = 0
        self.watch = DivergenceWatch()
        self._finite_at: tuple | None = None     # _weight_versions() when last found finite
        self.divergence: Divergence | None = None

    # -- live settings --------------------------------------------------------------------
    def set_live(self, **changes) -> None:
        """Change clipping, learning rate, momentum or capture interval for the next step."""
        from gradviz.config import LIVE_FIELDS
        unknown = set(changes) - LIVE_FIELDS
        if unknown:
            raise ValueError(f"{', '.join(sorted(unknown))} cannot change during training; "
                             f"live settings: {', '.join(sorted(LIVE_FIELDS))}")
        self.config = self.config.replace(**changes)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr
            if "momentum" in group and self.config.optimizer == "sgd":
                group["momentum"] = self.config.momentum

    # -- one step -------------------------------------------------------------------------
    def step(self, full: bool = True) -> Capture | None:
        """Train on one batch. Returns a capture every ``capture_every`` steps, else None.

        With ``full=False`` the capture is light (:meth:`Capture.light`): the per-unit
        arrays — gates, saturation, probe trajectories — are not computed at all. A caller
        that draws only the newest capture in full asks for the others light.
        """
        cfg = self.config
        capture = self.step_index % cfg.capture_every == 0
        full = capture and full
        B = cfg.batch_size
        batch = self.task.batch(B, self._data_gen)
        x = batch.x.to(self.device, self.dtype)
        target = batch.target.to(self.device)
        if target.is_floating_point():
            target = target.to(self.dtype)
        # The probe rides along as an extra batch row that the loss never sees, so its
        # trajectory costs almost nothing and leaves the gradients untouched. It is there on
        # every step, captured or not: a batch of another size rounds differently, and a
        # run must not depend on which of its steps were drawn.
        x = torch.cat([x, self.probe], 1)
        state = self._initial_state(x.shape[1], B)

        fwd = self.net.run(x, state, stats_rows=B if full else None)
        for p in self.params:
            p.grad = None
        # Autograd runs from the outputs the loss reads (a leaf of their own) to the loss;
        # ∂L/∂output is theirs at those positions and 0 elsewhere, as autograd's backward
        # of the indexing would make it, without its graph.
        positions = self.task.loss_positions
        read = fwd.output[positions, :B].detach().requires_grad_()
        y = self.net.readout(read)
        loss = self.task.loss(y, target)
        metric = self.task.metric(y.detach(), batch) if capture else math.nan
        loss.backward()
        d_output = torch.zeros_like(fwd.output)
        if isinstance(positions, slice):
            d_output[positions, :B] = read.grad
        else:                             # index tensors: repeated positions add up
            d_output[:, :B].index_add_(0, positions.to(d_output.device), read.grad)
        grads = self.net.backward(fwd, d_output, cfg.tbptt,
                                  norms_rows=(B if full else 0) if capture else None)
        if cfg.stateful:
            self._state = (fwd.h_n[:, :B].clone(), None if fwd.c_n is None else fwd.c_n[:, :B].clone())

        loss_value = loss.item()
        norms = each_norm([p.grad for p in self.params])
        grad_norm = total_norm(norms)
        # ρ describes the weights this step used, so it is taken before the update.
        spectral_now = self._spectral_now() if capture else None
        events: list[str] = []
        nonfinite = not (math.isfinite(loss_value) and math.isfinite(grad_norm))
        clipped = False
        fault = None   # what went wrong, for the divergence watch
        if nonfinite:
            what = fault = "loss" if not math.isfinite(loss_value) else "gradient"
            events.append(f"step {self.step_index}: {what} not finite; the step was not applied")
            grad_norm_clipped = grad_norm
        else:
            clipped = self._clip(grad_norm)
            grad_norm_clipped = grad_norm if not clipped else total_norm(
                each_norm([p.grad for p in self.params]))
            if not self._apply_update():
                nonfinite = True
                fault = "update"
                events.append(f"step {self.step_index}: the update made weights non-finite; "
                              "it was undone and the optimiser state reset")
        self.last_loss = loss_value
        self.divergence = self.watch.record(self.step_index, fault)
        result = None
        if capture:
            result = self._capture(fwd, grads, B, loss_value, norms, grad_norm, grad_norm_clipped,
                                   clipped, nonfinite, tuple(events), full, metric, spectral_now)
        self.step_index += 1
        return result

    def _initial_state(self, rows: int, B: int):
        if self._state is None:
            return None
        h0, c0 = self.net.zero_state(rows)
        h0[:, :B] = self._state[0]
        if c0 is not None:
            c0[:, :B] = self._state[1]
        return h0, c0

    def _weight_versions(self) -> tuple:
        """Which tensors the parameters are, and their in-place change counters: equal
        tuples mean no parameter has been replaced or changed in between."""
        return tuple((id(p), p._version) for p in self.params)

    def _clip(self, grad_norm: float) -> bool:
        """Clip the gradients in place as configured; True if they changed."""
        cfg = self.config
        if cfg.clip == "norm":
            # By the exact norm (torch's own clip_grad_norm_ sums float32 squares, which
            # overflow to inf past ~1e19 and then scale every gradient to 0); its formula.
            if grad_norm <= cfg.clip_threshold:
                return False
            with torch.no_grad():
                torch._foreach_mul_([p.grad for p in self.params],
                                    min(1.0, cfg.clip_threshold / (grad_norm + 1e-6)))
            return True
        if cfg.clip == "value":
            peak = max(p.grad.abs().max().item() for p in self.params)
            torch.nn.utils.clip_grad_value_(self.params, cfg.clip_threshold)
            return peak > cfg.clip_threshold
        return False

    def _apply_update(self) -> bool:
        """Optimiser step, then the cell's constraint (IndRNN's |u| bound); undo it (and
        reset the optimiser) if it made a weight non-finite."""
        with torch.no_grad():
            copy_each(self._backup, self.params)
        self.optimizer.step()
        self.net.constrain()
        if all_finite(self.params):
            self._finite_at = self._weight_versions()
            return True
        with torch.no_grad():
            for b, p in zip(self._backup, self.params):
                p.copy_(b)
        self.optimizer.state.clear()
        return False

    # -- capture ----------------------------------------------------------------------------
    @torch.no_grad()
    def _capture(self, fwd, grads, B, loss_value, norms, grad_norm, grad_norm_clipped,
                 clipped, nonfinite, events, full, metric, spectral_now) -> Capture:
        cell = self.net.cell
        rho, sigma = spectral_now
        return Capture(
            step=self.step_index, loss=loss_value, baseline=self.baseline,
            lr=self.config.lr, clip=self.config.clip, clip_threshold=self.config.clip_threshold,
            gate_names=tuple(cell.gate_names), gate_ranges=tuple(cell.gate_ranges),
            **timestep_arrays(self.net, fwd, grads, B if full else None, rows=B,
                              tbptt=self.config.tbptt),
            param_names=self.param_names, param_owners=self.param_owners,
            param_grad_norm=norms.to("cpu", torch.float32).numpy(),
            grad_norm=grad_norm, grad_norm_clipped=grad_norm_clipped,
            clipped=clipped, nonfinite=nonfinite,
            # float64, as computed: the weights of a float64 run may pass float32's range.
            rho=rho.cpu().numpy(), sigma_max=sigma.cpu().numpy(),
            rho_names=self._block_names, events=events, rho_step=self._rho_step,
            metric=metric, metric_name=self.task.metric_name,
        )

    @torch.no_grad()
    def _spectral_now(self) -> tuple[Tensor, Tensor]:
        """ρ and σ_max of every recurrent block, (L, D, G') float64, from the tracker
        (:mod:`gradviz.engine.analysis.spectrum`); ``_rho_step`` is the step whose weights ρ
        describes."""
        L, D, H = self.net.layers, self.net.directions, self.net.hidden
        parts = [self.net.cell.recurrent_blocks(self.net.layer_params(k, d), H)
                 for k in range(L) for d in range(D)]
        blocks = parts[0] if len(parts) == 1 else torch.cat(parts)    # (L·D·G', H, H)
        names = [f"{param_name('weight_hh', k, d)} block {b}" for k in range(L)
                 for d in range(D) for b in self._block_names]
        # Weights found finite after the last update and not changed since (a parametrised
        # W_hh is computed from them, and could overflow) need not be checked again.
        finite = (self._finite_at == self._weight_versions()
                  and not self.net._parametrized)
        rho, sigma = self.spectrum.update(blocks, self.step_index, names, finite=finite)
        self._rho_step = self.spectrum.rho_step
        return rho.view(L, D, -1), sigma.view(L, D, -1)

    # -- text -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int = 200, temperature: float = 1.0) -> str | None:
        """Sample n symbols from the model for language tasks; None for other tasks."""
        if not self.task.is_language:
            return None
        if self.net.directions == 2:
            return "(A bidirectional model reads the future, so it cannot generate text.)"
        gen = torch.Generator().manual_seed(self.config.seed * 7919 + self._gen_count)
        self._gen_count += 1
        index = int(torch.randint(self.task.input_size, (1,), generator=gen))
        out_idx = [index]
        state = None
        for _ in range(n - 1):
            # The step the prediction tree takes too (gradviz.engine.analysis.predtree).
            probs, state = next_distribution(self.net, [index], state, temperature)
            if not bool(torch.isfinite(probs).all()):
                return "(No text: the model's predictions are not finite numbers.)"
            index = int(torch.multinomial(probs, 1, generator=gen))
            out_idx.append(index)
        return self.task.decode(out_idx)

    @torch.no_grad()
    def prediction_tree(self, prefix: str, k: int = 5, depth: int = 3,
                        temperature: float = 1.0, floor: float = 1e-3):
        """The next-character prediction tree after ``prefix``, from the model as it is
        now (:func:`gradviz.engine.analysis.predtree.prediction_tree`); ValueError in one
        line for a task that is not a character model, or a prefix or setting it refuses."""
        if not self.task.is_language:
            raise ValueError(f"the {self.task.name} task is not a character model; the "
                             "prediction tree needs the text or reber task")
        return prediction_tree(self.net, self.task.symbols, prefix, k, depth, temperature,
                               floor)
