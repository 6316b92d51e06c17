"""Keyframes: full captures (gates, saturation, probe states) at a bounded set of steps
spread over the whole run, always including the newest.

A :class:`~gradviz.engine.runs.history.History` keeps every step's per-timestep norms but only
the newest step's per-unit arrays; :class:`Keyframes` keeps whole
:class:`~gradviz.engine.runs.capture.Capture` objects, so that a timeline can show what the
network did at step 300 long after step 301.

The rule: the run's steps are cut into aligned buckets of ``spacing`` steps (0 … s-1,
s … 2s-1, …), and of each bucket the first full capture added is kept, plus the newest.
``spacing`` starts at 1 (every step is kept) and doubles whenever more than the capacity
would be kept; doubling merges neighbouring buckets, keeping the earlier keyframe of each
pair. So however long the run, at most ``capacity`` captures are kept and the newest is
one of them. When every step is added, the kept steps are the multiples of ``spacing`` and
the newest, and spacing < 2·(newest step)/(capacity − 2): no gap passes about 2/capacity
of the run. Steps added irregularly leave gaps of up to 2·spacing − 1.

Large captures lower the capacity: if ``capacity`` captures of the first one's size would
pass ``max_bytes``, fewer are kept (at least 2), so a long T cannot exhaust memory.
"""
from __future__ import annotations

import bisect

import numpy as np

from gradviz.engine.runs.capture import Capture

KEYFRAME_CAPACITY = 256
KEYFRAME_MAX_BYTES = 256 * 2**20

# The arrays of a capture (the rest are numbers and names).
CAPTURE_ARRAYS = ("dh_norm", "dc_norm", "gates", "sat_low", "sat_high", "probe_h", "probe_c",
           "param_grad_norm", "rho", "sigma_max")


def capture_nbytes(capture: Capture) -> int:
    """Bytes of a capture's arrays."""
    return sum(getattr(capture, name).nbytes for name in CAPTURE_ARRAYS
               if getattr(capture, name) is not None)


class Keyframes:
    """Full captures at a bounded set of steps of one run, oldest first.

    :meth:`add` takes captures in increasing step order; a light capture
    (:attr:`Capture.is_light`) is not kept. A capture whose step is not after the newest
    kept one (the run was rewound) first drops the keyframes from that step on.
    """

    def __init__(self, capacity: int = KEYFRAME_CAPACITY, max_bytes: int = KEYFRAME_MAX_BYTES):
        if capacity < 2:
            raise ValueError(f"Keyframes capacity must be at least 2, got {capacity}")
        self.capacity = int(capacity)
        self.max_bytes = int(max_bytes)
        self.clear()

    def clear(self) -> None:
        """Forget every keyframe; the spacing starts again at 1."""
        self.spacing = 1
        self._steps: list[int] = []
        self._captures: list[Capture] = []
        self._limit = self.capacity
        self._nbytes = 0

    def __len__(self) -> int:
        return len(self._steps)

    @property
    def limit(self) -> int:
        """How many keyframes are kept at most: the capacity, or fewer for large captures."""
        return self._limit

    def limit_for(self, capture_bytes: int) -> int:
        """How many keyframes are kept of captures of ``capture_bytes`` bytes each."""
        return min(self.capacity, max(2, self.max_bytes // max(1, capture_bytes)))

    @property
    def steps(self) -> np.ndarray:
        """(F,) int64, the kept steps in increasing order."""
        return np.array(self._steps, dtype=np.int64)

    @property
    def captures(self) -> tuple[Capture, ...]:
        """The kept captures, oldest first (in the order of :attr:`steps`)."""
        return tuple(self._captures)

    @property
    def latest(self) -> Capture | None:
        """The newest kept capture, None if there is none."""
        return self._captures[-1] if self._captures else None

    @property
    def nbytes(self) -> int:
        """Bytes of the kept captures' arrays."""
        return self._nbytes

    def add(self, capture: Capture) -> bool:
        """Keep ``capture`` (a full one) as the newest keyframe; False for a light one."""
        if capture.is_light:
            return False
        step = int(capture.step)
        if self._steps and step <= self._steps[-1]:
            self._truncate(bisect.bisect_left(self._steps, step))
        if not self._steps:
            self._limit = self.limit_for(capture_nbytes(capture))
        # The previous newest stays only if it opened its bucket.
        if self._steps and not self._opens_bucket(len(self._steps) - 1):
            self._drop(len(self._steps) - 1)
        self._steps.append(step)
        self._captures.append(capture)
        self._nbytes += capture_nbytes(capture)
        while len(self._steps) > self._limit:
            self.spacing *= 2
            keep = [i for i in range(len(self._steps))
                    if i == len(self._steps) - 1 or self._opens_bucket(i)]
            self._steps = [self._steps[i] for i in keep]
            self._captures = [self._captures[i] for i in keep]
            self._nbytes = sum(capture_nbytes(c) for c in self._captures)
        return True

    def _opens_bucket(self, i: int) -> bool:
        """Whether keyframe ``i`` is the first kept one of its bucket."""
        return i == 0 or self._steps[i - 1] // self.spacing != self._steps[i] // self.spacing

    def _drop(self, i: int) -> None:
        self._nbytes -= capture_nbytes(self._captures[i])
        del self._steps[i], self._captures[i]

    def _truncate(self, n: int) -> None:
        for c in self._captures[n:]:
            self._nbytes -= capture_nbytes(c)
        del self._steps[n:], self._captures[n:]

    def index(self, step: int) -> int:
        """Index of the keyframe nearest to ``step`` (the earlier one on a tie);
        LookupError if there is none."""
        if not self._steps:
            raise LookupError("no keyframes")
        i = bisect.bisect_left(self._steps, step)
        if i == len(self._steps):
            return i - 1
        if i > 0 and step - self._steps[i - 1] <= self._steps[i] - step:
            return i - 1
        return i

    def nearest(self, step: int) -> Capture:
        """The kept capture whose step is nearest to ``step`` (the earlier on a tie);
        LookupError if there is none."""
        return self._captures[self.index(step)]

    def restore(self, captures: list[Capture], spacing: int) -> None:
        """Refill from a run file: ``captures`` in increasing step order, as kept with
        ``spacing``. ValueError if they are more than this keeps or out of order."""
        steps = [int(c.step) for c in captures]
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError("keyframe steps are not in increasing order")
        if spacing < 1:
            raise ValueError(f"keyframe spacing must be at least 1, got {spacing}")
        self.clear()
        if captures:
            self._limit = self.limit_for(capture_nbytes(captures[0]))
        if len(captures) > self._limit:
            raise ValueError(f"{len(captures)} keyframes are more than this keeps ({self._limit})")
        self.spacing = int(spacing)
        self._steps = steps
        self._captures = list(captures)
        self._nbytes = sum(capture_nbytes(c) for c in captures)


__all__ = ["Keyframes", "KEYFRAME_CAPACITY", "KEYFRAME_MAX_BYTES", "CAPTURE_ARRAYS",
           "capture_nbytes"]
