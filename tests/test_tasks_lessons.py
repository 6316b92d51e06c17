"""The tasks the guided experiments rest on, against independent computations: the 1997
adding problem (its layout, targets and fraction solved), the copy and recall accuracies,
the embedded Reber grammar (every string grammatical; the long-range symbol found), and
stateful training (carrying the state equals one long sequence cut into BPTT windows)."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from gradviz.config import RunConfig
from gradviz.engine.tasks import Adding1997Task, ReberTask, make_task
from gradviz.engine.training.train import Trainer


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- the adding problem as in Hochreiter & Schmidhuber 1997 --------------------------------

@pytest.mark.parametrize("T", [30, 100, 9])
def test_adding_1997_layout_and_targets_follow_the_paper(T):
    task = Adding1997Task(T)
    batch = task.batch(2000, generator(T))
    values, markers = batch.x[:, :, 0].numpy(), batch.x[:, :, 1].numpy()
    assert values.min() >= -1 and values.max() <= 1 and values.min() < -0.99
    n = max(2, T // 2 - 1)
    for b in range(values.shape[1]):
        marked = np.flatnonzero(markers[:, b] == 1)
        assert len(marked) == 2
        assert marked.min() < min(10, n) and marked.max() < n
        ends = [t for t in (0, T - 1) if t not in marked]
        assert all(markers[t, b] == -1 for t in ends)
        rest = np.setdiff1d(np.arange(T), np.r_[marked, ends])
        assert np.all(markers[rest, b] == 0)
        # Step 0's value counts as 0 where it is marked.
        x1, x2 = (0.0 if t == 0 else values[t, b] for t in marked)
        assert batch.target[0, b, 0].item() == pytest.approx(0.5 + (x1 + x2) / 4, abs=1e-6)
    assert batch.target.min() >= 0 and batch.target.max() <= 1


def test_adding_1997_first_marker_in_the_first_ten_steps():
    batch = Adding1997Task(100).batch(5000, generator(1))
    first = (batch.x[:, :, 1] == 1).float().argmax(0)
    assert int(first.max()) == 9 and int(first.min()) == 0
    counts = torch.bincount(first, minlength=10).numpy()
    assert counts.min() > 350        # uniform over the ten: 500 each


def test_adding_1997_baseline_is_the_variance_of_the_target():
    task = Adding1997Task(40)
    # Step 0 (whose value counts as 0) is the first draw 1 in 10 times, the second draw
    # (one of the other 18 of the first 19) 0.9 / 18 of the times.
    assert task.baseline == pytest.approx((0.9 / 3 + (1 - 0.9 / 18) / 3) / 16)
    targets = torch.cat([task.batch(4000, generator(s)).target.flatten() for s in range(10)])
    assert float(targets.var()) == pytest.approx(task.baseline, rel=0.03)
    assert float(targets.mean()) == pytest.approx(0.5, abs=0.005)


def test_fraction_solved_counts_errors_below_004():
    task = Adding1997Task(20)
    batch = task.batch(1000, generator(2))
    offsets = torch.linspace(-0.1, 0.1, 1000).view(1, -1, 1)
    y = batch.target + offsets
    expected = float(np.mean(np.abs(offsets.numpy()) < 0.04))
    assert task.metric(y, batch) == pytest.approx(expected)
    assert task.metric(batch.target.clone(), batch) == 1.0
    assert task.metric_name == "fraction solved"
    # The no-memory guess, 0.5, solves the sums that happen to lie within 0.04 of it.
    guess = task.metric(task.trivial_prediction(batch), batch)
    assert guess == pytest.approx(float(np.mean(np.abs(batch.target.numpy() - 0.5) < 0.04)))
    assert 0.05 < guess < 0.3


@pytest.mark.parametrize("name", ["copy", "recall"])
def test_classification_metrics_are_the_accuracy(name):
    task = make_task(RunConfig(task=name, seq_len=20))
    batch = task.batch(300, generator(3))
    y = torch.randn(*batch.target.shape, task.output_size, generator=generator(4))
    expected = float(np.mean(y.numpy().argmax(-1) == batch.target.numpy()))
    assert task.metric(y, batch) == pytest.approx(expected)
    assert task.metric_name


def test_tasks_without_a_metric_say_nan():
    task = make_task(RunConfig(task="adding", seq_len=10))
    batch = task.batch(4, generator())
    assert math.isnan(task.metric(task.trivial_prediction(batch), batch))
    assert task.metric_name == ""


def test_the_capture_holds_the_metric_of_the_steps_batch():
    config = RunConfig(task="adding-1997", seq_len=12, cell="gru", hidden=6, batch_size=50)
    trainer, fresh = Trainer(config), Trainer(config)   # the same seed: the same weights
    drawn = []
    draw = trainer.task.batch
    trainer.task.batch = lambda *args: drawn.append(draw(*args)) or drawn[-1]
    cap = trainer.step()
    batch = drawn[0]
    with torch.no_grad():
        out = fresh.net.run(batch.x).output
        y = fresh.net.readout(out[-1:]).numpy()
    expected = np.mean(np.abs(y - batch.target.numpy()) < 0.04)
    assert cap.metric == pytest.approx(expected) and cap.metric_name == "fraction solved"


# -- the embedded Reber grammar -----------------------------------------------------------

# The Reber grammar as a regular expression (Hochreiter & Schmidhuber 1997, figure 3),
# written from the graph, not from the generator's table.
INNER = r"B(?:TS*X(?:XT*VP)*(?:S|XT*VV)|PT*V(?:V|P(?:XT*VP)*(?:S|XT*VV)))E"
EMBEDDED = re.compile(rf"B(?:T{INNER}T|P{INNER}P)E")


def reber_stream(task: ReberTask, steps: int, rows: int = 4) -> list[str]:
    """Each row's symbols over ``steps`` stateful batches."""
    g = generator(5)
    batches = [task.batch(rows, g) for _ in range(steps)]
    return ["".join(task.decode(batches[0].x[0, r].argmax().view(1)))
            + "".join(task.decode(b.target[:, r]) for b in batches) for r in range(rows)]


