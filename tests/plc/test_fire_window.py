"""The encoder fire window: a reject fires only on a fresh reading that puts its part in front of
the ejector; a reading too old to decide on (a slow read, a lost link) sends it back to wait, never
to "too late"; and the record names the very reading the decision was made on."""

from __future__ import annotations

import time

from linegate.plc.pulse import EncoderWindow
from linegate.plc.schedule import PendingReject
from linegate.plc.tracking import EncoderClock, EncoderTracker

MS = 1_000_000


def window_after(reads: list[tuple[int, int, int | None]]) -> tuple[EncoderWindow, EncoderClock]:
    """A window whose forced read feeds *reads* ``(ms before now, count, taken_by ms before now)``."""
    clock = EncoderClock()
    tracker = EncoderTracker(clock, ejector_counts=1_000, tolerance_counts=100, max_sample_age_ns=20 * MS)

    def read_encoder() -> None:
        now = time.monotonic_ns()
        for ago_ms, count, by_ms in reads:
            clock.feed(now - ago_ms * MS, count, taken_by_ns=None if by_ms is None else now - by_ms * MS)

    return EncoderWindow(tracker, max_late_ns=500 * MS, read_encoder=read_encoder), clock


def reject_due_at(position: int) -> PendingReject:
    return PendingReject(position, part_id=7, seq=7, t_acquired_ns=0)


def test_fresh_reading_in_front_of_the_ejector_fires_and_is_the_one_recorded() -> None:
    window, _ = window_after([(1, 1_050, None)])
    assert window.decide(reject_due_at(1_000), time.monotonic_ns()) == "fire"
    reading = window.position()
    assert reading is not None and reading.position == 1_050


def test_fresh_reading_beyond_tolerance_is_passed() -> None:
    window, _ = window_after([(1, 1_101, None)])
    assert window.decide(reject_due_at(1_000), time.monotonic_ns()) == "passed"


def test_reading_too_old_to_decide_on_waits_instead_of_giving_the_reject_up() -> None:
    """The forced read before the pulse took longer than the freshness limit (stamped at its request,
    30 ms ago): the part may well still be in front of the ejector, so the reject waits."""
    window, clock = window_after([(30, 1_050, 1)])
    assert window.decide(reject_due_at(1_000), time.monotonic_ns()) == "wait"
    assert clock.latest is not None and clock.latest[1] == 1_050


def test_early_reading_waits() -> None:
    window, _ = window_after([(1, 900, None)])
    assert window.decide(reject_due_at(1_000), time.monotonic_ns()) == "wait"
