"""How long a frame's path (preprocess, engine, classify) is expected to take, kept up to date (pure).

The inference loop starts a frame only if the path, at this expected time, still ends by the
frame's deadline. Warm-up measures it on an idle machine; under load (a backlog, the camera and
PLC workers busy on the same CPUs) runs take longer, and a frame started on the warm-up's figure
missed its deadline: 7 of 295 frames decided by the model in a 2.5x overload of ResNet-18 on the
2-CPU VM. So the expected time is the larger of the warm-up's p99 and the p99 of recent frames.
"""

from __future__ import annotations

from collections import deque

WINDOW = 64
"""Recent path times kept."""
EVERY = 16
"""The expected time is recomputed after this many observations (a sort of WINDOW ints)."""
QUANTILE = 0.99


class PathTime:
    """The expected path time: ``max(warm-up p99, p99 of the last WINDOW frames)``."""

    def __init__(self, warm_up_ns: int) -> None:
        self.warm_up_ns = warm_up_ns
        self.expected_ns = warm_up_ns
        self._recent: deque[int] = deque(maxlen=WINDOW)
        self._since = 0

    def observe(self, ns: int) -> bool:
        """One frame's path took *ns*; True when this recomputed ``expected_ns``."""
        self._recent.append(ns)
        self._since += 1
        if self._since < EVERY:
            return False
        self._since = 0
        ordered = sorted(self._recent)
        self.expected_ns = max(self.warm_up_ns, ordered[int(QUANTILE * (len(ordered) - 1))])
        return True

    @property
    def slowdown(self) -> float:
        """The expected time against the warm-up's (at least 1): scales the batch estimates."""
        return self.expected_ns / self.warm_up_ns if self.warm_up_ns else 1.0
