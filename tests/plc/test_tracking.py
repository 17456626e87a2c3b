"""Part tracking: the encoder clock, the early/due/passed decision, both trackers, and simulated lines."""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Any

import pytest

from linegate.config.schema import PlcSection, TrackingSection
from linegate.plc.schedule import PendingReject
from linegate.plc.tracking import (
    POSITION_LOST,
    POSITION_UNKNOWN,
    RESET_GAP,
    TOO_LATE,
    WRAP,
    EncoderClock,
    EncoderTracker,
    TimeTracker,
    Tracker,
    tracker_for,
    where,
)

MS = 1_000_000
S = 1_000_000_000


def plc_section(**extra: Any) -> PlcSection:
    modbus = {"host": "127.0.0.1", "reject_coil": 3}
    return PlcSection.model_validate({"modbus": modbus, "reconnect_min_ms": 1, "reconnect_max_ms": 5, **extra})


def fed(samples: list[tuple[int, int]], **kw: Any) -> EncoderClock:
    clock = EncoderClock(**kw)
    for t, raw in samples:
        clock.feed(t, raw)
    return clock


# -- where ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "tolerance", "current", "expected"),
    [
        (1000, 50, 0, "early"),
        (1000, 50, 999, "early"),
        (1000, 50, 1000, "due"),
        (1000, 50, 1025, "due"),
        (1000, 50, 1050, "due"),
        (1000, 50, 1051, "passed"),
        (1000, 0, 1000, "due"),
        (1000, 0, 1001, "passed"),
        (2**40, 10, 2**40 + 10, "due"),
    ],
)
def test_where_boundaries(target: int, tolerance: int, current: int, expected: str) -> None:
    """A part is early below its target, due from target to target + tolerance inclusive, passed beyond."""
    assert where(target, tolerance, current) == expected


def test_where_rejects_negative_tolerance() -> None:
    """A negative tolerance is a programming error, not a silently empty window."""
    with pytest.raises(ValueError):
        where(0, -1, 0)


# -- EncoderClock: unwrapping -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raws", "positions"),
    [
        pytest.param([0, 10, 25], [0, 10, 25], id="forward"),
        pytest.param([WRAP - 3, WRAP - 1, 2, 100], [WRAP - 3, WRAP - 1, WRAP + 2, WRAP + 100], id="wrap"),
        pytest.param([WRAP - 1, 0], [WRAP - 1, WRAP], id="wrap-to-zero"),
        pytest.param([WRAP - 10, WRAP - 10, WRAP - 10, 5], [WRAP - 10] * 3 + [WRAP + 5], id="standstill-then-wrap"),
        pytest.param([7, 7 + 2**31 - 1, 5], [7, 7 + 2**31 - 1, WRAP + 5], id="largest-forward-steps"),
        pytest.param([1000, 998, 999, 1000, 1003], [1000, 1000, 1000, 1000, 1003], id="jitter-back-held"),
        pytest.param([10, WRAP - 5, 3], [10, 10, 10], id="jitter-back-across-wrap-held"),
    ],
)
def test_unwrap(raws: list[int], positions: list[int]) -> None:
    """Raw 32-bit counts unwrap to a non-decreasing position; small steps back are held, not counted."""
    clock = EncoderClock()
    got = []
    for i, raw in enumerate(raws):
        assert clock.feed(i * MS, raw)
        newest = clock.newest
        assert newest is not None
        got.append(newest[1])
    assert got == positions
    assert got == sorted(got)


def test_unwrap_over_many_wraps_matches_true_travel() -> None:
    """Across several wraps the position equals the true travel from the first count."""
    rng = random.Random(7)
    travel, t = 0, 0
    start = WRAP - 12_345
    clock = EncoderClock()
    clock.feed(t, start)
    for _ in range(30_000):
        travel += rng.choice([0, 0, rng.randrange(1, 2_000_000)])
        t += rng.randrange(1, 5 * MS)
        clock.feed(t, (start + travel) % WRAP)
    assert clock.newest == (t, start + travel)
    assert travel > 2 * WRAP and clock.resets == 0


