"""How many worker restarts are allowed (pure): at most N within a sliding window."""

from __future__ import annotations

from collections import deque


class RestartBudget:
    """``allow(now)`` records a restart and says whether it is within ``limit`` per ``window_ns``."""

    def __init__(self, limit: int, window_ns: int) -> None:
        self.limit = limit
        self.window_ns = window_ns
        self._times: deque[int] = deque()

    def allow(self, now_ns: int) -> bool:
        while self._times and now_ns - self._times[0] >= self.window_ns:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now_ns)
        return True

    def used(self, now_ns: int) -> int:
        """Restarts counted in the window ending at *now_ns*."""
        return sum(1 for t in self._times if now_ns - t < self.window_ns)
