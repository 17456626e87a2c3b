"""pulse mode: linegate times the reject pulse on a PLC output (coil, or DB byte on S7).

Exactly once, per reject:

- ON is written only while it can still arrive in time (:class:`TimeWindow`: ``now + timeout <=
  due + max_late``; :class:`EncoderWindow`: the part is in front of the ejector by the encoder
  read just before).
- ON answered: delivered (logged now; the row stays ON until the OFF edge is confirmed).
- ON refused: undelivered (``plc_refused``), the PLC said no.
- ON not answered: the outcome is unknown and nothing else is fired until it is settled. The
  next connect reads the output back *before* it touches it: ON means the write was applied
  (delivered, ``confirmed_by = read_back``); OFF means it was not, and only then may it be written
  again (within ``retries`` and the window). Not settled before the window closes: undelivered,
  ``delivery_unknown`` (the part must be checked).
- OFF is written at ON + ``pulse_ms`` (measured from the confirmation, so the PLC sees at least
  ``pulse_ms``). OFF is idempotent, so it is repeated until answered; no new pulse starts before.

A residual case no read-back can exclude: a PLC that holds an ON request past the read-back and
applies it later. The handshake mode's sequence numbers do not have that gap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from linegate.counters import Count, SharedCounters
from linegate.plc.connection import LinkKeeper
from linegate.plc.ledger import Ledger
from linegate.plc.link import PlcLink, PlcLinkError, PlcRefusedError
from linegate.plc.schedule import PendingReject, RejectSchedule
from linegate.plc.tracking import EncoderReading, EncoderTracker, where

Decision = Literal["fire", "passed", "wait"]


class FireWindow(Protocol):
    """When a reject may still be fired."""

    def decide(self, reject: PendingReject, now_ns: int) -> Decision:
        """"fire": a write sent now reaches the PLC while the part is in front of the ejector;
        "passed": it cannot any more; "wait": not known now (the reject goes back to the schedule)."""
        ...

    def settle_by_ns(self, reject: PendingReject, t_sent_ns: int) -> int:
        """An unanswered write must be settled (read back) by then, or it is reported unknown."""
        ...

    def position(self) -> EncoderReading | None:
        """The encoder reading the last "fire" was decided on, for the record; None by time."""
        ...


class TimeWindow:
    """Due at acquisition + fire delay; a write must be able to arrive by due + max_late."""

    def __init__(self, schedule: RejectSchedule, timeout_ns: int) -> None:
        self.schedule = schedule
        self.timeout_ns = timeout_ns

    def decide(self, reject: PendingReject, now_ns: int) -> Decision:
        return "fire" if now_ns + self.timeout_ns <= self.schedule.deadline_ns(reject) else "passed"

    def settle_by_ns(self, reject: PendingReject, t_sent_ns: int) -> int:
        return self.schedule.deadline_ns(reject)

    def position(self) -> EncoderReading | None:
        return None


class EncoderWindow:
    """Due at a belt position (``PendingReject.due_ns`` holds it); open while the freshly read
    position is within ``[due, due + tolerance_counts]``."""

    def __init__(self, tracker: EncoderTracker, max_late_ns: int, read_encoder: Callable[[], None]) -> None:
        self.tracker = tracker
        self.max_late_ns = max_late_ns
        self.read_encoder = read_encoder
        self.decided_on: EncoderReading | None = None

    def decide(self, reject: PendingReject, now_ns: int) -> Decision:
        self.read_encoder()
        self.decided_on = self.tracker.reading(time.monotonic_ns())
        if self.decided_on is None:  # this read too slow to be fresh, the link lost: decide later
            return "wait"
        state = where(reject.due_ns, self.tracker.tolerance_counts, self.decided_on.position)
        return "fire" if state == "due" else ("passed" if state == "passed" else "wait")

    def settle_by_ns(self, reject: PendingReject, t_sent_ns: int) -> int:
        return t_sent_ns + self.max_late_ns

    def position(self) -> EncoderReading | None:
        return self.decided_on


@dataclass
class Unsettled:
    """An ON write whose reply did not come."""

    reject: PendingReject
    t_sent_ns: int
    window_end_ns: int
    error: str
    position: EncoderReading | None


class PulseMode:
    """Fires due rejects as pulses; see the module docstring for the rules."""

    def __init__(
        self,
        link: PlcLink,
        keeper: LinkKeeper,
        ledger: Ledger,
        schedule: RejectSchedule,
        counters: SharedCounters,
        log: Any,
        *,
        pulse_ms: float,
        timeout_ms: float,
        retries: int,
        window: FireWindow | None = None,
    ) -> None:
        self.link = link
        self.keeper = keeper
        self.ledger = ledger
        self.schedule = schedule
        self.counters = counters
        self.log = log
        self.pulse_ns = int(pulse_ms * 1e6)
        self.timeout_ns = int(timeout_ms * 1e6)
        self.attempts = 1 + retries
        self.window: FireWindow = window if window is not None else TimeWindow(schedule, self.timeout_ns)
        self.unsettled: Unsettled | None = None
        self.off_pending: PendingReject | None = None
        """ON (or possibly ON), OFF edge not yet confirmed: no new pulse until it is."""
        self.off_due_ns = 0
        self._tries: dict[int, int] = {}
        self._fault_written: bool | None = None

    # -- link ----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """After a connect: settle an unanswered ON by reading it back first, then reject output
        OFF (which also completes an unconfirmed OFF edge)."""
        self._fault_written = None
        if self.unsettled is not None:
            u = self.unsettled
            applied = self.link.read_flag("reject")  # a failure here fails the connect: tried again
            self.counters.add(Count.PLC_READ_BACKS)
            self.unsettled = None
            if applied:
                # The PLC may have applied the ON just before this read-back (a late reply, a held
                # request): pulse_ms is only guaranteed when counted from here.
                self.off_due_ns = self._delivered(u.reject, u.t_sent_ns, "read_back", u.position) + self.pulse_ns
                return  # OFF when the pulse has lasted long enough (service)
            self._not_applied(u)
        if self.off_pending is None or time.monotonic_ns() >= self.off_due_ns:
            self.link.write_flag("reject", False)
            self._off_confirmed()

    def ready(self) -> bool:
        return self.unsettled is None and self.off_pending is None

    def next_wake_ns(self) -> int | None:
        if self.off_pending is not None:
            return self.off_due_ns
        if self.unsettled is not None:
            return self.unsettled.window_end_ns
        return None

    def service(self, now_ns: int, fault: bool) -> None:
        """Give up on an ON that cannot be settled in time; OFF edge when due; fault output."""
        u = self.unsettled
        if u is not None and now_ns > u.window_end_ns:
            self.unsettled = None
            self.ledger.undelivered(u.reject, "delivery_unknown", f"no reply, and no read-back in time: {u.error}")
            self.off_pending = replace(u.reject, row=-1)  # the output may be ON: OFF before anything else
            self.off_due_ns = now_ns
        if not self.keeper.connected:
            return
        try:
            if self.off_pending is not None and now_ns >= self.off_due_ns:
                self.link.write_flag("reject", False)
                self._off_confirmed()
            if fault != self._fault_written and self.link.has_flag("fault"):
                self.link.write_flag("fault", fault)
                self._fault_written = fault
                self.counters.set(Count.PLC_FAULT, int(fault))
        except PlcRefusedError as exc:
            self.log.error("plc_output_refused", peer=self.link.peer, error=str(exc))
            self._fault_written = fault
        except PlcLinkError as exc:
            self.keeper.lost(exc)

    def abandon(self) -> PendingReject | None:
        """At stop: the unsettled reject, if any, for the caller to report (its ON may be on)."""
        u, self.unsettled = self.unsettled, None
        if u is None:
            return None
        self.off_pending = replace(u.reject, row=-1)
        self.off_due_ns = 0
        return u.reject

    def shutdown(self) -> None:
        """Reject OFF, fault ON (linegate no longer inspects)."""
        if not self.keeper.connected:
            return
        try:
            self.link.write_flag("reject", False)
            self._off_confirmed()
            if self.link.has_flag("fault"):
                self.link.write_flag("fault", True)
                self.counters.set(Count.PLC_FAULT, 1)
        except PlcLinkError as exc:
            self.log.error("plc_safe_state_failed", peer=self.link.peer, error=str(exc))

    # -- one reject ----------------------------------------------------------------------------
    def deliver(self, reject: PendingReject) -> None:
        """Fire *reject* (due now, link up, nothing unsettled)."""
        decision = self.window.decide(reject, time.monotonic_ns())
        if decision == "wait":
            self.schedule.push(reject)
            return
        if decision == "passed":
            self.counters.add(Count.PLC_LATE)
            self._tries.pop(reject.seq, None)
            self.ledger.undelivered(reject, "too_late", "the part would be past the ejector before a write lands")
            return
        self.ledger.table.mark_firing(reject.row)
        t_sent = time.monotonic_ns()
        position = self.window.position()
        try:
            self.link.write_part_id(reject.part_id)
            self.link.write_flag("reject", True)
        except PlcRefusedError as exc:
            self._tries.pop(reject.seq, None)
            self.ledger.undelivered(reject, "plc_refused", str(exc))
            return
        except PlcLinkError as exc:
            self.unsettled = Unsettled(reject, t_sent, self.window.settle_by_ns(reject, t_sent), str(exc), position)
            self.keeper.lost(exc)
            return
        t_on = self._delivered(reject, t_sent, "reply", position)
        self.counters.add_plc_write_latency(t_on - t_sent)  # part id and ON written, both answered
        self.off_due_ns = t_on + self.pulse_ns
        remaining = self.off_due_ns - time.monotonic_ns()
        if remaining > 0:
            time.sleep(remaining / 1e9)
        try:
            self.link.write_flag("reject", False)
        except PlcLinkError as exc:  # OFF is repeated (by service or the next connect) until answered
            self.log.warning("reject_off_unconfirmed", part_id=reject.part_id, error=str(exc))
            self.keeper.lost(exc)
            return
        self._off_confirmed()

    def _delivered(
        self, reject: PendingReject, t_sent: int, confirmed_by: str, position: EncoderReading | None
    ) -> int:
        t_on = time.monotonic_ns()
        self._tries.pop(reject.seq, None)
        self.ledger.delivered(reject, t_sent, t_on, free=False, position=position, confirmed_by=confirmed_by)
        self.off_pending = reject
        return t_on

    def _not_applied(self, u: Unsettled) -> None:
        """Read back OFF: the ON never took effect; try again while attempts and the window allow."""
        tries = self._tries.get(u.reject.seq, 0) + 1
        if tries < self.attempts:
            self._tries[u.reject.seq] = tries
            self.counters.add(Count.PLC_RETRIES)
            self.ledger.table.mark_pending(u.reject.row)
            self.schedule.push(u.reject)
            return
        self._tries.pop(u.reject.seq, None)
        self.ledger.undelivered(u.reject, "not_applied", f"read back OFF after {tries} attempts: {u.error}")

    def _off_confirmed(self) -> None:
        if self.off_pending is not None:
            self.ledger.table.free(self.off_pending.row)
            self.off_pending = None
