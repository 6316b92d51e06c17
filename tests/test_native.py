"""The compiled loops (gradviz/engine/native/_native.c): built where a C compiler exists,
equal to the PyTorch path, and never in the way where they cannot be had."""
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from gradviz.config import RunConfig
from gradviz.engine import native
from gradviz.engine.training.train import Trainer

needs_cc = pytest.mark.skipif(
    not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")),
    reason="no C compiler on this machine")


@needs_cc
def test_kernels_are_built_where_a_c_compiler_exists():
    assert native.kernels() is not None, native.status()
    assert native.status().startswith("compiled loops in use")


@pytest.mark.slow
@needs_cc
def test_a_fresh_build_in_an_empty_cache_loads_and_passes_its_self_check(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kernels, status = native.load()
    assert kernels is not None, status
    built = sorted((tmp_path / "gradviz").iterdir())
    # The library, its record (size, SHA-256) and its self-check's pass, no temporary
    # files left.
    assert len(built) == 3 and built[0].name.startswith("native-")
    assert built[1] == native.build.record_path(built[0])
    assert built[2] == native.checkcache.result_path(built[0])


@pytest.mark.slow
@needs_cc
def test_builds_unused_for_30_days_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = tmp_path / "gradviz"
    cache.mkdir(mode=0o700)     # private, as gradviz makes it: a folder open to others is purged
    stale, recent = cache / "native-0000000000000000.so", cache / "native-1111111111111111.so"
    for f, days in ((stale, 31), (recent, 29)):
        f.write_bytes(b"an older build")
        past = time.time() - days * 24 * 3600
        os.utime(f, (past, past))
    kernels, status = native.load()
    assert kernels is not None, status
    assert not stale.exists() and recent.exists()
    # The recent one, the new one, its record and its self-check's pass.
    assert len(list(cache.iterdir())) == 4


@pytest.mark.parametrize("env,expect", [
    ({"GRADVIZ_NATIVE": "0"}, "GRADVIZ_NATIVE=0"),
    ({"CC": "/nonexistent/cc"}, "could not run"),
    ({"CC": "false"}, "exited with 1"),
])
def test_without_kernels_the_reason_is_named_and_pytorch_takes_over(env, expect, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    kernels, status = native.load()
    assert kernels is None
    assert expect in status and "using PyTorch operations" in status


@pytest.mark.slow
@needs_cc
def test_an_unwritable_cache_falls_back_to_the_temporary_directory(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    kernels, status = native.load()
    assert kernels is not None, status
    assert str(tmp_path / "tmp" / "gradviz-cache-") in status


@needs_cc
def test_with_nowhere_to_write_the_reason_is_given_not_raised(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(blocker))
    kernels, status = native.load()
    assert kernels is None and "cannot write" in status


@pytest.mark.parametrize("broken,dz_arg,expect", [
    ("lstm_backward", -2, "lstm backward, torch.float32"),     # (…, dz, carry)
    ("gru_backward", -1, "gru backward, torch.float32"),
    ("rnn_backward", -1, "rnn backward, torch.float32"),
    ("family_scan", -1, "lstm variants' scan, torch.float32"),
    ("path_norms", -1, "lstm path norms, torch.float32"),     # (…, gate_index, out)
])
def test_a_kernel_that_computes_wrong_numbers_is_refused(broken, dz_arg, expect):
    """The self-check must catch a loop that is off, not only one that crashes."""
    if native.kernels() is None:
        pytest.skip(native.status())
    good = native.kernels()

    class Off:
        def __getattr__(self, name):
            if name != broken:
                return getattr(good, name)

            def off(*args, **keywords):
                getattr(good, name)(*args, **keywords)
                args[dz_arg][0].view(-1)[-1] += 1e-3     # one wrong element of the output
            return off
    assert native.self_check(good) is None
    assert native.self_check(Off()) == expect


def test_wrong_layouts_never_reach_the_c_code():
    if native.kernels() is None:
        pytest.skip(native.status())
    dout = torch.rand(3, 4, 5)
    good = dict(dphi=torch.rand(3, 4, 5), dout=dout, w_hh=torch.rand(5, 5), tbptt=0,
                dh=torch.empty_like(dout), dz=torch.empty_like(dout))
    native.kernels().rnn_backward(**good)
    with pytest.raises(ValueError, match="contiguous CPU tensors of one dtype"):
        native.kernels().rnn_backward(**{**good, "w_hh": torch.rand(5, 5).t()})
    with pytest.raises(ValueError, match="one dtype"):
        native.kernels().rnn_backward(**{**good, "dz": torch.empty_like(dout, dtype=torch.float64)})


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh", "lstm-peephole", "lstm-coupled"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_both_paths_capture_the_same_training_steps(dtype, cell):
    """Three steps of a bidirectional two-layer network with truncation: every captured
    array from the compiled path equals the PyTorch path's to rounding."""
    if native.kernels() is None:
        pytest.skip(native.status())
    cfg = RunConfig(task="adding", cell=cell, seq_len=70, hidden=20, layers=2,
                    bidirectional=True, batch_size=7, tbptt=25, dtype=dtype, seed=3)
    compiled = Trainer(cfg)
    caps_c = [compiled.step() for _ in range(3)]
    with native.turned_off():
        plain = Trainer(cfg)
        caps_p = [plain.step() for _ in range(3)]
    rtol = 1e-4 if dtype == "float32" else 1e-9
    for a, b in zip(caps_c, caps_p):
        for name in ("dh_norm", "dc_norm", "gates", "probe_h", "probe_c", "param_grad_norm",
                     "paths"):
            if getattr(b, name) is None:
                assert getattr(a, name) is None, name
                continue
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol,
                                       atol=1e-7, err_msg=name)
        # Saturation is a count: a unit on a band's edge may round to either side in float32.
        for name in ("sat_low", "sat_high"):
            assert np.abs(getattr(a, name) - getattr(b, name)).max() <= 2 / (7 * 20), name
    for p_c, p_p in zip(compiled.params, plain.params):
        torch.testing.assert_close(p_c, p_p, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-relu", "lstm-peephole", "lstm-coupled"])
def test_odd_shapes_agree_on_both_paths(cell):
    """Sizes at and around the edges of the compiled product's blocks (1 unit, 1 row, one
    step, inputs narrower and wider than the LSTM's folding limit), against the PyTorch
    path: outputs, ∂L/∂h_t, ∂L/∂c_t and every parameter gradient, in float64."""
    if native.kernels() is None:
        pytest.skip(native.status())
    from gradviz.engine.model.network import Network
    shapes = [(1, 1, 1, 1), (2, 1, 3, 1), (5, 3, 17, 2), (3, 7, 40, 33), (4, 2, 1, 65),
              (6, 13, 5, 8)]                                    # (T, B, I, H)
    for T, B, I, H in shapes:
        results = []
        for path in ("compiled", "pytorch"):
            with native.turned_off() if path == "pytorch" else nullcontext():
                torch.manual_seed(T * 1000 + H)
                net = Network(cell, I, H, output_size=1, layers=2, bidirectional=True,
                              dtype=torch.float64)
                g = torch.Generator().manual_seed(B)
                x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
                w_out = torch.randn(T, B, 2 * H, generator=g, dtype=torch.float64)
                fwd = net.run(x, stats_rows=B)
                grads = net.backward(fwd, w_out, tbptt=2)
            assert {c.path for c in sum(fwd.caches, [])} == {path}
            results.append((fwd, grads, {n: p.grad.clone() for n, p in net.recurrent_parameters()}))
        (f1, g1, p1), (f2, g2, p2) = results
        where = f"T {T}, B {B}, I {I}, H {H}"
        torch.testing.assert_close(f1.output, f2.output, rtol=1e-10, atol=1e-12, msg=where)
        for a, b in zip(sum(g1, []), sum(g2, [])):
            torch.testing.assert_close(a.dh, b.dh, rtol=1e-10, atol=1e-12, msg=where)
            if a.dc is not None:
                torch.testing.assert_close(a.dc, b.dc, rtol=1e-10, atol=1e-12, msg=where)
        for name in p1:
            torch.testing.assert_close(p1[name], p2[name], rtol=1e-10, atol=1e-12, msg=where)
        for k in range(2):
            for d in range(2):
                s1, s2 = f1.caches[k][d].stats, f2.caches[k][d].stats
                torch.testing.assert_close(s1.mean, s2.mean, rtol=1e-10, atol=1e-12, msg=where)


@pytest.mark.parametrize("cell", ["lstm", "lstm-coupled", "gru", "rnn-tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_path_norms_agree_on_both_paths(cell, dtype):
    """The compiled path norms against the PyTorch ones on the same gradients: one unit, a
    few, more than the loop's chunk of 256; all rows, all but one; with and without
    truncation (gradviz.engine.analysis.paths)."""
    if native.kernels() is None:
        pytest.skip(native.status())
    from gradviz.engine.model.network import Network
    from gradviz.engine.analysis.paths import path_norms
    for T, B, H, tbptt in [(1, 1, 1, 0), (2, 3, 9, 1), (6, 4, 300, 4), (9, 5, 37, 2)]:
        torch.manual_seed(H)
        net = Network(cell, 2, H, output_size=1, layers=1, dtype=dtype)
        g = torch.Generator().manual_seed(T)
        x = torch.randn(T, B, 2, generator=g, dtype=dtype)
        fwd = net.run(x, stats_rows=B)
        grads = net.backward(fwd, torch.randn(T, B, H, generator=g, dtype=dtype), tbptt=tbptt)
        for rows in {B, max(B - 1, 1)}:
            args = (net.cell, fwd.caches[0][0], grads[0][0], rows, tbptt)
            compiled = path_norms(*args)
            with native.turned_off():
                plain = path_norms(*args)
            assert compiled.dtype == plain.dtype == dtype
            torch.testing.assert_close(compiled, plain, equal_nan=True, msg=f"{T, B, H, rows}",
                                       **({"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32
                                          else {"rtol": 1e-12, "atol": 1e-14}))
            assert compiled[:, 1:].isfinite().all()


def test_path_norms_refuse_shapes_that_do_not_fit():
    """The C code trusts its pointers: sizes that do not fit together never reach it."""
    if native.kernels() is None:
        pytest.skip(native.status())
    k = native.kernels()
    T, B, H = 3, 4, 5
    dh, dout, dc, gates = torch.rand(T, B, H), torch.rand(T, B, H), torch.rand(T, B, H), \
        torch.rand(T, B, 4, H)
    good = dict(rows=B, tbptt=0, dh=dh, dout=dout, dc=dc, gates=gates, gate_index=1,
                out=torch.empty(5, T, H))
    k.path_norms(**good)
    for wrong in (dict(rows=B + 1), dict(dout=torch.rand(T, B + 1, H)), dict(gate_index=4),
                  dict(gates=torch.rand(T, B, 4, H + 1)), dict(gates=None),
                  dict(out=torch.empty(3, T, H)), dict(dc=None)):
        with pytest.raises(ValueError, match="do not fit"):
            k.path_norms(**{**good, **wrong})
    with pytest.raises(ValueError, match="contiguous"):
        k.path_norms(**{**good, "dout": torch.rand(T, B, 2 * H)[:, :, :H]})


def test_turned_off_means_pytorch_operations_until_the_block_ends():
    if native.kernels() is None:
        pytest.skip(native.status())
    with native.turned_off():
        assert native.kernels() is None
        assert "using PyTorch operations" in native.status()
        assert native.fallback_notice("cpu").endswith("which is slower")
    assert native.kernels() is not None and native.status().startswith("compiled loops in use")


@pytest.mark.slow
@needs_cc
def test_loading_under_no_grad_still_passes_the_self_check(tmp_path, monkeypatch):
    """The first cell to need the loops runs under torch.no_grad (Network.run does); the
    self-check differentiates the reference equations all the same."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with torch.no_grad():
        kernels, status = native.load()
    assert kernels is not None, status


@pytest.mark.parametrize("cell", ["rnn-tanh", "lstm", "lstm-peephole", "lstm-coupled", "gru"])
def test_the_backward_pass_takes_the_path_its_forward_pass_took(cell):
    """The path is chosen once, in the forward pass: a backward pass run while the loops
    are turned off still takes the compiled path of its cache, and agrees with a forward
    and backward pass both on the PyTorch path."""
    if native.kernels() is None:
        pytest.skip(native.status())
    from gradviz.engine.model.network import Network
    torch.manual_seed(0)
    net = Network(cell, 3, 6, output_size=1, layers=2, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, 4, 3, generator=g, dtype=torch.float64)
    w_out = torch.randn(9, 4, 6, generator=g, dtype=torch.float64)
    fwd = net.run(x)
    with native.turned_off():
        grads_c = net.backward(fwd, w_out, tbptt=4)
        fwd_p = net.run(x)
        grads_p = net.backward(fwd_p, w_out, tbptt=4)
    assert {c.path for c in sum(fwd.caches, [])} == {"compiled"}
    assert all(c.loops is native.kernels() for c in sum(fwd.caches, []))
    assert {c.path for c in sum(fwd_p.caches, [])} == {"pytorch"}
    for a, b in zip(sum(grads_c, []), sum(grads_p, [])):
        torch.testing.assert_close(a.dh, b.dh, rtol=1e-10, atol=1e-12)
        for name in a.params:
            torch.testing.assert_close(a.params[name], b.params[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru", "lstm-peephole", "lstm-coupled"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nan_inf_and_huge_inputs_saturate_as_on_the_pytorch_path(cell, dtype):
    """The compiled gates' exp works on the bits of its argument (so that its loops
    vectorize): NaN stays NaN, ±inf and ±1e30 saturate, 1e-30 and 0 pass, each as on the
    PyTorch path, at every position of a vector (H 21: whole vectors and a remainder)."""
    if native.kernels() is None:
        pytest.skip(native.status())
    from gradviz.engine.model.network import Network
    T, B, I, H = 3, 4, 2, 21
    specials = torch.tensor([math.nan, math.inf, -math.inf, 1e30, -1e30, 1e-30, 0.0, 1.0,
                             88.5, -88.5, 709.0, -709.0], dtype=torch.float64)
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x.view(-1)[:len(specials)] = specials
    x = x.to(dtype)
    outs = []
    for path in ("compiled", "pytorch"):
        with native.turned_off() if path == "pytorch" else nullcontext():
            torch.manual_seed(5)
            net = Network(cell, I, H, output_size=1, layers=1, dtype=dtype)
            with torch.no_grad():
                dict(net.recurrent_parameters())["weight_ih_l0"].mul_(1e3)   # huge pre-activations
            fwd = net.run(x, stats_rows=B)
        assert {c.path for c in sum(fwd.caches, [])} == {path}
        outs.append(fwd.output)
    assert outs[0].isnan().any() and outs[0].isfinite().any()
    torch.testing.assert_close(outs[0], outs[1], equal_nan=True,
                               **({"rtol": 1e-4, "atol": 1e-6} if dtype == torch.float32
                                  else {"rtol": 1e-10, "atol": 1e-12}))


# Run in a process of its own: it lowers its address-space limit until the product's copy
# of its weights (64 MB) cannot be allocated.
_WITHOUT_MEMORY = """
import resource, sys, torch
from gradviz.engine import native
k = native.kernels()
assert k is not None, native.status()
T, B, H = 3, 5, 4099                # blocks, single vectors and columns left over
g = torch.Generator().manual_seed(0)
w_hh = torch.randn(H, H, generator=g) / H ** 0.5
dphi, dout = torch.rand(T, B, H, generator=g), torch.randn(T, B, H, generator=g)
dh, dz = torch.empty(T, B, H), torch.empty(T, B, H)
k.rnn_backward(dphi, dout, w_hh, 0, dh, dz)            # with its copy
expect = dh.clone()
expect_dz = dz.clone()
dh.fill_(float("nan"))
with open("/proc/self/status") as f:
    vm = next(int(ln.split()[1]) for ln in f if ln.startswith("VmSize:")) * 1024
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
resource.setrlimit(resource.RLIMIT_AS, (vm + 32 * 2**20, hard))
try:
    bytearray(64 * 2**20)
    sys.exit("the limit leaves room for the copy")
except MemoryError:
    pass
k.rnn_backward(dphi, dout, w_hh, 0, dh, dz)            # without: w_hh read where it is
resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
assert torch.equal(dh, expect) and torch.equal(dz, expect_dz)
for t in range(T - 2, -1, -1):
    ref = dout[t].double() + dz[t + 1].double() @ w_hh.double()
    torch.testing.assert_close(dh[t].double(), ref, rtol=1e-4, atol=1e-5)
print("ok")
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_without_memory_for_a_packed_copy_the_products_read_the_weights_in_place():
    """The compiled products first copy their weights into blocks read one after another;
    where no memory is left for the copy, they read the weights in place, to the same
    numbers."""
    if native.kernels() is None:
        pytest.skip(native.status())
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root,
                                                                     os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", _WITHOUT_MEMORY], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr + done.stdout


@pytest.mark.parametrize("scan,expect", [("lstm_backward", "lstm backward's norms"),
                                         ("gru_backward", "gru backward's norms"),
                                         ("rnn_backward", "rnn backward's norms")])
@pytest.mark.parametrize("part", ["steps", "paths"])
def test_a_scan_whose_norms_on_the_way_are_off_is_refused(scan, expect, part):
    """A reverse scan asked for a capture's norms as it goes must give the numbers of the
    norm loops themselves: one that is off in its last norm is refused by the self-check."""
    if native.kernels() is None:
        pytest.skip(native.status())
    good = native.kernels()

    class Off:
        def __getattr__(self, name):
            if name != scan:
                return getattr(good, name)

            def off(*args, norms_rows=None, **keywords):
                norms = getattr(good, name)(*args, norms_rows=norms_rows, **keywords)
                if norms is not None and getattr(norms, part) is not None:
                    getattr(norms, part).view(-1)[0] *= 1.001     # ‖dh_0‖, not 0
                return norms
            return off
    assert native.self_check(Off()) == f"{expect}, torch.float32"


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh", "rnn-relu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_capture_from_norms_on_the_way_equals_one_from_the_norm_loops(cell, dtype):
    """The norms a reverse scan computes as it goes (Network.backward's norms_rows) are the
    numbers the separate norm loops give afterwards, bit for bit: two layers, both
    directions, truncation, the rows the loss sees and the probe row beside them."""
    if native.kernels() is None:
        pytest.skip(native.status())
    from gradviz.engine.model.network import Network
    from gradviz.engine.training.timesteps import timestep_arrays
    T, B, I, H = 23, 6, 3, 37
    torch.manual_seed(1)
    net = Network(cell, I, H, output_size=1, layers=2, bidirectional=True, dtype=dtype)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(T, B, I, generator=g, dtype=dtype)
    d_out = torch.randn(T, B, 2 * H, generator=g, dtype=dtype)
    d_out[:, -1] = 0                                   # the probe row: no gradient
    fwd = net.run(x, stats_rows=B - 1)
    for rows in (B - 1, 0):
        probe = B - 1 if rows else None
        fused_grads = net.backward(fwd, d_out, tbptt=5, norms_rows=rows)
        assert all(gr.norms is not None and (gr.norms.paths is not None) == bool(rows)
                   for gr in sum(fused_grads, []))
        fused = timestep_arrays(net, fwd, fused_grads, probe, dtype, rows=B - 1, tbptt=5)
        apart = timestep_arrays(net, fwd, net.backward(fwd, d_out, tbptt=5), probe, dtype,
                                rows=B - 1, tbptt=5)
        for name, value in apart.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(fused[name], value, err_msg=name)
            else:
                assert fused[name] == value, name
