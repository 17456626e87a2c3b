"""ArrivalPredictor: the frame period and a polling window from arrival times (pure: no clock)."""

from __future__ import annotations

import numpy as np

from linegate.timing.arrival import MIN_HISTORY, ArrivalPredictor

MS = 1_000_000


def feed(p: ArrivalPredictor, times: list[int]) -> None:
    for t in times:
        p.observe(t)


def test_no_window_until_enough_frames_arrived() -> None:
    """Start-up: no period and no window before MIN_HISTORY arrivals and as many errors."""
    p = ArrivalPredictor(max_spin_ns=MS)
    feed(p, [i * 10 * MS for i in range(MIN_HISTORY - 1)])
    assert p.period_ns == 0
    assert p.window() is None


def test_steady_camera_gets_a_window_around_the_next_frame() -> None:
    """A 100 fps camera with +-100 us jitter: period 10 ms, window brackets the next arrival."""
    rng = np.random.default_rng(1)
    times = [int(i * 10 * MS + rng.integers(-100_000, 100_000)) for i in range(40)]
    p = ArrivalPredictor(max_spin_ns=MS, margin_ns=50_000)
    feed(p, times)
    assert abs(p.period_ns - 10 * MS) < 100_000
    w = p.window()
    assert w is not None
    assert w.start_ns < w.expected_ns < w.end_ns
    assert w.expected_ns == times[-1] + p.period_ns
    assert w.end_ns - w.start_ns <= MS
    assert w.start_ns <= times[-1] + 10 * MS - 100_000 + 200_000  # covers early arrivals within the jitter


def test_irregular_trigger_gets_no_window() -> None:
    """Arrivals spread wider than max_spin_ns: the loop just sleeps."""
    rng = np.random.default_rng(2)
    times = list(np.cumsum(rng.integers(5 * MS, 15 * MS, size=40)))
    p = ArrivalPredictor(max_spin_ns=MS)
    feed(p, [int(t) for t in times])
    assert p.window() is None


def test_a_dropped_frame_does_not_skew_the_period() -> None:
    """One missing arrival (a gap of two periods) counts as two periods, not as a late frame."""
    times = [i * 10 * MS for i in range(30) if i != 20]
    p = ArrivalPredictor(max_spin_ns=MS)
    feed(p, times)
    assert p.period_ns == 10 * MS
    assert p.window() is not None


def test_a_pause_restarts_learning() -> None:
    """The line stopped (a gap over 4 periods): no window until the new rhythm is learnt."""
    p = ArrivalPredictor(max_spin_ns=MS)
    feed(p, [i * 10 * MS for i in range(30)])
    assert p.window() is not None
    p.observe(30 * 10 * MS + 5_000 * MS)
    assert p.window() is None
    assert p.period_ns == 0


def test_zero_max_spin_disables_polling() -> None:
    """infer_poll_max_us = 0: never a window."""
    p = ArrivalPredictor(max_spin_ns=0)
    feed(p, [i * 10 * MS for i in range(30)])
    assert p.window() is None