def test_large_step_back_is_a_counter_reset() -> None:
    """A count far behind the last one (PLC restarted) restarts the clock past a gap and forgets history."""
    clock = fed([(0, 500_000), (MS, 600_000)], max_backward_counts=1000)
    clock.feed(2 * MS, 0)
    assert clock.resets == 1
    assert clock.newest == (2 * MS, 600_000 + RESET_GAP)
    assert clock.origin == 600_000 + RESET_GAP
    assert clock.position_at(MS) is None
    clock.feed(3 * MS, 10)
    assert clock.newest == (3 * MS, 600_000 + RESET_GAP + 10)


def test_out_of_order_sample_is_dropped() -> None:
    """A sample older than the newest one is ignored and counted; the same instant keeps the later count."""
    clock = fed([(10 * MS, 100), (20 * MS, 200)])
    assert not clock.feed(15 * MS, 150)
    assert clock.dropped == 1 and clock.newest == (20 * MS, 200)
    assert clock.feed(20 * MS, 210)
    assert clock.newest == (20 * MS, 210) and len(clock) == 2


def test_raw_count_must_be_32_bit() -> None:
    """A count outside 0..2**32-1 is refused rather than unwrapped."""
    clock = EncoderClock()
    for bad in (-1, WRAP):
        with pytest.raises(ValueError):
            clock.feed(0, bad)


# -- EncoderClock: position_at ----------------------------------------------------------------

SAMPLES = [(100, 1_000), (200, 2_000), (300, 2_000), (400, 2_000), (500, 5_000)]


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (99, None),
        (100, 1_000),
        (150, 1_500),
        (101, 1_010),
        (199, 1_990),
        (200, 2_000),
        (350, 2_000),
        (400, 2_000),
        (450, 3_500),
        (500, 5_000),
        (501, 5_000),
        (10**12, 5_000),
    ],
)
def test_position_at(t: int, expected: int | None) -> None:
    """Interpolated between the samples around t; None before them; the newest position after them."""
    assert fed(SAMPLES).position_at(t) == expected


def test_position_at_interpolates_across_wrap() -> None:
    """Interpolation runs on the unwrapped position, also between samples on both sides of a wrap."""
    clock = fed([(0, WRAP - 100), (10, 100)])
    assert clock.position_at(5) == WRAP
    assert clock.position_at(9) == WRAP - 100 + 180


def test_position_at_without_samples() -> None:
    """Nothing is known before the first sample."""
    clock = EncoderClock()
    assert clock.position_at(0) is None and clock.newest is None and clock.eta_ns(10, 0) is None


