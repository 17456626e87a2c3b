"""The slices Harvesters' fetch waits in, and how long a fetch with no frame can last."""

from __future__ import annotations

from linegate.camera.event_wait import EVENT_WAIT_MAX_MS, event_wait_ms, longest_fetch_ms


def test_a_fetch_waits_in_slices_of_half_its_timeout_rounded_up() -> None:
    """Two slices cover the timeout, odd or even, so a fetch with no frame ends after two waits,
    not three (Harvesters looks at the time only between waits)."""
    for timeout_ms in (1, 2, 3, 99, 100, 101, 199):
        slice_ms = event_wait_ms(timeout_ms)
        assert 2 * slice_ms >= timeout_ms and slice_ms <= max(1, timeout_ms // 2 + 1), timeout_ms
    assert (event_wait_ms(1), event_wait_ms(101), event_wait_ms(100)) == (1, 51, 50)


def test_a_long_timeout_waits_in_slices_of_at_most_100_ms() -> None:
    """A long timeout overshoots by one slice at most: 100 ms, not half of it."""
    assert event_wait_ms(1501) == EVENT_WAIT_MAX_MS == 100
    assert longest_fetch_ms(1501) == 1601 and longest_fetch_ms(101) == 152 and longest_fetch_ms(100) == 150
