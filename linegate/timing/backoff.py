"""How long to wait before the next reconnect attempt (pure logic)."""

from __future__ import annotations


class Backoff:
    """Exponential reconnect delay between *min_ns* and *max_ns*; ``reset`` after a success."""

    def __init__(self, min_ns: int, max_ns: int) -> None:
        self._min = min_ns
        self._max = max_ns
        self._next = min_ns

    def next_delay_ns(self) -> int:
        delay = self._next
        self._next = min(self._next * 2, self._max)
        return delay

    def reset(self) -> None:
        self._next = self._min
