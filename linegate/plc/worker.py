"""The PLC worker: owns the PLC link, delivers every reject exactly once or reports it by part id.

It runs in its own process. The inference loop hands it rejects through the reject pipe and never
waits for it. Rejects it holds live in a shared pending table, so a restarted (or reloaded) worker
takes them over. While the PLC is unreachable rejects are held (bounded by the table) while they
can still reach it in time; after that they are reported. After every connect the outputs are
put in their safe state first. What a delivery is depends on ``plc.mode``: a timed pulse
(:mod:`linegate.plc.pulse`) or an acknowledged result (:mod:`linegate.plc.handshake`).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from linegate.config.schema import PlcSection
from linegate.counters import Count, SharedCounters
from linegate.plc.connection import LinkKeeper
from linegate.plc.encoder_feed import EncoderFeed
from linegate.plc.handshake import HandshakeMode
from linegate.plc.interface import FaultCode
from linegate.plc.ledger import Ledger
from linegate.plc.link import PlcLink
from linegate.plc.pending import PendingTable, RowState, pack_result, unpack_result
from linegate.plc.pulse import EncoderWindow, FireWindow, PulseMode
from linegate.plc.recent_rejects import RecentRejects
from linegate.plc.reject_pipe import REJECT, Reject
from linegate.plc.schedule import PendingReject, RejectSchedule
from linegate.plc.tracking import EncoderTracker, tracker_for
from linegate.timing.backoff import Backoff

IDLE_POLL_NS = 50_000_000


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


class Inbox(Protocol):
    """Where rejects arrive: ``take`` waits up to *timeout_s* and returns all that arrived."""

    def take(self, timeout_s: float) -> list[Reject]: ...


def fault_code(counters: SharedCounters) -> FaultCode:
    """Why linegate is not inspecting, from the supervisor's and workers' shared cells."""
    if counters.get(Count.INSPECTING):
        return FaultCode.NONE
    if not counters.get(Count.READY):
        return FaultCode.STARTING
    for count, code in _FAULT_OF_COUNT:
        if counters.get(count):
            return code
    return FaultCode.WORKER_RESTARTING


_FAULT_OF_COUNT = (
    (Count.CAMERA_DOWN, FaultCode.CAMERA_DOWN),
    (Count.AWAITING_PART_ID, FaultCode.AWAITING_PART_ID),
    (Count.PLC_ALIVE_STALE, FaultCode.PLC_ALIVE_STALE),
    (Count.RECIPE_UNKNOWN, FaultCode.RECIPE_NOT_APPLIED),
    (Count.RECIPE_FAILED, FaultCode.RECIPE_NOT_APPLIED),
    (Count.PLC_OFFLINE, FaultCode.OFFLINE),
)
"""The fault code the PLC is shown while not inspecting, first match (the rest: a worker is down)."""


def block_keys(cfg: PlcSection) -> str:
    """The configuration keys that place the interface blocks on the PLC (named when it refuses them)."""
    return "plc.modbus.register_base" if cfg.protocol == "modbus" else "plc.s7.db and plc.s7.byte_base"


class RejectWorker:
    """Delivery loop over one :class:`PlcLink` in the configured mode."""

    def __init__(
        self,
        cfg: PlcSection,
        link: PlcLink,
        counters: SharedCounters,
        log: Any,
        table: PendingTable | None = None,
    ) -> None:
        self.cfg = cfg
        self.link = link
        self.counters = counters
        self.log = log
        self.table = table if table is not None else PendingTable.local(cfg.queue_size)
        self.ledger = Ledger(self.table, counters, log)
        self.recent = RecentRejects()
        max_late_ns, delay_ns = int(cfg.max_late_ms * 1e6), int(cfg.fire_delay_ms * 1e6)
        backoff = Backoff(int(cfg.reconnect_min_ms * 1e6), int(cfg.reconnect_max_ms * 1e6))
        section = cfg.link
        assert section is not None  # the config requires the protocol's section
        self.keeper = LinkKeeper(link, backoff, counters, log, self._prepare, int(section.timeout_ms * 1e6))
        self.mode: PulseMode | HandshakeMode
        self.feed: EncoderFeed | None = None
        self.tracker = tracker_for(cfg)
        if cfg.mode == "pulse":
            self.schedule = self.tracker.new_schedule()
            window: FireWindow | None = None
            if isinstance(self.tracker, EncoderTracker):
                feed = self.feed = EncoderFeed(
                    link, self.keeper, self.tracker, self.ledger, self.schedule, log,
                    poll_ms=cfg.tracking.poll_ms, max_read_ms=cfg.tracking.max_read_ms,
                    max_wait_ms=cfg.max_late_ms, counters=counters, block_keys=block_keys(cfg),
                )
                window = EncoderWindow(self.tracker, max_late_ns, feed.refresh)
            self.mode = PulseMode(
                link, self.keeper, self.ledger, self.schedule, counters, log,
                pulse_ms=cfg.pulse_ms, timeout_ms=section.timeout_ms, retries=section.retries,
                window=window,
            )
        else:
            # The PLC times the ejector: a result goes out at once and must be acknowledged before
            # the part reaches the ejector's window end.
            self.schedule = RejectSchedule(0, delay_ns + max_late_ns)
            self.mode = HandshakeMode(
                link, self.keeper, self.ledger, self.schedule, counters, log, cfg.handshake, section.timeout_ms,
                part_ids_from_plc=cfg.part_ids == "plc", block_keys=block_keys(cfg),
            )

    @property
    def connected(self) -> bool:
        return self.keeper.connected

    def _prepare(self) -> None:
        self.mode.prepare()

    def _service(self, now_ns: int) -> None:
        code = fault_code(self.counters)
        if isinstance(self.mode, PulseMode):
            self.mode.service(now_ns, code != FaultCode.NONE)
        else:
            self.mode.service(now_ns, code)

    # -- rejects ----------------------------------------------------------------------------
    def take_over(self) -> None:
        """Adopt the rejects a previous PLC worker left in the shared table."""
        for held in self.table.held():
            verdict, basis, class_index, score = unpack_result(held.result)
            reject = self.schedule.make(
                held.part_id, held.seq, held.t_acquired_ns, held.row, basis, class_index, score, verdict
            )
            if held.state is RowState.ON:  # delivered and logged; the first connect writes its OFF edge
                self.table.free(held.row)
            elif isinstance(self.mode, HandshakeMode) and self.mode.take_over(held, reject):
                pass  # written with a sequence number: written again, the PLC acts on the number once
            elif held.state is RowState.FIRING:
                why = "the previous PLC worker died while writing this reject; check the part"
                self.ledger.undelivered(reject, "delivery_unknown", why)
            else:
                self._schedule(reject)
                self.log.info("reject_taken_over", part_id=held.part_id, seq=held.seq)

    def accept(self, item: Reject) -> None:
        i = item
        if i.verdict == REJECT:
            if not self.recent.first_time(i.seq, i.part_id):
                self.log.warning("reject_duplicate_ignored", part_id=i.part_id, seq=i.seq,
                                 reason="this frame's reject was already received (sent again by the "
                                        "successor of an inference worker killed as it handed it off)")  # fmt: skip
                return
            self.counters.add(Count.PLC_RECEIVED)
        row = self.table.put(i.part_id, i.seq, i.t_acquired_ns, pack_result(i.verdict, i.basis, i.class_index, i.score))
        if row is None:
            reject = PendingReject(i.t_acquired_ns, i.part_id, i.seq, i.t_acquired_ns, verdict=i.verdict)
            self.ledger.undelivered(reject, "plc_queue_full", f"{self.table.capacity} results already wait for the PLC")
            return
        reject = self.schedule.make(i.part_id, i.seq, i.t_acquired_ns, row, i.basis, i.class_index, i.score, i.verdict)
        self._schedule(reject)

    def _schedule(self, reject: PendingReject) -> None:
        """By time: due now known. By encoder: placed once a reading after its acquisition exists."""
        if self.feed is not None:
            self.feed.hold(reject)
        elif isinstance(self.mode, HandshakeMode) and not self.mode.admits(len(self.schedule)):
            self.counters.add(Count.PLC_OVERRUNS)
            why = f"{self.cfg.handshake.buffer} results already wait for the PLC's acknowledgement"
            self.ledger.undelivered(reject, "results_buffer_overrun", why)
        else:
            self.schedule.push(reject)

    # -- loop -------------------------------------------------------------------------------
    def step(self, inbox: Inbox, now_ns: int) -> None:
        """Link, periodic outputs, take what arrived (waiting at most until something is due),
        expire what can no longer be delivered, deliver one due reject."""
        self.keeper.ensure(now_ns)
        self._service(now_ns)
        wait_ns = IDLE_POLL_NS
        due = self.schedule.next_due_ns() if self.connected and self.mode.ready() else None
        read_at = None
        if self.feed is not None:
            if self.connected:  # encoder tracking: due is a position; read when it should be reached
                read_at = self.feed.read_at_ns(due)
                wait_ns = min(wait_ns, read_at - now_ns)
        elif due is not None:
            wait_ns = min(wait_ns, due - now_ns)
        wake = self.mode.next_wake_ns()
        if wake is not None and (self.connected or wake > now_ns):
            wait_ns = min(wait_ns, wake - now_ns)
        if not self.connected:
            # What the mode has due now (alive counter, OFF edge, ...) needs the link: wait for the
            # next connect attempt, not in a loop (a PLC away for minutes must not cost a CPU).
            wait_ns = min(wait_ns, self.keeper.next_attempt_ns - now_ns)
        for item in inbox.take(max(0, wait_ns) / 1e9):
            self.accept(item)
        now_ns = time.monotonic_ns()
        if self.feed is not None:
            if read_at is not None:
                self.feed.read(now_ns, force=now_ns >= read_at)
            self.feed.place(now_ns)
        current = self.tracker.current(now_ns)
        if current is None:  # no fresh encoder reading (link down, slow reads): nothing is fired blind
            self._expire_by_link(now_ns)
        reached = self.tracker.reached(now_ns)  # what has passed is known from any reading, however old
        for reject in self.schedule.pop_expired(reached) if reached is not None else ():
            self.counters.add(Count.PLC_LATE)
            if self.connected:
                reason = self.tracker.passed_reason(reject.due_ns)
                self.ledger.undelivered(reject, reason, "its part has passed the ejector")
            else:
                self.ledger.undelivered(reject, "plc_unreachable", self.keeper.last_error)
        if self.connected and self.mode.ready() and current is not None:
            due_reject = self.schedule.pop_due(current)
            if due_reject is not None:
                self.mode.deliver(due_reject)
        self.counters.set(Count.PLC_PENDING, len(self.schedule) + int(not self.mode.ready()))

    def _expire_by_link(self, now_ns: int) -> None:
        """Encoder tracking without a fresh reading: while the link is down, rejects held longer
        than max_late_ms are reported (those the belt has certainly passed, by any reading, are
        reported by the caller); otherwise nothing is fired until a fresh reading."""
        if self.connected:
            return
        limit = now_ns - int(self.cfg.max_late_ms * 1e6)
        for reject in self.schedule.drain():
            if reject.t_acquired_ns >= limit:
                self.schedule.push(reject)
            else:
                self.counters.add(Count.PLC_LATE)
                self.ledger.undelivered(reject, "plc_unreachable", self.keeper.last_error)

    def busy(self) -> bool:
        """Rejects still waiting or a delivery still open."""
        waiting = len(self.feed.waiting) if self.feed is not None else 0
        return bool(len(self.schedule) + waiting) or not self.mode.ready()

    def run(
        self,
        inbox: Inbox,
        stop: StopFlag,
        drain_timeout_s: float = 2.0,
        handover: StopFlag | None = None,
    ) -> bool:
        """Serve until *stop* (drain, report, safe state) or *handover* (leave pending rejects in
        the table for the successor). Returns True when it handed over. Call :meth:`take_over`
        first when a previous worker may have left rejects."""
        handed_over = False
        try:
            while not stop.is_set():
                if handover is not None and handover.is_set():
                    handed_over = True
                    return True
                self.counters.set(Count.PLC_HEARTBEAT_NS, time.monotonic_ns())
                self.step(inbox, time.monotonic_ns())
            self.drain(inbox, drain_timeout_s)
            return False
        finally:
            if handed_over:
                self.keeper.close()
            else:
                self.shutdown()

    def drain(self, inbox: Inbox, timeout_s: float) -> None:
        """Deliver everything queued or scheduled until *timeout_s* runs out; the rest is undelivered."""
        end = time.monotonic_ns() + int(timeout_s * 1e9)
        while time.monotonic_ns() < end:
            arrived = inbox.take(0)
            for item in arrived:
                self.accept(item)
            if not arrived and not self.busy():
                break
            self.counters.set(Count.PLC_HEARTBEAT_NS, time.monotonic_ns())
            self.step(inbox, time.monotonic_ns())
        for item in inbox.take(0):
            self.accept(item)
        open_delivery = self.mode.abandon()
        if open_delivery is not None:
            why = "stopped before the write was confirmed (no reply, not read back); check the part"
            self.ledger.undelivered(open_delivery, "delivery_unknown", why)
        for reject in self.schedule.drain():
            self.ledger.undelivered(reject, "shutdown", "stopped before the reject could be delivered")
        if self.feed is not None:  # encoder tracking: not placed yet (no reading since its acquisition)
            for reject in self.feed.waiting:
                self.ledger.undelivered(reject, "shutdown", "stopped before the part's position was known")
            self.feed.waiting.clear()
        self.counters.set(Count.PLC_PENDING, 0)

    def shutdown(self) -> None:
        """Outputs safe (pulse: reject off, fault on; handshake: not ready, STOPPING), then disconnect."""
        self.mode.shutdown()
        self.keeper.close()
