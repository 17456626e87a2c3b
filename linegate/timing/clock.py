"""Clocks. Every interval in linegate is measured with ``time.monotonic_ns``; tests inject their own."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Source of monotonic nanoseconds."""

    def now_ns(self) -> int: ...


class MonotonicClock:
    """The system's monotonic clock (CLOCK_MONOTONIC, shared by all processes of the host)."""

    now_ns = staticmethod(time.monotonic_ns)


class ManualClock:
    """A clock that only moves when told to: deadline logic is tested without sleeping."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def advance(self, ns: int) -> None:
        if ns < 0:
            raise ValueError("a monotonic clock cannot go back")
        self._now += ns
