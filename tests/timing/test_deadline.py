"""Deadline logic, driven by a manual clock: no sleeping, no timing flakiness."""

from __future__ import annotations

import pytest

from linegate.timing.clock import ManualClock
from linegate.timing.deadline import Basis, Deadline, Verdict, settle
from linegate.timing.latency import LatencyWindow, summarize_ns

MS = 1_000_000


@pytest.mark.parametrize(
    ("elapsed_ms", "model", "fail_safe", "expected"),
    [
        (10, Verdict.PASS, Verdict.REJECT, (Verdict.PASS, Basis.MODEL)),
        (50, Verdict.PASS, Verdict.REJECT, (Verdict.PASS, Basis.MODEL)),  # exactly on the deadline is in time
        (51, Verdict.PASS, Verdict.REJECT, (Verdict.REJECT, Basis.DEADLINE_MISSED)),
        (51, Verdict.REJECT, Verdict.PASS, (Verdict.PASS, Basis.DEADLINE_MISSED)),
        (900, Verdict.REJECT, Verdict.REJECT, (Verdict.REJECT, Basis.DEADLINE_MISSED)),
    ],
)
def test_settle_uses_fail_safe_after_the_deadline(elapsed_ms, model, fail_safe, expected) -> None:  # type: ignore[no-untyped-def]
    """The model's verdict stands only if it came by acquisition time + budget."""
    clock = ManualClock(start_ns=5_000 * MS)
    deadline = Deadline.for_frame(clock.now_ns(), 50 * MS)
    clock.advance(elapsed_ms * MS)
    assert settle(model, deadline, clock.now_ns(), fail_safe) == expected


@pytest.mark.parametrize(
    ("waited_ms", "expected_run_ms", "worth"),
    [(0, 5, True), (44, 5, True), (45, 5, True), (46, 5, False), (60, 0, False)],
)
def test_worth_starting_checks_the_expected_run_fits(waited_ms, expected_run_ms, worth) -> None:  # type: ignore[no-untyped-def]
    """A frame is only given to the model if a typical run still ends by the deadline."""
    clock = ManualClock()
    deadline = Deadline.for_frame(clock.now_ns(), 50 * MS)
    clock.advance(waited_ms * MS)
    assert deadline.worth_starting(clock.now_ns(), expected_run_ms * MS) is worth
    assert deadline.remaining_ns(clock.now_ns()) == (50 - waited_ms) * MS


def test_manual_clock_refuses_to_go_back() -> None:
    """A monotonic clock cannot move backwards, even in tests."""
    with pytest.raises(ValueError):
        ManualClock().advance(-1)


def test_latency_window_keeps_the_latest_samples() -> None:
    """The live window reports percentiles of its most recent samples only."""
    window = LatencyWindow(capacity=4)
    assert window.percentiles([50]) != window.percentiles([50])  # NaN while empty
    for ns in [100, 200, 300, 400, 1000, 1000, 1000, 1000]:
        window.add(ns)
    assert len(window) == 4
    assert window.percentiles([50, 99]) == [1000.0, 1000.0]


def test_summarize_reports_milliseconds() -> None:
    """Whole-run summaries are in milliseconds with count and max."""
    s = summarize_ns([1 * MS, 2 * MS, 3 * MS])
    assert s["n"] == 3 and s["p50"] == 2.0 and s["max"] == 3.0