def test_every_embedded_reber_string_is_grammatical():
    task = ReberTask(50, stateful=True)
    for stream in reber_stream(task, 40):
        # Cut at each outer B: a B right after the final E of the string before.
        strings = re.split(r"(?<=E)(?=BT B|BP B)".replace(" ", ""), stream)
        whole = strings[1:-1]            # the first and last may be cut by the stream's ends
        assert len(whole) > 80
        for s in whole:
            assert EMBEDDED.fullmatch(s), s
        assert {s[1] for s in whole} == {"T", "P"}


def test_the_regex_rejects_a_wrong_long_range_symbol():
    assert EMBEDDED.fullmatch("BTBTXSETE")
    assert not EMBEDDED.fullmatch("BTBTXSEPE")
    assert not EMBEDDED.fullmatch("BPBTXSETE")


def long_range_by_hand(chars: str) -> list[int]:
    """Output steps t (predicting chars[t + 1]) whose target is a closing T or P whose
    opening one is in ``chars``, by walking the string."""
    found, opened = [], False
    for j in range(1, len(chars)):
        if j + 1 < len(chars) and chars[j - 1] == "B" and chars[j] in "TP" and chars[j + 1] == "B":
            opened = True
        elif chars[j - 1] == "E" and chars[j] in "TP":
            if opened:
                found.append(j - 1)
            opened = False
    return found


def test_the_long_range_positions_are_the_closing_symbols_of_strings_seen_opening():
    task = ReberTask(40)
    batch = task.batch(64, generator(6))
    chosen = task.long_range_positions(batch)
    for r in range(64):
        chars = task.decode(torch.cat([batch.x[:1, r].argmax(1), batch.target[:, r]]))
        assert np.flatnonzero(chosen[:, r].numpy()).tolist() == long_range_by_hand(chars), chars
    assert chosen.sum() > 64


