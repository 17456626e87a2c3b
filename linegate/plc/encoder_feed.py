"""Encoder tracking's I/O: reads the PLC's encoder count and places rejects at their due position.

The count is interface words 20-21 (u32, high word first; ``docs/plc-interface.md``), read every
``tracking.poll_ms``, as soon as the next reject should be due at the belt's recent speed, and
again right before each pulse (unless the last reading was answered less than half its round
trip ago), and fed to the tracker's
:class:`~linegate.plc.tracking.EncoderClock`, stamped halfway between the request and the reply: the
PLC took the count somewhere in that interval, so the stamp is off by at most half of it. A reading
that took longer than ``tracking.max_read_ms`` (a slow PLC, or this process preempted between the
two) still tells where the belt is now, and bounds the positions interpolated between precise ones,
but is no point of that interpolation: no position is drawn from a count whose moment is known
worse than that.

A reject is placed (due position = belt position at its acquisition + ``ejector_counts``) only once
a precise reading at or after its acquisition exists, so it is placed from readings on both sides of
it (never extrapolated; within ``cps * max_read_ms / 2`` counts of the truth at a steady speed); if
none comes within ``max_late_ms`` it is reported ``position_unknown``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from linegate.counters import Count, SharedCounters
from linegate.plc.connection import LinkKeeper
from linegate.plc.interface import FIELDS
from linegate.plc.ledger import Ledger
from linegate.plc.link import PlcLink, PlcLinkError, PlcRefusedError
from linegate.plc.schedule import PendingReject, RejectSchedule
from linegate.plc.tracking import POSITION_UNKNOWN, EncoderTracker

ENCODER_WORD = next(f.offset for f in FIELDS if f.name == "encoder")


class EncoderFeed:
    """Encoder readings in, placed rejects out (into the schedule keyed by position)."""

    def __init__(
        self,
        link: PlcLink,
        keeper: LinkKeeper,
        tracker: EncoderTracker,
        ledger: Ledger,
        schedule: RejectSchedule,
        log: Any,
        *,
        poll_ms: float,
        max_read_ms: float,
        max_wait_ms: float,
        counters: SharedCounters,
        block_keys: str,
    ) -> None:
        self.link = link
        self.keeper = keeper
        self.tracker = tracker
        self.ledger = ledger
        self.schedule = schedule
        self.log = log
        self.poll_ns = int(poll_ms * 1e6)
        self.max_read_ns = int(max_read_ms * 1e6)
        self.max_wait_ns = int(max_wait_ms * 1e6)
        self.counters = counters
        self.block_keys = block_keys
        self.last_slow_read_ns = 0
        """Round trip of the last reading not used (too slow); 0 while none."""
        self.waiting: list[PendingReject] = []
        self.next_read_ns = 0
        self._settled_ns = 0
        """Last reply + its round trip: no read is asked before then (but by poll or force), so a
        slow PLC is not asked back to back."""
        self._reusable_until_ns = 0
        """Last precise reply + half its round trip: until then a pulse fires on that reading."""

    def read(self, now_ns: int, *, force: bool = False) -> None:
        """Read the count when due (or now, *force*) and feed the clock."""
        if not self.keeper.connected or (not force and now_ns < self.next_read_ns):
            return
        t_asked = time.monotonic_ns()
        try:
            hi, lo = self.link.read_words(ENCODER_WORD, 2)
        except PlcLinkError as exc:
            self.last_slow_read_ns = self._settled_ns = self._reusable_until_ns = 0  # the link's error is the reason
            if isinstance(exc, PlcRefusedError):
                exc = PlcRefusedError(f"the PLC refuses the encoder words ({exc}): check {self.block_keys}")
            self.keeper.lost(exc)
            return
        t_answered = time.monotonic_ns()
        self.next_read_ns = t_answered + self.poll_ns
        round_trip = t_answered - t_asked
        self._settled_ns = t_answered + round_trip
        self._reusable_until_ns = t_answered + round_trip // 2 if round_trip <= self.max_read_ns else 0
        if round_trip > self.max_read_ns:
            # Still the belt's newest known position (fire or give up on it), stamped at the request
            # so its age is never understated; it bounds part positions but is no point of them.
            self.counters.add(Count.PLC_ENCODER_SLOW_READS)
            self.last_slow_read_ns = round_trip
            self.tracker.clock.feed(t_asked, (hi << 16) | lo, taken_by_ns=t_answered)
            return
        self.last_slow_read_ns = 0
        self.tracker.clock.feed(t_asked + round_trip // 2, (hi << 16) | lo)

    def refresh(self) -> None:
        """Right before a pulse: read again, unless the last reading is precise and was answered
        less than half its round trip ago (in practice: read in the same step). A new read would
        send the write a whole round trip later; reusing bounds the count's age at the write to one
        and a half round trips, which ``tracking.tolerance_counts`` covers."""
        now_ns = time.monotonic_ns()
        if now_ns >= self._reusable_until_ns:
            self.read(now_ns, force=True)

    def read_at_ns(self, due: int | None) -> int:
        """When to read next: at the next poll, or sooner when the belt should reach *due* (the
        next reject's position; None: none waits) by its recent speed, so that it is fired on a
        reading taken then rather than up to a poll later."""
        if due is None:
            return self.next_read_ns
        eta = self.tracker.wake_ns(due, time.monotonic_ns())
        return self.next_read_ns if eta is None else min(self.next_read_ns, max(eta, self._settled_ns))

    def hold(self, reject: PendingReject) -> None:
        """Place *reject* as soon as a reading at or after its acquisition exists."""
        self.waiting.append(reject)

    def place(self, now_ns: int) -> None:
        """Move placeable rejects into the schedule; report those that can never be placed."""
        still = []
        for r in self.waiting:
            if self.tracker.ready(r.t_acquired_ns):
                due = self.tracker.due(r.t_acquired_ns)
                if due is None:
                    self.ledger.undelivered(r, POSITION_UNKNOWN, "its acquisition is older than the encoder history")
                else:
                    self.schedule.push(replace(r, due_ns=due))
            elif now_ns - r.t_acquired_ns > self.max_wait_ns:
                why = f"no encoder reading since its acquisition ({self._why_none()})"
                self.ledger.undelivered(r, POSITION_UNKNOWN, why)
            else:
                still.append(r)
        self.waiting = still

    def _why_none(self) -> str:
        if self.last_slow_read_ns:
            took = self.last_slow_read_ns / 1e6
            return f"readings took {took:.1f} ms, over tracking.max_read_ms = {self.max_read_ns / 1e6:g}"
        return self.keeper.last_error or "link up"
