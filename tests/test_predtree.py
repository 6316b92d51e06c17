"""The next-character prediction tree against a model whose next-character distribution is
set by hand: W_hh = 0 and a saturated input layer make h_t the one-hot of the character
read, and the readout's columns are the logarithms of a chosen table of probabilities."""
import numpy as np
import pytest
import torch

from gradviz.config import RunConfig
from gradviz.engine.analysis.predtree import (next_distribution, prediction_tree, tree_rows)
from gradviz.engine.model.network import Network
from gradviz.engine.training.train import Trainer

SYMBOLS = "abcd"
# P(next | current): one row per current character, in the order of SYMBOLS.
TABLE = np.array([[0.10, 0.60, 0.25, 0.05],
                  [0.50, 0.10, 0.10, 0.30],
                  [0.70, 0.20, 0.05, 0.05],
                  [0.25, 0.25, 0.25, 0.25]])


def hand_set(cell="rnn-tanh", table=TABLE):
    V = len(SYMBOLS)
    net = Network(cell, V, V, V, dtype=torch.float64)
    with torch.no_grad():
        for _, p in net.recurrent_parameters():
            p.zero_()
        net.weight_ih_l0.copy_(40.0 * torch.eye(V, dtype=torch.float64))   # tanh(40) = 1.0
        net.readout.weight.copy_(torch.tensor(np.log(table).T))
        net.readout.bias.zero_()
    return net


def expected(last, k, depth, temperature, floor, path="", joint=1.0):
    """The tree worked out from TABLE alone: [(symbol, p, joint, children)]."""
    row = TABLE[SYMBOLS.index(last)] ** (1 / temperature)
    row = row / row.sum()
    order = sorted(range(len(row)), key=lambda i: (-row[i], i))[:k]
    out = []
    for i in order:
        if joint * row[i] < floor:
            continue
        children = (expected(SYMBOLS[i], k, depth - 1, temperature, floor, path + SYMBOLS[i],
                             joint * row[i]) if depth > 1 else [])
        out.append((SYMBOLS[i], row[i], joint * row[i], children))
    return out


def same(tree, want):
    assert [b.symbol for b in tree] == [w[0] for w in want]
    for b, (symbol, p, joint, children) in zip(tree, want):
        assert b.probability == pytest.approx(p, rel=1e-12, abs=1e-15)
        assert b.path_probability == pytest.approx(joint, rel=1e-12, abs=1e-15)
        same(b.children, children)


def test_the_hand_set_model_predicts_its_table():
    net = hand_set()
    for c, row in zip(SYMBOLS, TABLE):
        probs, _ = next_distribution(net, [SYMBOLS.index(c)])
        np.testing.assert_allclose(probs.numpy(), row, rtol=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("k,depth,floor", [(2, 3, 0.0), (3, 3, 0.02), (5, 2, 1e-3),
                                           (1, 4, 0.0)])
def test_the_tree_is_the_table_worked_out(k, depth, floor, temperature):
    net = hand_set()
    tree = prediction_tree(net, SYMBOLS, "cda", k=k, depth=depth, temperature=temperature,
                           floor=floor)
    same(tree, expected("a", k, depth, temperature, floor))
    rows = tree_rows(tree)
    assert all(joint >= floor for *_, joint in rows)
    assert max(depth_ for depth_, *_ in rows) == depth
    # At most k children per node, and k^depth leaves without a floor.
    if floor == 0.0:
        assert sum(1 for d, *_ in rows if d == depth) == k ** depth


def test_the_floor_prunes_a_branch_and_all_below_it():
    net = hand_set()
    tree = prediction_tree(net, SYMBOLS, "a", k=4, depth=3, floor=0.05)
    # After "a", "d" has probability 0.05: kept at depth 1, but every child of it is below.
    d = [b for b in tree if b.symbol == "d"][0]
    assert d.path_probability == pytest.approx(0.05) and d.children == ()
    rows = tree_rows(tree)
    assert ("a", "b") in {(path, s) for _, path, s, *_ in rows}          # 0.6 · 0.5 = 0.3
    assert all(joint >= 0.05 for *_, joint in rows)
    paths = {path + s for _, path, s, *_ in rows}
    assert all(p[:-1] in paths or len(p) == 1 for p in paths)             # parents kept


def test_the_prefix_is_read_through_the_recurrence():
    """With a recurrent weight, the distribution depends on the whole prefix, and reading
    it in one go equals reading it one character at a time, as the sampler does."""
    torch.manual_seed(0)
    net = Network("lstm", 4, 6, 4, dtype=torch.float64)
    whole, _ = next_distribution(net, [2, 3, 0], temperature=0.7)
    state = None
    for i in (2, 3, 0):
        step, state = next_distribution(net, [i], state, temperature=0.7)
    torch.testing.assert_close(whole, step, rtol=1e-12, atol=1e-15)
    other, _ = next_distribution(net, [1, 3, 0], temperature=0.7)
    assert not torch.allclose(whole, other)
    tree = prediction_tree(net, SYMBOLS, "cda", k=2, depth=1, temperature=0.7)
    top = torch.argsort(-whole)[:2].tolist()
    assert [b.symbol for b in tree] == [SYMBOLS[i] for i in top]


@pytest.mark.parametrize("prefix,kw,message", [
    ("", {}, "type a prefix of at least one character"),
    ("abz", {}, "'z' is not one of the 4 characters this model knows"),
    ("ab", {"k": 6}, "1 to 5 candidates per node, not 6"),
    ("ab", {"depth": 0}, "depth is 1 to 4, not 0"),
    ("ab", {"temperature": 0.0}, "temperature must be a positive number"),
    ("ab", {"floor": 1.0}, "floor is from 0 up to 1"),
])
def test_what_the_tree_refuses_is_said_in_one_line(prefix, kw, message):
    with pytest.raises(ValueError, match=message) as caught:
        prediction_tree(hand_set(), SYMBOLS, prefix, **kw)
    assert "\n" not in str(caught.value)


def test_a_trainer_gives_its_tree_for_language_tasks_only():
    trainer = Trainer(RunConfig(task="reber", cell="lstm", hidden=8, seq_len=10, batch_size=4))
    trainer.step()
    tree = trainer.prediction_tree("BT", k=3, depth=2)
    assert len(tree) == 3 and all(b.symbol in "BTPSXVE" for b in tree)
    assert sum(b.probability for b in tree) <= 1 + 1e-12
    assert 0 < sum(c.probability for c in tree[0].children) <= 1 + 1e-12
    with pytest.raises(ValueError, match="the adding task is not a character model"):
        Trainer(RunConfig(task="adding", seq_len=5)).prediction_tree("a")
    bidirectional = Trainer(RunConfig(task="reber", bidirectional=True, hidden=4, seq_len=5))
    with pytest.raises(ValueError, match="bidirectional model reads the future"):
        bidirectional.prediction_tree("B")
