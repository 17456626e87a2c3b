"""When the next frame will arrive, from when the last ones did (pure: times are passed in).

A camera in free run or triggered by a steadily moving belt delivers frames at a steady period.
The inference loop uses the prediction to stop sleeping shortly before the next frame and poll for
it, so the frame does not wait for the kernel to wake a sleeping process (about 0.2 ms on a
virtual machine; the frame's whole budget for the work around the engine is of that order).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import pairwise

HISTORY = 33
"""Arrivals kept: the period is the median of the last 32 intervals, robust to a dropped frame."""
MIN_HISTORY = 8
"""No prediction before this many arrivals (start-up, after a pause)."""


def _interpolated(ordered: list[int], q: float) -> int:
    """The *q*-th percentile of the sorted values, linearly interpolated (as numpy's default)."""
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return int(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


@dataclass(frozen=True)
class SpinWindow:
    """Poll for the next frame from ``start_ns`` until ``end_ns``; sleep before and after. The
    frame is expected at ``expected_ns``."""

    start_ns: int
    expected_ns: int
    end_ns: int


class ArrivalPredictor:
    """Learns the frame period and how far arrivals stray from it; proposes a polling window.

    The window runs from the early edge to the late edge of recent prediction errors (their 3rd
    and 97th percentiles, widened by *margin_ns*), and is only proposed while that fits in
    *max_spin_ns*: an irregular trigger gets no window and the loop sleeps as before.
    """

    def __init__(self, max_spin_ns: int, margin_ns: int = 50_000) -> None:
        self.max_spin_ns = max_spin_ns
        self.margin_ns = margin_ns
        self._arrivals: deque[int] = deque(maxlen=HISTORY)
        self._errors: deque[int] = deque(maxlen=HISTORY - 1)
        self._period_ns = 0
        self._early_ns = 0
        self._late_ns = 0

    @property
    def period_ns(self) -> int:
        """The learnt frame period; 0 until enough frames arrived."""
        return self._period_ns

    def observe(self, t_arrived_ns: int) -> None:
        """A frame became available at *t_arrived_ns* (arrivals in order)."""
        arrivals = self._arrivals
        if arrivals and self._period_ns:
            gap = t_arrived_ns - arrivals[-1]
            if gap > 4 * self._period_ns:  # a pause (camera stopped, line halted): learn afresh
                arrivals.clear()
                self._errors.clear()
                self._period_ns = 0
            else:
                periods = max(1, round(gap / self._period_ns))  # frames the camera dropped in between
                self._errors.append(gap - periods * self._period_ns)
        arrivals.append(t_arrived_ns)
        if len(arrivals) >= MIN_HISTORY:
            # Plain sorts of at most 32 ints: a few microseconds, where numpy's median and
            # percentile cost 50-100 us each on cold caches, once per frame in the inference worker.
            gaps = sorted(b - a for a, b in pairwise(arrivals))
            self._period_ns = _interpolated(gaps, 50)
            if len(self._errors) >= MIN_HISTORY:
                errors = sorted(self._errors)
                self._early_ns, self._late_ns = _interpolated(errors, 3), _interpolated(errors, 97)

    def next_arrival(self) -> SpinWindow | None:
        """When the frame after the last one observed should come: expected, and the early and late
        edges of recent errors (however far apart); None until the period is learnt."""
        if not self._period_ns or len(self._errors) < MIN_HISTORY:
            return None
        expected = self._arrivals[-1] + self._period_ns
        start = expected + min(self._early_ns, 0) - self.margin_ns
        end = expected + max(self._late_ns, 0) + self.margin_ns
        return SpinWindow(start, expected, end)

    def window(self) -> SpinWindow | None:
        """Where to poll for the frame after the last one observed; None: just sleep until it comes."""
        arrival = self.next_arrival() if self.max_spin_ns else None
        if arrival is None or arrival.end_ns - arrival.start_ns > self.max_spin_ns:
            return None
        return arrival
