"""Keyframes: full captures at a bounded set of steps spread over the whole run."""
from dataclasses import replace

import numpy as np
import pytest

from gradviz.engine.runs.keyframes import Keyframes, capture_nbytes


@pytest.fixture
def full(make_capture):
    """A small full capture; ``full(step)`` is a copy of it at ``step``."""
    template = make_capture(0, cell="lstm", T=5, H=2, B=2)
    return lambda step: replace(template, step=step)


def nearest_by_search(steps: np.ndarray, step: int) -> int:
    """The index of the kept step nearest to ``step``, the earlier on a tie, by brute force."""
    distance = np.abs(steps - step)
    return int(np.flatnonzero(distance == distance.min())[0])


def test_every_step_is_kept_until_the_capacity(full):
    keys = Keyframes(capacity=8)
    for s in range(8):
        assert keys.add(full(s))
    assert keys.steps.tolist() == list(range(8))
    assert keys.steps.dtype == np.int64
    assert keys.latest.step == 7 and len(keys) == 8


@pytest.mark.parametrize("every", [1, 3, 10])
def test_a_100k_step_run_keeps_at_most_256_spread_over_the_run(full, every):
    keys = Keyframes()
    seen_max = 0
    for s in range(0, 100_000, every):
        keys.add(full(s))
        seen_max = max(seen_max, len(keys))
        assert keys.latest.step == s            # the newest is always kept
    steps = keys.steps
    assert seen_max <= 256
    assert len(steps) > 128                     # thinned, not emptied
    assert np.all(np.diff(steps) > 0)
    assert steps[0] == 0 and steps[-1] == 100_000 - (100_000 - 1) % every - 1
    run = steps[-1] - steps[0]
    # Spread evenly: no gap is more than a few hundredths of the run.
    assert np.diff(steps).max() <= 4 * run / 255
    assert [c.step for c in keys.captures] == steps.tolist()


def test_the_bound_holds_at_every_length_and_gaps_stay_proportional(full):
    keys = Keyframes(capacity=16)
    for s in range(5000):
        keys.add(full(s))
        steps = keys.steps
        assert len(steps) <= 16 and steps[-1] == s and steps[0] == 0
        if s >= 16:
            assert np.diff(steps).max() <= 2 * s / 14


def test_irregular_steps_stay_bounded_and_spread(full):
    rng = np.random.default_rng(3)
    keys = Keyframes(capacity=32)
    step = 0
    for _ in range(20_000):
        step += int(rng.integers(1, 20))
        keys.add(full(step))
    steps = keys.steps
    assert len(steps) <= 32 and steps[-1] == step
    assert np.diff(steps).max() <= 8 * (steps[-1] - steps[0]) / 31


def test_nearest_is_the_closest_kept_step(full):
    keys = Keyframes(capacity=16)
    for s in range(0, 3000, 7):
        keys.add(full(s))
    steps = keys.steps
    for query in [-5, 0, 1, 500, 1234, 2999, 2996, 10_000, *(steps[:-1] + np.diff(steps) // 2)]:
        got = keys.nearest(int(query))
        assert got is keys.captures[nearest_by_search(steps, int(query))]
        assert keys.index(int(query)) == nearest_by_search(steps, int(query))


def test_nearest_of_no_keyframes_is_a_lookup_error():
    with pytest.raises(LookupError):
        Keyframes().nearest(3)
    assert Keyframes().latest is None


def test_light_captures_are_not_kept(full):
    keys = Keyframes()
    assert not keys.add(full(0).light())
    assert len(keys) == 0


def test_nbytes_counts_the_kept_arrays_and_clear_forgets(full):
    keys = Keyframes(capacity=4)
    for s in range(50):
        keys.add(full(s))
    one = full(0)
    by_hand = sum(a.nbytes for a in (one.dh_norm, one.dc_norm, one.gates, one.sat_low,
                                     one.sat_high, one.probe_h, one.probe_c,
                                     one.param_grad_norm, one.rho, one.sigma_max))
    assert capture_nbytes(one) == by_hand
    assert keys.nbytes == len(keys) * by_hand
    keys.clear()
    assert len(keys) == 0 and keys.nbytes == 0 and keys.spacing == 1


def test_large_captures_lower_the_capacity(full):
    size = capture_nbytes(full(0))
    keys = Keyframes(capacity=256, max_bytes=10 * size)
    for s in range(1000):
        keys.add(full(s))
    assert keys.limit == 10 and len(keys) <= 10
    assert keys.nbytes <= 10 * size


def test_a_rewound_run_drops_the_later_keyframes(full):
    keys = Keyframes(capacity=8)
    for s in range(6):
        keys.add(full(s))
    keys.add(full(3))
    assert keys.steps.tolist() == [0, 1, 2, 3]


def test_restore_refills_and_refuses_disorder(full):
    keys = Keyframes(capacity=8)
    caps = [full(s) for s in (0, 4, 8, 9)]
    keys.restore(caps, spacing=4)
    assert keys.steps.tolist() == [0, 4, 8, 9] and keys.spacing == 4
    keys.add(full(10))          # 9 did not open its bucket [8, 12): it goes
    assert keys.steps.tolist() == [0, 4, 8, 10]
    with pytest.raises(ValueError):
        keys.restore([full(3), full(2)], spacing=1)
    with pytest.raises(ValueError):
        Keyframes(capacity=2).restore(caps, spacing=4)
