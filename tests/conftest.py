"""Shared fixtures: synthetic captures shaped like the engine's, and a filled History."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from gradviz.engine.runs.capture import Capture  # noqa: E402
from gradviz.engine.runs.history import History  # noqa: E402

GATES = {
    "lstm": (("i", "f", "g", "o"), ((0.0, 1.0), (0.0, 1.0), (-1.0, 1.0), (0.0, 1.0))),
    "gru": (("r", "z", "n"), ((0.0, 1.0), (0.0, 1.0), (-1.0, 1.0))),
    "rnn-tanh": (("h",), ((-1.0, 1.0),)),
    "rnn-relu": (("h",), ((0.0, 1.0),)),
}


def param_names(L: int, D: int) -> tuple[str, ...]:
    names = []
    for layer in range(L):
        for d in range(D):
            suffix = "_reverse" if d else ""
            names += [f"{kind}_l{layer}{suffix}" for kind in
                      ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    return tuple(names) + ("readout.weight", "readout.bias")


def param_owners(L: int, D: int) -> tuple[tuple[int, int] | None, ...]:
    """The (layer, direction) of each of :func:`param_names`, as the trainer records it."""
    return tuple((layer, d) for layer in range(L) for d in range(D) for _ in range(4)) + (None,) * 2


def synthetic_capture(step: int = 0, *, cell: str = "lstm", L: int = 1, D: int = 1, T: int = 20,
                      H: int = 8, B: int = 16, decay: float = 0.8, loss: float | None = None,
                      baseline: float = 0.167, clip: str = "none", clip_threshold: float = 1.0,
                      nonfinite: bool = False, light: bool = False, seed: int | None = None,
                      dh: np.ndarray | None = None) -> Capture:
    """A Capture whose numbers look like a training step of ``cell``.

    ‖∂L/∂h_t‖ decays geometrically backwards from the last timestep by ``decay`` per step
    (vanishing for decay < 1, exploding for decay > 1), unless ``dh`` (L, D, T) is given.
    Gate activations are drawn for a batch of B sequences, so the saturation fractions are
    the real fractions of that batch.
    """
    rng = np.random.default_rng(step if seed is None else seed)
    names, ranges = GATES[cell]
    G = len(names)
    if dh is None:
        profile = decay ** np.arange(T - 1, -1, -1, dtype=np.float64)
        dh = (profile * np.exp(rng.normal(0.0, 0.1, (L, D, T)))).astype(np.float32)
    dc = (dh * 1.3).astype(np.float32) if cell.startswith("lstm") else None
    pre = rng.normal(0.0, 2.0, (L, D, G, T, B, H))
    batch = np.empty_like(pre)
    for g, (lo, hi) in enumerate(ranges):
        squashed = np.tanh(pre[:, :, g]) if lo < 0 else 1.0 / (1.0 + np.exp(-pre[:, :, g]))
        batch[:, :, g] = squashed
    span = np.array([hi - lo for lo, hi in ranges])[None, None, :, None, None, None]
    low = np.array([lo for lo, _ in ranges])[None, None, :, None, None, None]
    position = (batch - low) / span
    gates = batch.mean(axis=4).astype(np.float32)
    sat_low = (position < 0.1).mean(axis=(4, 5)).astype(np.float32)
    sat_high = (position > 0.9).mean(axis=(4, 5)).astype(np.float32)
    probe_h = np.tanh(np.cumsum(rng.normal(0.0, 0.3, (L, D, T, H)), axis=2)).astype(np.float32)
    probe_c = (np.cumsum(rng.normal(0.0, 0.3, (L, D, T, H)), axis=2).astype(np.float32)
               if dc is not None else None)
    pnames = param_names(L, D)
    grad_norm = float(np.sqrt((dh.astype(np.float64) ** 2).sum()))
    if loss is None:
        loss = baseline * (0.2 + 0.8 * np.exp(-step / 50.0)) * float(np.exp(rng.normal(0, 0.05)))
    if nonfinite:
        loss, grad_norm = float("nan"), float("inf")
    clipped = clip == "norm" and grad_norm > clip_threshold
    capture = Capture(
        step=step, loss=float(loss), baseline=baseline, lr=1e-3, clip=clip,
        clip_threshold=clip_threshold, dh_norm=dh, dc_norm=dc, gate_names=names,
        gate_ranges=ranges, gates=gates, sat_low=sat_low, sat_high=sat_high, probe_h=probe_h,
        probe_c=probe_c, param_names=pnames, param_owners=param_owners(L, D),
        param_grad_norm=np.abs(rng.normal(grad_norm, 0.1, len(pnames))).astype(np.float32),
        grad_norm=grad_norm,
        grad_norm_clipped=min(grad_norm, clip_threshold) if clipped else grad_norm,
        clipped=clipped, nonfinite=nonfinite,
        rho=np.full((L, D, G), 0.9), sigma_max=np.full((L, D, G), 1.1),
        rho_names=tuple(f"W_h{n}" for n in names),
        events=("loss is not finite",) if nonfinite else ())
    return capture.light() if light else capture


@pytest.fixture
def make_capture():
    """Factory: ``make_capture(step, cell=..., L=..., D=..., T=..., H=..., ...)``."""
    return synthetic_capture


def fill_history(captures, capacity: int = 4096):
    history = History(capacity=capacity)
    for capture in captures:
        history.append(capture)
    return history


@pytest.fixture
def make_history():
    """Factory: ``make_history(n, cell=..., L=..., ...)`` -> History with steps 0..n-1; every
    other capture is light, as when the window drops stale snapshots."""
    def make(n: int = 30, capacity: int = 4096, **kw):
        return fill_history((synthetic_capture(s, light=bool(s % 2) and s != n - 1, **kw)
                             for s in range(n)), capacity=capacity)
    return make


@pytest.fixture
def history(make_history):
    """An LSTM run (2 layers, bidirectional, T 20, H 8) of 30 recorded steps."""
    return make_history(30, cell="lstm", L=2, D=2, T=20, H=8)


@pytest.fixture
def views(qtbot):
    """One of each view, 900 x 500, not shown."""
    from gradviz.ui.views import make_views
    made = make_views()
    for view in made.values():
        qtbot.addWidget(view)
        view.resize(900, 500)
    return made


@pytest.fixture(params=["compiled", "pytorch"])
def cell_path(request):
    """Run a test on both code paths of the cells' loops: the compiled loops of
    gradviz/engine/native/_native.c (skipped where they cannot be built) and PyTorch
    operations."""
    from gradviz.engine import native
    if request.param == "pytorch":
        with native.turned_off():
            yield request.param
        return
    if native.kernels() is None:
        pytest.skip(native.status())
    yield request.param


@pytest.fixture(autouse=True)
def _collect_at_safe_points(request):
    """For a test with a Qt event loop, Python's cyclic collector runs only from a timer
    of that loop, as in the app (gradviz.ui.collector says why); at the end of the test,
    what is due is collected and automatic collection comes back."""
    if "qtbot" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("qapp")          # the timer needs the application
    from gradviz.ui.collector import SafePointCollector
    collector = SafePointCollector()
    try:
        yield
    finally:
        collector.stop()
        collector.collect()
        collector.deleteLater()
