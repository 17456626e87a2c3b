"""Where a rejected part is on the conveyor, and whether its reject may fire now (pure logic).

The model: the camera images a part at ``t_acquired_ns``; the ejector sits a fixed distance
downstream. A reject is *due* once the part has travelled that distance and may still fire for a
short stretch beyond (the part is still in front of the ejector); past that stretch the ejector
would hit another part, so the reject is reported late and never fired. A part is, at any instant,
``"early"``, ``"due"`` or ``"passed"`` (:func:`where`).

Two ways to measure the travel, both behind :class:`Tracker` (built by :func:`tracker_for`):

- ``TimeTracker`` (``tracking.by = "time"``): the belt runs at constant speed, so travel is time.
  Due at ``t_acquired + fire_delay``; may fire while ``now <= due + max_late``. Unit: ns.
- ``EncoderTracker`` (``tracking.by = "encoder"``): the PLC's encoder count is the belt position.
  The worker feeds every count it reads into an :class:`EncoderClock`, which unwraps the 32-bit
  count and remembers recent ``(time, position)`` samples. The part's due position is the belt
  position at ``t_acquired`` (interpolated from the samples) plus ``ejector_counts``; it may fire
  while the current position is ``<= due + tolerance_counts``. Unit: encoder counts. A reject whose
  acquisition is no longer (or was never) covered by the samples cannot be placed: it is reported
  ``"position_unknown"``, never guessed.

Either way the worker keeps pending rejects in a :class:`~linegate.plc.schedule.RejectSchedule`
keyed by the due value in the tracker's unit (``PendingReject.due_ns`` then holds a position for
the encoder), and compares it with :meth:`Tracker.current`. All times are ``time.monotonic_ns()``
values passed in (camera timestamps on the same clock); nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Literal, NamedTuple, Protocol

from linegate.config.schema import PlcSection
from linegate.plc.schedule import RejectSchedule

Where = Literal["early", "due", "passed"]

WRAP = 1 << 32
"""The raw encoder count wraps from ``WRAP - 1`` to 0."""
_HALF = 1 << 31
RESET_GAP = WRAP
"""Positions jump by this much at a reset: more than any ``ejector_counts + tolerance_counts``
(each below 2**31), so every reject placed before the reset is "passed" after it."""

TOO_LATE = "too_late"
POSITION_UNKNOWN = "position_unknown"
POSITION_LOST = "position_lost"

DEFAULT_MAX_SAMPLE_AGE_NS = 20_000_000


class EncoderReading(NamedTuple):
    """One encoder count and when it was taken (``t_ns``: halfway between request and reply for a
    precise reading, the request for a slow one, so its age is never understated)."""

    t_ns: int
    position: int


def where(target: int, tolerance: int, current: int) -> Where:
    """Where a part due at *target* stands when the belt (or clock) is at *current*.

    ``"due"`` for ``target <= current <= target + tolerance``, ``"passed"`` beyond, else ``"early"``.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if current < target:
        return "early"
    return "due" if current - target <= tolerance else "passed"