def test_standstill_keeps_two_samples() -> None:
    """A standing belt fed for long keeps only the ends of the stop, so older instants stay known."""
    clock = fed([(0, 0), (MS, 100)] + [(t * MS, 100) for t in range(2, 100_000)], max_samples=8, history_ns=1000 * S)
    assert len(clock) == 3
    assert clock.position_at(MS // 2) == 50
    assert clock.position_at(50_000 * MS) == 100


@pytest.mark.parametrize(
    ("kw", "oldest_t"),
    [
        pytest.param({"max_samples": 10}, 955, id="by-count"),
        pytest.param({"history_ns": 100}, 900, id="by-time"),
        pytest.param({"history_ns": 97}, 900, id="by-time-keeps-one-before-horizon"),
        pytest.param({"max_samples": 50, "history_ns": 100}, 900, id="time-tighter"),
        pytest.param({"max_samples": 5, "history_ns": 100}, 980, id="count-tighter"),
    ],
)
def test_history_bound(kw: dict[str, int], oldest_t: int) -> None:
    """History keeps at most max_samples samples and reaches back at most history_ns (plus one sample)."""
    clock = fed([(t, t) for t in range(0, 1001, 5)], **kw)
    assert clock.oldest == (oldest_t, oldest_t)
    assert clock.position_at(oldest_t - 1) is None
    assert clock.position_at(oldest_t + 2) == oldest_t + 2


def test_history_stays_bounded_over_a_long_run() -> None:
    """Memory stays bounded however many samples arrive."""
    clock = EncoderClock(max_samples=100)
    for t in range(100_000):
        clock.feed(t, t % WRAP)
    assert len(clock) == 100
    assert len(clock._t) <= 2 * 100 + 256  # evicted samples are really dropped, not just skipped
    assert clock.position_at(99_950) == 99_950


# -- EncoderClock: eta ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "target", "now", "expected"),
    [
        pytest.param([(0, 0), (10 * MS, 1000)], 2000, 10 * MS, 20 * MS, id="ahead"),
        pytest.param([(0, 0), (10 * MS, 1000)], 1001, 10 * MS, 10 * MS + 10_000, id="one-count-ahead"),
        pytest.param([(0, 0), (10 * MS, 1000)], 2000, 25 * MS, 25 * MS, id="overdue-estimate-is-now"),
        pytest.param([(0, 0), (10 * MS, 1000)], 900, 12 * MS, 12 * MS, id="already-there"),
        pytest.param([(0, 0), (10 * MS, 1000)], 1000, 12 * MS, 12 * MS, id="exactly-there"),
        pytest.param([(0, 500), (100 * MS, 500)], 501, 100 * MS, None, id="standstill"),
        pytest.param([(0, 500)], 501, 0, None, id="one-sample"),
        pytest.param(
            [(0, 0), (100 * MS, 100_000), (140 * MS, 100_000), (150 * MS, 100_000)],
            100_001,
            150 * MS,
            None,
            id="stopped-for-the-whole-window",
        ),
        pytest.param(
            [(0, 0), (100 * MS, 1000), (200 * MS, 11_000)], 12_000, 200 * MS, 210 * MS, id="recent-speed-not-average"
        ),
        pytest.param([(0, WRAP - 500), (10 * MS, 500)], WRAP + 1500, 10 * MS, 20 * MS, id="across-wrap"),
    ],
)
def test_eta(samples: list[tuple[int, int]], target: int, now: int, expected: int | None) -> None:
    """The estimate uses the speed over the last speed_window_ns, never lies in the past, and is None at a stop."""
    assert fed(samples).eta_ns(target, now) == expected


# -- trackers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (1_000 + 300 * MS - 1, "early"),
        (1_000 + 300 * MS, "due"),
        (1_000 + 305 * MS, "due"),
        (1_000 + 310 * MS, "due"),
        (1_000 + 310 * MS + 1, "passed"),
    ],
)
def test_time_tracker_window(now: int, expected: str) -> None:
    """Time tracking: due at acquisition + fire_delay, fireable until max_late after it."""
    tracker = TimeTracker(fire_delay_ns=300 * MS, max_late_ns=10 * MS)
    due = tracker.due(1_000)
    assert due == 1_000 + 300 * MS
    assert tracker.state(due, now) == expected
    assert tracker.ready(1_000) and tracker.current(now) == now
    assert tracker.wake_ns(due, 0) == due and tracker.wake_ns(due, due + 5) == due + 5
    assert tracker.passed_reason(due) == TOO_LATE


ENCODER_SAMPLES = [(0, WRAP - 1000), (10 * MS, WRAP - 500), (20 * MS, 0), (30 * MS, 500)]


@pytest.mark.parametrize(
    ("t_acquired", "now", "position", "expected"),
    [
        pytest.param(15 * MS, 30 * MS, WRAP + 500, "early", id="early"),
        pytest.param(15 * MS, 31 * MS, WRAP + 4749, "early", id="one-before"),
        pytest.param(15 * MS, 31 * MS, WRAP + 4750, "due", id="at-target"),
        pytest.param(15 * MS, 31 * MS, WRAP + 4850, "due", id="at-tolerance"),
        pytest.param(15 * MS, 31 * MS, WRAP + 4851, "passed", id="past-tolerance"),
    ],
)
def test_encoder_tracker_window(t_acquired: int, now: int, position: int, expected: str) -> None:
    """Encoder tracking: due at position_at(acquired) + ejector_counts, fireable up to tolerance beyond."""
    clock = fed(ENCODER_SAMPLES)
    tracker = EncoderTracker(clock, ejector_counts=5_000, tolerance_counts=100)
    due = tracker.due(t_acquired)
    assert due == WRAP - 250 + 5_000  # halfway between WRAP - 500 and WRAP
    clock.feed(now, position % WRAP)
    assert tracker.current(now) == position
    assert tracker.state(due, now) == expected
    assert tracker.passed_reason(due) == TOO_LATE


