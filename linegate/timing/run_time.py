"""How long a frame's path (preprocess, engine, classify) is expected to take, kept up to date (pure).

The inference loop starts a frame only if the path, at this expected time, still ends by the
frame's deadline. Warm-up measures it on an idle machine; under load (a backlog, the camera and
PLC workers busy on the same CPUs) runs take longer, and a frame started on the warm-up's figure
missed its deadline: 7 of 295 frames decided by the model in a 2.5x overload of ResNet-18 on the
2-CPU VM. So the expected time is the larger of the warm-up's p99 and the p99 of recent frames.

Recent means both the last :data:`WINDOW` frames and the last :data:`HORIZON_NS`: an expected time
raised by a few stalls could otherwise keep every later frame from starting (no frame runs, so no
faster time is ever observed); once the newest observation is older than the horizon, the
expected time falls back to the warm-up's.
"""

from __future__ import annotations

from collections import deque

WINDOW = 64
"""Recent path times kept."""
EVERY = 16
"""The expected time is recomputed after this many observations (a sort of WINDOW ints)."""
QUANTILE = 0.99
HORIZON_NS = 1_000_000_000
"""Observations older than this no longer raise the expected time."""


class PathTime:
    """The expected path time: ``max(warm-up p99, p99 of the recent frames)``."""

    def __init__(self, warm_up_ns: int) -> None:
        self.warm_up_ns = warm_up_ns
        self.expected_ns = warm_up_ns
        self._recent: deque[int] = deque(maxlen=WINDOW)
        self._since = 0
        self._last_ns = 0

    def observe(self, ns: int, now_ns: int) -> bool:
        """One frame's path took *ns*, ending at *now_ns*; True when this recomputed ``expected_ns``."""
        self._recent.append(ns)
        self._last_ns = now_ns
        self._since += 1
        if self._since < EVERY:
            return False
        self._since = 0
        ordered = sorted(self._recent)
        self.expected_ns = max(self.warm_up_ns, ordered[int(QUANTILE * (len(ordered) - 1))])
        return True

    def expire(self, now_ns: int) -> bool:
        """Back to the warm-up's figure if nothing was observed for :data:`HORIZON_NS`; True when
        that changed ``expected_ns`` (cheap: the loop asks before it refuses a frame)."""
        if self.expected_ns == self.warm_up_ns or now_ns - self._last_ns < HORIZON_NS:
            return False
        self._recent.clear()
        self._since = 0
        self.expected_ns = self.warm_up_ns
        return True

    @property
    def slowdown(self) -> float:
        """The expected time against the warm-up's (at least 1): scales the batch estimates."""
        return self.expected_ns / self.warm_up_ns if self.warm_up_ns else 1.0