class EncoderClock:
    """Belt position over time, from ``(t_ns, raw_count)`` samples of a wrapping 32-bit encoder.

    Assumes a forward-only belt: the position never decreases. A step back of up to
    *max_backward_counts* (encoder jitter, a belt settling back) is held at the furthest position
    seen; a larger step back means the counter was reset (PLC restart): the clock then restarts as
    after :meth:`reset`. Any forward step below 2**31 counts between two samples is taken as
    travel, so samples must come much more often than the belt travels 2**31 counts.

    History is bounded by *max_samples* and *history_ns*; while the belt stands still only the
    first and last sample of the standstill are kept, so a stop does not use up the history.

    A reading whose moment is known only loosely (``taken_by_ns`` given: a slow read, its count
    taken between ``t_ns`` and then) still says where the belt is now (:attr:`latest`) but is no
    point of the interpolation (:attr:`newest`): it only bounds it. The belt was at least at its
    count after ``taken_by_ns`` and at most at it before ``t_ns``, so a belt that stopped or sped
    up between two precise readings is not drawn as a straight line through slow ones.
    """

    def __init__(
        self,
        max_samples: int = 4096,
        history_ns: int = 10_000_000_000,
        speed_window_ns: int = 50_000_000,
        max_backward_counts: int = 1 << 16,
    ) -> None:
        if max_samples < 2 or history_ns <= 0 or speed_window_ns <= 0 or max_backward_counts < 0:
            raise ValueError("max_samples >= 2, history_ns > 0, speed_window_ns > 0, max_backward_counts >= 0")
        self.max_samples = max_samples
        self.history_ns = history_ns
        self.speed_window_ns = speed_window_ns
        self.max_backward_counts = max_backward_counts
        self._t: list[int] = []
        self._p: list[int] = []
        self._head = 0  # samples before it are evicted (dropped from the lists in batches)
        self._raw: int | None = None  # raw count of the furthest position; None: next sample starts afresh
        self._pos: int | None = None
        self._origin = 0
        # Loose readings since the oldest precise sample (bounded like the samples; the last one is
        # always kept, as it may be the latest reading): taken from, taken by, position.
        self._loose_from: list[int] = []
        self._loose_by: list[int] = []
        self._loose_pos: list[int] = []
        self.dropped = 0
        """Readings ignored because they were older than the latest one."""
        self.resets = 0
        """Restarts, by :meth:`reset` or a counter that jumped back."""

    def __len__(self) -> int:
        return len(self._t) - self._head

    @property
    def origin(self) -> int:
        """Position of the first sample since the last reset; every position before it is forgotten."""
        return self._origin

    @property
    def newest(self) -> tuple[int, int] | None:
        """``(t_ns, position)`` of the newest sample, None before the first."""
        return (self._t[-1], self._p[-1]) if len(self) else None

    @property
    def loose_held(self) -> int:
        """Loose readings held to bound the interpolation (bounded like the samples)."""
        return len(self._loose_by)

    @property
    def latest(self) -> tuple[int, int] | None:
        """``(t_ns, position)`` of the last reading, precise or not: where the belt is now."""
        newest = self.newest
        if not self._loose_from or (newest is not None and newest[0] >= self._loose_from[-1]):
            return newest
        return self._loose_from[-1], self._loose_pos[-1]

    @property
    def oldest(self) -> tuple[int, int] | None:
        """``(t_ns, position)`` of the oldest sample still held, None before the first."""
        return (self._t[self._head], self._p[self._head]) if len(self) else None

    def reset(self) -> None:
        """Forget every sample (e.g. after the PLC link was down): the next sample starts a new
        range of positions, :data:`RESET_GAP` past the last one, so no earlier target can become due."""
        self._raw = None
        self._loose_from.clear()
        self._loose_by.clear()
        self._loose_pos.clear()
        self._t.clear()
        self._p.clear()
        self._head = 0
        self.resets += 1

    def feed(self, t_ns: int, raw_count: int, *, taken_by_ns: int | None = None) -> bool:
        """Add the count read at *t_ns*; False when it was ignored (older than the latest reading).
        With *taken_by_ns*: a loose reading, its count taken between *t_ns* and *taken_by_ns*."""
        if not 0 <= raw_count < WRAP:
            raise ValueError(f"raw encoder count must be an unsigned 32-bit value, got {raw_count}")
        if self._raw is None or self._pos is None:
            self._start(raw_count)
        elif (latest := self.latest) is not None and t_ns < latest[0]:
            self.dropped += 1
            return False
        else:
            step = (raw_count - self._raw) % WRAP
            if step < _HALF:
                self._raw = raw_count
                self._pos += step
            elif WRAP - step > self.max_backward_counts:
                self.reset()
                self._start(raw_count)
            # else: a small step back; the position stays at the furthest one seen
        assert self._pos is not None
        if taken_by_ns is None:
            self._append(t_ns, self._pos)
        else:
            self._loose_from.append(t_ns)
            self._loose_by.append(taken_by_ns)
            self._loose_pos.append(self._pos)
            self._trim_loose()
        return True

    def _trim_loose(self) -> None:
        """Drop the loose readings that bound nothing any more: those taken before the oldest precise
        sample (all but the last while there is none), beyond the history, or beyond max_samples."""
        n = len(self._loose_by)
        if not len(self):
            stale = n - 1
        else:
            stale = max(
                bisect_right(self._loose_by, self._t[self._head]),
                bisect_right(self._loose_from, self._loose_from[-1] - self.history_ns),
                n - self.max_samples,
            )
        stale = min(stale, n - 1)
        if stale >= 256 or stale * 2 >= n > 1:
            del self._loose_from[:stale]
            del self._loose_by[:stale]
            del self._loose_pos[:stale]

    def _start(self, raw_count: int) -> None:
        self._pos = raw_count if self._pos is None else self._pos + RESET_GAP
        self._raw = raw_count
        self._origin = self._pos

    def _append(self, t_ns: int, pos: int) -> None:
        t, p = self._t, self._p
        n = len(self)
        if n and t[-1] == t_ns:
            p[-1] = pos  # same instant read twice: keep the later (never smaller) position
        elif n >= 2 and p[-1] == pos and p[-2] == pos:
            t[-1] = t_ns  # standstill: the middle sample says nothing the two ends do not
        else:
            t.append(t_ns)
            p.append(pos)
        if len(self) > self.max_samples:
            self._head = len(t) - self.max_samples
        horizon = t_ns - self.history_ns
        while self._head + 1 < len(t) and t[self._head + 1] <= horizon:
            self._head += 1  # keep one sample at or before the horizon, so the horizon stays covered
        if self._head >= 256 and self._head * 2 >= len(t):
            del t[: self._head]
            del p[: self._head]
            self._head = 0

    def position_at(self, t_ns: int) -> int | None:
        """Belt position at the past instant *t_ns*, interpolated between the samples around it.

        None before the first sample or when *t_ns* is older than the history; the newest position
        for any *t_ns* after the newest sample (never extrapolated).
        """
        if not len(self) or t_ns < self._t[self._head]:
            return None
        t, p = self._t, self._p
        if t_ns >= t[-1]:
            return p[-1]
        i = bisect_right(t, t_ns, self._head) - 1
        t0, p0 = t[i], p[i]
        line = p0 + (p[i + 1] - p0) * (t_ns - t0) // (t[i + 1] - t0)
        return self._bounded(line, t_ns, t0, t[i + 1]) if self._loose_by else line

    def _bounded(self, position: int, t_ns: int, t0: int, t1: int) -> int:
        """*position* at *t_ns* (interpolated between precise samples at *t0* and *t1*), held within
        what the loose readings between them say: at least the count of one taken by *t_ns*, at most
        the count of one taken from after it."""
        lo, hi = position, position
        first = bisect_right(self._loose_by, t0)
        for k in range(first, len(self._loose_by)):
            if self._loose_from[k] >= t1:
                break
            if self._loose_by[k] <= t_ns:
                lo = max(lo, self._loose_pos[k])
            elif self._loose_from[k] >= t_ns:
                hi = min(hi, self._loose_pos[k])
        return lo if lo > position else hi

    def eta_ns(self, target: int, now_ns: int) -> int | None:
        """When the belt should reach *target* at its recent speed (never before *now_ns*).

        *now_ns* when it is already there; None when the belt stands still or nothing is known.
        An estimate, for how long to sleep: read the encoder again before acting on it.
        """
        newest = self.newest
        if newest is None:
            return None
        t1, p1 = newest
        if target <= p1:
            return now_ns
        t0 = t1 - self.speed_window_ns
        p0 = self.position_at(t0)
        if p0 is None:
            t0, p0 = self._t[self._head], self._p[self._head]
        if p1 <= p0 or t1 <= t0:
            return None
        eta = t1 - (-(target - p1) * (t1 - t0) // (p1 - p0))  # ceiling division: not before it is there
        return max(eta, now_ns)


class Tracker(Protocol):
    """Places one reject on the belt and tells where its part stands, in the tracker's :attr:`unit`.

    For each reject: once :meth:`ready`, take :meth:`due` (None: report ``"position_unknown"``)
    and keep it in :meth:`new_schedule`. Then, with ``cur = current(now_ns)`` (None: decide nothing
    now), report ``schedule.pop_expired(cur)`` with :meth:`passed_reason` and fire what
    ``schedule.pop_due(cur)`` returns; sleep until :meth:`wake_ns` of the next due value.
    """

    @property
    def unit(self) -> Literal["ns", "counts"]:
        """The unit of due values and :meth:`current`: monotonic ns or encoder counts."""
        ...

    def new_schedule(self) -> RejectSchedule:
        """An empty schedule that expires rejects past their tolerance (fill it with ``push``)."""
        ...

    def ready(self, t_acquired_ns: int) -> bool:
        """Whether :meth:`due` can answer for a frame acquired at *t_acquired_ns*; until then hold it."""
        ...

    def due(self, t_acquired_ns: int) -> int | None:
        """When (ns) or where (counts) the part imaged at *t_acquired_ns* reaches the ejector; None
        when that cannot be known: report the reject ``"position_unknown"``."""
        ...

    def current(self, now_ns: int) -> int | None:
        """Where the belt is now, to compare due values with; None when that is not known."""
        ...

    def reached(self, now_ns: int) -> int | None:
        """How far the belt has certainly come, however long ago that was read: a due value
        beyond tolerance of it has passed (:meth:`current` can be None while this is known)."""
        ...

    def state(self, due: int, now_ns: int) -> Where | None:
        """Whether the part due at *due* is early, due (fire now) or passed (report, never fire);
        None when the belt's position is not known now (decide later)."""
        ...

    def wake_ns(self, due: int, now_ns: int) -> int | None:
        """When to look again for the part due at *due* (not before *now_ns*); None: unknown."""
        ...

    def passed_reason(self, due: int) -> str:
        """The reason to report a passed reject with."""
        ...


class TimeTracker:
    """Travel is time: due at ``t_acquired + fire_delay_ns``, may fire until ``max_late_ns`` after."""

    def __init__(self, fire_delay_ns: int, max_late_ns: int) -> None:
        if fire_delay_ns < 0 or max_late_ns < 0:
            raise ValueError("fire_delay_ns and max_late_ns must be >= 0")
        self.fire_delay_ns = fire_delay_ns
        self.max_late_ns = max_late_ns

    @property
    def unit(self) -> Literal["ns", "counts"]:
        return "ns"

    def new_schedule(self) -> RejectSchedule:
        return RejectSchedule(self.fire_delay_ns, self.max_late_ns)

    def ready(self, t_acquired_ns: int) -> bool:
        return True

    def due(self, t_acquired_ns: int) -> int:
        return t_acquired_ns + self.fire_delay_ns

    def current(self, now_ns: int) -> int:
        return now_ns

    def reached(self, now_ns: int) -> int:
        return now_ns

    def state(self, due: int, now_ns: int) -> Where:
        return where(due, self.max_late_ns, now_ns)

    def wake_ns(self, due: int, now_ns: int) -> int:
        return max(due, now_ns)

    def passed_reason(self, due: int) -> str:
        return TOO_LATE


class EncoderTracker:
    """Travel is encoder counts: due at ``position_at(t_acquired) + ejector_counts``, may fire while
    the position is at most ``tolerance_counts`` beyond.

    The current position is the latest reading's (:attr:`EncoderClock.latest`), and only while it
    is at most *max_sample_age_ns* old (None: no limit): read the encoder right before deciding.
    ``tolerance_counts`` must cover the belt's travel between that read and the ejector acting on
    the reject.
    """

    def __init__(
        self,
        clock: EncoderClock,
        ejector_counts: int,
        tolerance_counts: int,
        max_sample_age_ns: int | None = DEFAULT_MAX_SAMPLE_AGE_NS,
    ) -> None:
        if ejector_counts < 0 or tolerance_counts < 0:
            raise ValueError("ejector_counts and tolerance_counts must be >= 0")
        self.clock = clock
        self.ejector_counts = ejector_counts
        self.tolerance_counts = tolerance_counts
        self.max_sample_age_ns = max_sample_age_ns

    @property
    def unit(self) -> Literal["ns", "counts"]:
        return "counts"

    def new_schedule(self) -> RejectSchedule:
        # Push PendingReject(due_position, ...) into it; its ``add`` would key by time.
        return RejectSchedule(0, self.tolerance_counts)

    def ready(self, t_acquired_ns: int) -> bool:
        """True once a sample at or after the acquisition was read (an older one would place it short)."""
        newest = self.clock.newest
        return newest is not None and newest[0] >= t_acquired_ns

    def due(self, t_acquired_ns: int) -> int | None:
        if not self.ready(t_acquired_ns):
            return None
        pos = self.clock.position_at(t_acquired_ns)
        return None if pos is None else pos + self.ejector_counts

    def reading(self, now_ns: int) -> EncoderReading | None:
        """The latest reading, while it is fresh enough to decide on; None otherwise."""
        newest = self.clock.latest
        if newest is None:
            return None
        if self.max_sample_age_ns is not None and now_ns - newest[0] > self.max_sample_age_ns:
            return None
        return EncoderReading(*newest)

    def current(self, now_ns: int) -> int | None:
        reading = self.reading(now_ns)
        return None if reading is None else reading.position

    def reached(self, now_ns: int) -> int | None:
        latest = self.clock.latest  # the belt never runs back: an old count is still a lower bound
        return None if latest is None else latest[1]

    def state(self, due: int, now_ns: int) -> Where | None:
        cur = self.current(now_ns)
        return None if cur is None else where(due, self.tolerance_counts, cur)

    def wake_ns(self, due: int, now_ns: int) -> int | None:
        return self.clock.eta_ns(due, now_ns)

    def passed_reason(self, due: int) -> str:
        """``"position_lost"`` for a reject placed before the clock was reset, else ``"too_late"``."""
        return POSITION_LOST if due < self.clock.origin else TOO_LATE


def tracker_for(
    cfg: PlcSection,
    clock: EncoderClock | None = None,
    *,
    max_sample_age_ns: int | None = DEFAULT_MAX_SAMPLE_AGE_NS,
) -> TimeTracker | EncoderTracker:
    """The tracker ``cfg.tracking.by`` asks for; the encoder one uses *clock* (a new one if None),
    which the worker must feed with every encoder count it reads (``tracker.clock.feed``)."""
    if cfg.tracking.by == "encoder":
        return EncoderTracker(
            clock if clock is not None else EncoderClock(),
            cfg.tracking.ejector_counts,
            cfg.tracking.tolerance_counts,
            max_sample_age_ns,
        )
    return TimeTracker(round(cfg.fire_delay_ms * 1_000_000), round(cfg.max_late_ms * 1_000_000))