def test_encoder_tracker_position_unknown() -> None:
    """No samples, or an acquisition older than the history: the reject cannot be placed (None)."""
    clock = EncoderClock(history_ns=100 * MS)
    tracker = EncoderTracker(clock, ejector_counts=5_000, tolerance_counts=100)
    assert not tracker.ready(0) and tracker.due(0) is None and tracker.current(0) is None
    for t in range(0, 1_000 * MS, MS):
        clock.feed(t, t // MS)
    assert tracker.ready(500 * MS) and tracker.due(500 * MS) is None
    assert tracker.due(900 * MS) == 900 + 5_000


def test_encoder_tracker_waits_for_a_sample_after_acquisition() -> None:
    """An acquisition newer than the newest sample is not placed (it would be placed short) until one comes."""
    clock = fed([(0, 0), (10 * MS, 1_000)])
    tracker = EncoderTracker(clock, ejector_counts=5_000, tolerance_counts=100)
    assert not tracker.ready(12 * MS) and tracker.due(12 * MS) is None
    clock.feed(14 * MS, 1_400)
    assert tracker.ready(12 * MS) and tracker.due(12 * MS) == 1_200 + 5_000


def test_encoder_tracker_stale_position_decides_nothing() -> None:
    """With no encoder sample for max_sample_age_ns the current position is unknown: neither fire nor expire."""
    clock = fed([(0, 0), (10 * MS, 6_000)])
    tracker = EncoderTracker(clock, ejector_counts=5_000, tolerance_counts=100, max_sample_age_ns=20 * MS)
    assert tracker.state(5_950, 30 * MS) == "due"
    assert tracker.state(5_950, 30 * MS + 1) is None and tracker.current(30 * MS + 1) is None
    assert EncoderTracker(clock, 5_000, 100, max_sample_age_ns=None).state(5_950, 10 * S) == "due"


def test_loose_reading_moves_the_current_position_but_places_no_part() -> None:
    """A slow reading (taken_by_ns given) is the belt's position now (fire or expire on it),
    unwrapped like any other; a part is placed only once a precise reading follows it."""
    clock = fed([(0, WRAP - 1_000), (10 * MS, 0)])
    tracker = EncoderTracker(clock, ejector_counts=5_000, tolerance_counts=100)
    assert clock.feed(12 * MS, 600, taken_by_ns=13 * MS)  # past the wrap: position WRAP + 600
    assert clock.latest == (12 * MS, WRAP + 600) and clock.newest == (10 * MS, WRAP)
    assert tracker.current(12 * MS) == WRAP + 600 and tracker.reading(12 * MS) == (12 * MS, WRAP + 600)
    assert tracker.reached(10 * S) == WRAP + 600  # however old: the belt has come that far
    assert not tracker.ready(11 * MS) and tracker.due(11 * MS) is None  # no precise reading after it
    assert not clock.feed(11 * MS, 700)  # older than the latest reading: dropped
    clock.feed(14 * MS, 1_000)
    assert clock.latest == clock.newest == (14 * MS, WRAP + 1_000)
    assert tracker.due(12 * MS) == WRAP + 500 + 5_000  # interpolated between 10 and 14 ms, within bounds
    clock.reset()
    assert clock.latest is None and tracker.reached(0) is None


def test_loose_readings_bound_the_interpolation() -> None:
    """Between two precise readings the belt stopped, or sped up: the slow readings in between are
    no points of the line, but a part's position is held within what they prove."""
    stopped = fed([(0, 0)])
    stopped.feed(60 * MS, 1_000, taken_by_ns=65 * MS)  # the belt stopped at 1000 by 50 ms
    stopped.feed(130 * MS, 1_000, taken_by_ns=136 * MS)
    stopped.feed(200 * MS, 1_000)
    assert stopped.position_at(100 * MS) == 1_000  # a straight line from 0 to 200 ms would say 500
    assert stopped.position_at(30 * MS) == 150  # before the first slow read: the line, unbounded
    started = fed([(0, 0)])
    started.feed(50 * MS, 100, taken_by_ns=55 * MS)  # crawling, then fast
    started.feed(100 * MS, 1_000)
    assert started.position_at(40 * MS) == 100  # the line says 400; it was at most 100 before 50 ms
    assert started.position_at(80 * MS) == 800  # after the slow read: the line (>= 100) stands


def test_loose_readings_stay_bounded_when_no_precise_one_comes() -> None:
    """A PLC whose every reading is slow, for hours: only the last loose reading is held (it is the
    latest); with one old precise sample, the history and max_samples bound them as they bound samples."""
    clock = EncoderClock(max_samples=1_000, history_ns=1_000 * MS)
    for i in range(20_000):
        clock.feed(i * MS, i % WRAP, taken_by_ns=i * MS + MS // 2)
    assert clock.loose_held == 1 and clock.latest == (19_999 * MS, 19_999)
    clock.feed(20_000 * MS, 20_000)  # one precise sample, then slow readings only
    for i in range(20_001, 40_000):
        clock.feed(i * MS, i, taken_by_ns=i * MS + MS // 2)
    assert clock.loose_held <= 1_000 + 256 and clock.latest == (39_999 * MS, 39_999)
    assert clock.position_at(20_000 * MS) == 20_000


def test_encoder_tracker_reset_loses_pending_rejects() -> None:
    """After a clock reset every earlier reject is passed and reported position_lost, never fired."""
    clock = fed([(0, 0), (10 * MS, 1_000)])
    tracker = EncoderTracker(clock, ejector_counts=2**31 - 1, tolerance_counts=2**31 - 1)
    due = tracker.due(5 * MS)
    assert due is not None
    clock.reset()
    clock.feed(20 * MS, 0)
    assert tracker.state(due, 20 * MS) == "passed"
    assert tracker.passed_reason(due) == POSITION_LOST
    assert tracker.due(5 * MS) is None
    new_due = tracker.due(20 * MS)
    assert new_due is not None and tracker.passed_reason(new_due) == TOO_LATE


def test_encoder_schedule_orders_by_position() -> None:
    """The tracker's schedule expires and pops by position, with the encoder tolerance as max_late."""
    schedule = EncoderTracker(EncoderClock(), 0, 100).new_schedule()
    for part, due in ((1, 1_000), (2, 2_000), (3, 3_000)):
        schedule.push(PendingReject(due, part, part, 0))
    assert [r.part_id for r in schedule.pop_expired(2_100)] == [1]
    due_now = schedule.pop_due(2_100)
    assert due_now is not None and due_now.part_id == 2
    assert schedule.pop_due(2_100) is None and schedule.next_due_ns() == 3_000


@pytest.mark.parametrize(
    ("extra", "kind"),
    [
        ({}, TimeTracker),
        ({"tracking": {"by": "time"}, "fire_delay_ms": 250.5, "max_late_ms": 7.3}, TimeTracker),
        (
            {"mode": "handshake", "tracking": {"by": "encoder", "ejector_counts": 1234, "tolerance_counts": 56}},
            EncoderTracker,
        ),
    ],
)
def test_tracker_for(extra: dict[str, Any], kind: type) -> None:
    """The factory builds the tracker tracking.by names, with the configured distances in its unit."""
    if extra.get("tracking", {}).get("by") == "encoder":
        # The config refuses encoder tracking until the worker uses it; the factory is ready for it.
        tracking = TrackingSection.model_validate(extra["tracking"])
        cfg = plc_section().model_copy(update={"mode": "handshake", "tracking": tracking})
    else:
        cfg = plc_section(**extra)
    tracker = tracker_for(cfg)
    assert isinstance(tracker, kind)
    if isinstance(tracker, TimeTracker):
        assert tracker.unit == "ns"
        assert tracker.fire_delay_ns == round(cfg.fire_delay_ms * MS)
        assert tracker.max_late_ns == round(cfg.max_late_ms * MS)
    else:
        assert isinstance(tracker, EncoderTracker) and tracker.unit == "counts"
        assert (tracker.ejector_counts, tracker.tolerance_counts) == (1234, 56)
        clock = EncoderClock()
        tracker2 = tracker_for(cfg, clock)
        assert isinstance(tracker2, EncoderTracker) and tracker2.clock is clock


# -- simulated lines --------------------------------------------------------------------------


class Belt:
    """A conveyor with piecewise constant speed: its true (continuous) travel since t = 0, in counts."""

    def __init__(self, segments: list[tuple[int, float]]) -> None:
        self.t0: list[int] = []
        self.p0: list[float] = []
        self.v: list[float] = []
        t, p = 0, 0.0
        for duration_ns, counts_per_ns in segments:
            self.t0.append(t)
            self.p0.append(p)
            self.v.append(counts_per_ns)
            t += duration_ns
            p += counts_per_ns * duration_ns
        self.end_ns = t
        self.length = p

    def pos(self, t_ns: int) -> float:
        i = bisect_right(self.t0, t_ns) - 1
        return self.p0[i] + self.v[i] * (t_ns - self.t0[i])

    def time_at(self, x: float) -> int:
        """The first instant the belt has travelled *x*."""
        i = bisect_right(self.p0, x) - 1
        assert self.v[i] > 0
        return self.t0[i] + math.ceil((x - self.p0[i]) / self.v[i])


@dataclass
class Reject:
    part_id: int
    t_acquired_ns: int
    t_verdict_ns: int
    x: float
    """True belt travel when the part was imaged."""


@dataclass
class RecordingPlc:
    """Applies each fire at the belt position of that instant."""

    belt: Belt
    fires: list[tuple[int, int, float]] = field(default_factory=list)

    def fire(self, part_id: int, t_ns: int) -> None:
        self.fires.append((part_id, t_ns, self.belt.pos(t_ns)))


@dataclass
class Run:
    plc: RecordingPlc
    reported: dict[int, str]
    due: dict[int, int]
    """Each placed reject's due value, in the tracker's unit."""
    placed_at: dict[int, int]
    polls: int


def run_line(
    tracker: Tracker,
    belt: Belt,
    rejects: list[Reject],
    rng: random.Random,
    poll_ns: tuple[int, int],
    encoder: tuple[EncoderClock, int] | None = None,
) -> Run:
    """The PLC worker's loop as the tracker module expects it, on a simulated clock.

    It wakes after a random poll interval, when a verdict arrives, or when the next reject should be
    due; each wake reads the encoder (when *encoder* = (clock, raw count at travel 0)), places the
    verdicts that arrived, reports passed rejects and fires due ones.
    """
    schedule = tracker.new_schedule()
    plc = RecordingPlc(belt)
    arrivals = sorted(rejects, key=lambda r: r.t_verdict_ns)
    reported: dict[int, str] = {}
    due_of: dict[int, int] = {}
    placed_at: dict[int, int] = {}
    waiting: list[Reject] = []
    i, t, polls = 0, 0, 0
    while t <= belt.end_ns:
        polls += 1
        if encoder is not None:
            clock, start = encoder
            clock.feed(t, (start + math.floor(belt.pos(t))) % WRAP)
        while i < len(arrivals) and arrivals[i].t_verdict_ns <= t:
            waiting.append(arrivals[i])
            i += 1
        held = []
        for r in waiting:
            if not tracker.ready(r.t_acquired_ns):
                held.append(r)
                continue
            due = tracker.due(r.t_acquired_ns)
            if due is None:
                reported[r.part_id] = POSITION_UNKNOWN
                continue
            due_of[r.part_id] = due
            placed_at[r.part_id] = t
            schedule.push(PendingReject(due, r.part_id, r.part_id, r.t_acquired_ns))
        waiting = held
        cur = tracker.current(t)
        if cur is not None:
            for late in schedule.pop_expired(cur):
                assert tracker.state(late.due_ns, t) == "passed"
                reported[late.part_id] = tracker.passed_reason(late.due_ns)
            while (now_due := schedule.pop_due(cur)) is not None:
                assert tracker.state(now_due.due_ns, t) == "due"
                plc.fire(now_due.part_id, t)
        wake = t + rng.randint(*poll_ns)
        if i < len(arrivals):
            wake = min(wake, arrivals[i].t_verdict_ns)
        next_due = schedule.next_due_ns()
        if next_due is not None:
            eta = tracker.wake_ns(next_due, t)
            if eta is not None:
                wake = min(wake, eta)
        t = max(wake, t + 1)
    assert not len(schedule) and not waiting and i == len(arrivals)
    return Run(plc, reported, due_of, placed_at, polls)


def latency_ns(rng: random.Random) -> int:
    """Inference latency: mostly a few ms, some long enough to miss the ejector, a few very long."""
    u = rng.random()
    if u < 0.90:
        return rng.randint(2 * MS, 40 * MS)
    if u < 0.98:
        return rng.randint(40 * MS, 1 * S)
    if u < 0.997:
        return rng.randint(1 * S, 6 * S)
    return rng.randint(12 * S, 20 * S)


def make_parts(
    belt: Belt, rng: random.Random, n: int, spacing: tuple[int, int], first: int = 5_000
) -> tuple[list[float], list[Reject]]:
    """*n* parts imaged as they pass the camera; about a third are rejected, each verdict after a latency."""
    xs: list[float] = []
    rejects: list[Reject] = []
    x = float(first)
    for part_id in range(n):
        t_acq = belt.time_at(x)
        x_true = belt.pos(t_acq)
        xs.append(x_true)
        if rng.random() < 0.3:
            rejects.append(Reject(part_id, t_acq, t_acq + latency_ns(rng), x_true))
        x += rng.randint(*spacing)
    return xs, rejects


def stopped_between(belt: Belt, t0_ns: int, t1_ns: int) -> bool:
    """Whether the belt stood still at some time between the two instants."""
    first, last = bisect_right(belt.t0, t0_ns) - 1, bisect_right(belt.t0, t1_ns) - 1
    return any(v == 0 for v in belt.v[first : last + 1])


def parts_in_front(xs: list[float], ejector: float, belt_pos: float, lo: float, hi: float) -> list[int]:
    """Parts whose offset from the ejector, ``belt_pos - (x + ejector)``, lies in [lo, hi]."""
    return list(range(bisect_left(xs, belt_pos - ejector - hi), bisect_right(xs, belt_pos - ejector - lo)))


def check_outcome(run: Run, rejects: list[Reject]) -> tuple[set[int], set[int]]:
    """Every reject fired once or reported, never both; returns (fired, reported) part ids."""
    fired_ids = [part for part, _, _ in run.plc.fires]
    fired = set(fired_ids)
    reported = set(run.reported)
    assert len(fired_ids) == len(fired), "a part was fired twice"
    assert not fired & reported, "a reported reject was also fired"
    assert fired | reported == {r.part_id for r in rejects}
    assert len(fired) + len(reported) == len(rejects)
    return fired, reported


EJECTOR_COUNTS = 20_000
TOLERANCE_COUNTS = 300
V_MAX = 60_000 / S  # counts per ns
POLL_NS = (1 * MS, 4 * MS)  # the belt moves at most V_MAX * 4 ms = 240 counts between encoder reads
SLACK = V_MAX * POLL_NS[1] + 2  # error of a position interpolated between two (floored) reads, in counts
START = WRAP - 5_000_000  # the raw count at travel 0: wraps after 5M of about 13M counts


def varying_belt(rng: random.Random, length: float) -> Belt:
    """Speeds of 20k..60k counts/s for 50 ms..2 s, with standstills of 50 ms..3 s in between."""
    segments: list[tuple[int, float]] = [(200 * MS, 0.0)]
    travelled = 0.0
    while travelled < length:
        if rng.random() < 0.15:
            segments.append((rng.randint(50 * MS, 3 * S), 0.0))
        else:
            duration, v = rng.randint(50 * MS, 2 * S), rng.uniform(20_000 / S, V_MAX)
            segments.append((duration, v))
            travelled += duration * v
    segments.append((30 * S, 40_000 / S))  # runs on until every verdict has arrived and its part has passed
    return Belt(segments)


def test_encoder_line_10000_parts() -> None:
    """Encoder, 10,000 parts, varying speed, stops, a wrap: each reject fires once at its own part or is reported."""
    rng = random.Random(20240611)
    n, spacing = 10_000, (1_000, 1_600)
    belt = varying_belt(rng, 5_000 + n * spacing[1] + EJECTOR_COUNTS)
    xs, rejects = make_parts(belt, rng, n, spacing)
    clock = EncoderClock()
    tracker = EncoderTracker(clock, EJECTOR_COUNTS, TOLERANCE_COUNTS)
    run = run_line(tracker, belt, rejects, rng, POLL_NS, encoder=(clock, START))

    fired, reported = check_outcome(run, rejects)
    by_id = {r.part_id: r for r in rejects}
    placement_error = [run.due[part] - (START + by_id[part].x + EJECTOR_COUNTS) for part in run.due]
    assert max(abs(e) for e in placement_error) <= SLACK  # each placed where its part really is
    assert sum(abs(e) <= 3 for e in placement_error) > 0.95 * len(placement_error)  # exact but at speed changes
    for part, _, belt_pos in run.plc.fires:
        counted = START + math.floor(belt_pos)
        assert run.due[part] <= counted <= run.due[part] + TOLERANCE_COUNTS  # by the encoder's own count
        # the ejector acts on this part and on no other: part windows (widened by the slack) do not overlap
        assert parts_in_front(xs, EJECTOR_COUNTS, belt_pos, -SLACK, TOLERANCE_COUNTS + SLACK + 1) == [part]
    for part in reported:
        r = by_id[part]
        if run.reported[part] == POSITION_UNKNOWN:
            assert r.t_verdict_ns - r.t_acquired_ns > 2 * S  # only verdicts older than the history
            continue
        assert run.reported[part] == TOO_LATE
        # reported late only when its part had really left the ejector when the verdict arrived
        assert belt.pos(r.t_verdict_ns) > r.x + EJECTOR_COUNTS + TOLERANCE_COUNTS - SLACK
    for part in fired:  # and every fired one arrived before its part had left
        r = by_id[part]
        assert belt.pos(r.t_verdict_ns) <= r.x + EJECTOR_COUNTS + TOLERANCE_COUNTS + SLACK + 1

    # the scenario exercised what it claims to
    newest = clock.newest
    assert newest is not None and clock.resets == 0
    assert newest[1] == START + math.floor(belt.pos(newest[0]))  # unwrapped exactly over the whole run
    assert any(START + pos < WRAP for _, _, pos in run.plc.fires)
    assert any(START + pos > WRAP for _, _, pos in run.plc.fires)  # fired on both sides of the wrap
    assert sum(1 for v in belt.v if v == 0) > 30
    assert sum(1 for part, t_fire, _ in run.plc.fires if stopped_between(belt, by_id[part].t_acquired_ns, t_fire)) > 50
    reasons = list(run.reported.values())
    assert len(rejects) > 2_500 and len(fired) > 2_000
    assert reasons.count(TOO_LATE) > 50 and reasons.count(POSITION_UNKNOWN) >= 1


def test_time_line_10000_parts() -> None:
    """Time, 10,000 parts, constant speed: each reject fires once in its window at its own part or is reported."""
    rng = random.Random(424242)
    speed = 40_000 / S
    fire_delay_ms, max_late_ms = 500.0, 7.5
    ejector, tolerance = speed * fire_delay_ms * MS, speed * max_late_ms * MS  # 20,000 and 300 counts
    n, spacing = 10_000, (1_000, 1_600)
    belt = Belt([(round((5_000 + n * spacing[1] + ejector) / speed) + 30 * S, speed)])
    xs, rejects = make_parts(belt, rng, n, spacing)
    tracker = tracker_for(plc_section(fire_delay_ms=fire_delay_ms, max_late_ms=max_late_ms))
    assert isinstance(tracker, TimeTracker)
    run = run_line(tracker, belt, rejects, rng, (5 * MS, 20 * MS))

    fired, reported = check_outcome(run, rejects)
    by_id = {r.part_id: r for r in rejects}
    eps = 1e-6
    for part, t_fire, belt_pos in run.plc.fires:
        r = by_id[part]
        assert tracker.fire_delay_ns <= t_fire - r.t_acquired_ns <= tracker.fire_delay_ns + tracker.max_late_ns
        assert parts_in_front(xs, ejector, belt_pos, -eps, tolerance + eps) == [part]
    for part in reported:
        r = by_id[part]
        assert run.reported[part] == TOO_LATE
        assert r.t_verdict_ns > r.t_acquired_ns + tracker.fire_delay_ns + tracker.max_late_ns
    for part in fired:
        r = by_id[part]
        assert r.t_verdict_ns <= r.t_acquired_ns + tracker.fire_delay_ns + tracker.max_late_ns
    assert len(fired) > 2_000 and len(reported) > 50