def test_reber_metric_is_the_accuracy_at_those_positions():
    task = ReberTask(40)
    batch = task.batch(64, generator(7))
    perfect = torch.nn.functional.one_hot(batch.target, 7).float()
    assert task.metric(perfect, batch) == 1.0
    t_index = task.alphabet.index("T")
    always_t = perfect.clone()
    chosen = task.long_range_positions(batch)
    always_t[chosen] = torch.nn.functional.one_hot(torch.tensor(t_index), 7).float()
    expected = float((batch.target[chosen] == t_index).double().mean())
    assert task.metric(always_t, batch) == pytest.approx(expected)
    assert 0.3 < expected < 0.7


# -- stateful training ---------------------------------------------------------------------

@pytest.mark.parametrize("task, cell", [("series", "lstm"), ("reber", "rnn-tanh")])
def test_carrying_the_state_equals_one_long_sequence_cut_into_windows(task, cell):
    """Two stateful steps with the update switched off: the second window's outputs and
    ‖∂L/∂h_t‖ are those of the two windows run as one sequence from a zero state, since
    the carried state is where the first window ended (detached: the gradient of the
    second step stops at its window's edge)."""
    T, B = 7, 3
    config = RunConfig(task=task, cell=cell, seq_len=T, hidden=5, batch_size=B, stateful=True,
                       dtype="float64")
    trainer = Trainer(config)
    trainer.optimizer.step = lambda: None          # the same weights for both steps
    drawn = []
    draw = trainer.task.batch
    trainer.task.batch = lambda *args: drawn.append(draw(*args)) or drawn[-1]
    trainer.step()
    second = trainer.step()
    x = torch.cat([drawn[0].x, drawn[1].x]).double()             # (2T, B, I)
    # The reference: PyTorch's own module with the same weights, over the whole sequence.
    kind = {"lstm": torch.nn.LSTM, "rnn-tanh": torch.nn.RNN}[cell]
    reference = kind(x.shape[2], 5).double()
    reference.load_state_dict({n: p.detach() for n, p in trainer.net.named_parameters()
                               if n in dict(reference.named_parameters())})
    with torch.no_grad():
        out, _ = reference(x)
        y = trainer.net.readout(out[T:][trainer.task.loss_positions])
        assert second.loss == pytest.approx(float(trainer.task.loss(y, drawn[1].target)),
                                            rel=1e-10)
    expected = total_gradient_norms(reference, x, T, trainer, drawn[1].target)
    np.testing.assert_allclose(second.dh_norm[0, 0], expected, rtol=1e-5)


def total_gradient_norms(reference, x, T, trainer, target) -> np.ndarray:
    """‖∂L/∂h_t‖ for t in the second window, by stepping the reference cell one step at
    a time over the whole sequence and keeping every h_t of the second window."""
    cell_kind = type(reference)
    hidden = reference.hidden_size
    h = torch.zeros(1, x.shape[1], hidden, dtype=x.dtype)
    c = torch.zeros_like(h) if cell_kind is torch.nn.LSTM else None
    kept = []
    for t in range(len(x)):
        state = (h, c) if c is not None else h
        out, state = reference(x[t:t + 1], state)
        h, c = (state if c is not None else (state, None))
        if t == T - 1:                 # the carried state is detached
            h = h.detach()
            c = c.detach() if c is not None else None
        if t >= T:
            h.retain_grad()
            kept.append(h)
    outputs = torch.cat(kept)            # (T, B, H)
    y = trainer.net.readout(outputs[trainer.task.loss_positions])
    trainer.task.loss(y, target).backward()
    return np.array([float(torch.linalg.vector_norm(k.grad)) for k in kept])
