"""The inference loop's wait for its next frame: sleep in the kernel, but poll through the window
in which the next frame is expected (:mod:`linegate.timing.arrival`), keeping the per-frame path
warm meanwhile.

Why warm: on a shared or virtual machine the caches a process does not use for a few milliseconds
are taken by others. Measured on the 2-core test VM: after 10 ms of anything else, a lock round
trip costs 30 us instead of 1.6 and a small numpy call 32 us instead of 1.4, so a frame's
preprocessing and model ran 3-6x slower than in a tight loop. Running the path on a blank frame
every :data:`WARM_EVERY_NS` while polling keeps it within 2x of hot. A pass starts only if it
should end before the frame is expected: one under way when the frame arrives delays it.

Where the arrivals stray too far to poll through (the simulated camera on the test VM: +-0.9 ms,
so a 1 ms window fitted about one frame in ten), the loop sleeps as before but wakes once for a
warm pass that ends before the earliest the next frame is likely to come, then sleeps again. In
process, one pass 1 ms before a frame took preprocess + infer of the demo model from 0.61 to
0.40 ms p50 (after 10 ms asleep); in the pipeline, preprocess 0.31 -> 0.27 and infer 0.22 -> 0.15 ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from linegate.ring import FrameSource
from linegate.timing.arrival import ArrivalPredictor

WARM_EVERY_NS = 300_000
"""A warm pass is due when the last one is this old (coldness grows over about a millisecond)."""
WARM_LEAD_NS = 100_000
"""Polling starts early enough for a warm pass to end this long before the frame is expected."""
WAKE_LATE_NS = 400_000
"""Without a window, the loop sleeps until this long before a warm pass must start, as a sleeping
process is woken late (0.1-0.3 ms on the test VM); woken later than that, it skips the pass. A
pass 1 ms before the frame warms about as well as one 0.2 ms before (frame_wait's docstring)."""


class FrameWaiter:
    """``wait`` returns as soon as the ring may have something for the loop, like
    :meth:`RingConsumer.wait`, and counts how polling went."""

    def __init__(
        self,
        consumer: FrameSource,
        predictor: ArrivalPredictor,
        warm: Callable[[], None] | None = None,
        warm_ns: int = 0,
        now_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.consumer = consumer
        self.predictor = predictor
        self.warm = warm
        """Runs the per-frame path on a blank frame (None: polling only)..."""
        self.warm_ns = warm_ns
        """... which takes about this long."""
        self._now_ns = now_ns
        self.warm_passes = 0
        self.caught = 0
        """Frames found by polling (they did not wait for a wake-up)."""
        self.missed = 0
        """Windows that ended without a frame (then the loop slept as usual)."""
        self.polled_ns = 0
        """Time spent polling, in all."""
        self.warmed_before_sleep = 0
        """Warm passes run between two sleeps, where there was no window to poll through."""
        self.warm_skipped = 0
        """Passes between two sleeps left out because the loop woke too late for one."""
        self._cold_pass_ns = 0
        """How long the last pass between two sleeps took."""

    def wait(self, timeout_s: float) -> bool:
        """Block until an item may be pending or *timeout_s* passes; False on timeout."""
        window = self.predictor.window()
        now_ns = self._now_ns
        now = now_ns()
        if window is None:
            return self._wait_warmed(timeout_s, now)
        if now >= window.end_ns:
            return self.consumer.wait(timeout_s)
        end_ns = now + int(timeout_s * 1e9)
        start_ns = window.start_ns
        if self.warm is not None:  # early enough for one warm pass to end before the frame is expected
            start_ns = min(start_ns, window.expected_ns - self.warm_ns - WARM_LEAD_NS)
        if now < start_ns:
            if self.consumer.wait(min(timeout_s, (start_ns - now) / 1e9)):
                return True
            now = now_ns()
        start = now
        poll, warm = self.consumer.poll, self.warm
        warmed = 0
        warm_until = window.expected_ns - self.warm_ns  # the last moment a pass may start
        while now < window.end_ns:
            if poll():
                self.caught += 1
                self.polled_ns += now_ns() - start
                return True
            now = now_ns()
            if warm is not None and now - warmed >= WARM_EVERY_NS and now < warm_until:
                warm()
                self.warm_passes += 1
                warmed = now = now_ns()
        self.missed += 1
        self.polled_ns += now - start
        return self.consumer.wait(max(0.0, (end_ns - now) / 1e9))

    def _wait_warmed(self, timeout_s: float, now: int) -> bool:
        """No window to poll through (frames too irregular, or polling off): sleep, but wake for
        one warm pass that ends before the earliest the frame is likely to come, then sleep again."""
        warm = self.warm
        arrival = self.predictor.next_arrival() if warm is not None else None
        if warm is None or arrival is None:
            return self.consumer.wait(timeout_s)
        # A pass after a sleep runs colder than the warm-up's figure: budget the longest recent one.
        warm_at = arrival.start_ns - max(self.warm_ns, self._cold_pass_ns) - WAKE_LATE_NS
        if not now < warm_at < now + int(timeout_s * 1e9):
            return self.consumer.wait(timeout_s)
        if self.consumer.wait((warm_at - now) / 1e9) or self.consumer.poll():  # poll: it came just now
            return True
        woke = self._now_ns()
        if woke - warm_at > WAKE_LATE_NS:  # woken later still: a pass now could be running when it comes
            self.warm_skipped += 1
        else:
            warm()
            self._cold_pass_ns = self._now_ns() - woke
            self.warm_passes += 1
            self.warmed_before_sleep += 1
        return self.consumer.wait(max(0.0, timeout_s - (self._now_ns() - now) / 1e9))

    def stats(self) -> dict[str, float]:
        """For the loop's records: how often polling caught the frame, and what it cost."""
        return {
            "poll_caught": self.caught,
            "poll_missed": self.missed,
            "poll_ms": round(self.polled_ns / 1e6, 1),
            "warm_passes": self.warm_passes,
            "warmed_before_sleep": self.warmed_before_sleep,
            "warm_skipped": self.warm_skipped,
        }
