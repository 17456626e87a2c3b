"""Bounded polling: wait for work another agent does (a GPU stream, a device) without ever waiting
past a deadline (pure; the clock and the sleep are injected)."""

from __future__ import annotations

import time
from collections.abc import Callable

from linegate.timing.clock import Clock

SPIN_NS = 500_000
"""Event waits poll back to back for this long, then sleep between polls (a preprocessing kernel is
done well within it; a model run of several milliseconds does not burn a core for all of its time)."""
SLEEP_S = 100e-6
"""Sleep between polls after the spin, which bounds what a wait adds to a long run's latency: plus the
wake-up, ~190 us in all measured on the H200 host (an ordinary thread, 50 us timer slack; a SCHED_FIFO
thread has none) against ~10 us when spinning throughout (spin_ns at least the run's length)."""


def wait_until(
    done: Callable[[], bool],
    deadline_ns: int,
    *,
    clock: Clock,
    spin_ns: int = SPIN_NS,
    sleep_s: float = SLEEP_S,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Poll *done* until it answers True (return True) or *clock* reaches *deadline_ns* (return False).

    Polls back to back for *spin_ns*, then sleeps *sleep_s* between polls, never past the deadline;
    the last poll is made at or after the deadline, so work finished by then is never given up on.
    """
    spin_end = clock.now_ns() + spin_ns
    while True:
        if done():
            return True
        now = clock.now_ns()
        if now >= deadline_ns:
            return False
        if now >= spin_end:
            sleep(min(sleep_s, (deadline_ns - now) / 1e9))
