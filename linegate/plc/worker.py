"""The PLC worker: owns the PLC link, fires reject pulses on schedule, never loses a reject silently.

It runs in its own process. The inference loop hands it ``(part_id, seq, t_acquired_ns)`` through
a bounded queue and never waits for it. Each reject ends in exactly one log record: delivered, or
undelivered with the part id and the reason. Rejects it holds live in a shared pending table, so a
restarted worker takes them over. While the PLC is unreachable rejects are held (bounded by the
table) until they can still be fired in time or ``max_late`` expires them. After every (re)connect
the outputs are put in their safe state before anything else.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from linegate.config.schema import PlcSection
from linegate.pipeline.counters import Count, SharedCounters
from linegate.plc.modbus import PlcLinkError, PlcRefusedError
from linegate.plc.output import RejectOutput
from linegate.plc.pending import PendingTable, RowState
from linegate.plc.schedule import PendingReject, RejectSchedule
from linegate.timing.backoff import Backoff

IDLE_POLL_NS = 50_000_000


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


class Inbox(Protocol):
    """Where rejects arrive: ``take`` waits up to *timeout_s* and returns all that arrived."""

    def take(self, timeout_s: float) -> list[tuple[int, int, int]]: ...


class RejectWorker:
    """Delivery loop over one :class:`RejectOutput`."""

    def __init__(
        self,
        cfg: PlcSection,
        output: RejectOutput,
        counters: SharedCounters,
        log: Any,
        table: PendingTable | None = None,
    ) -> None:
        self.cfg = cfg
        self.output = output
        self.counters = counters
        self.log = log
        self.table = table if table is not None else PendingTable.local(cfg.queue_size)
        self.schedule = RejectSchedule(int(cfg.fire_delay_ms * 1e6), int(cfg.max_late_ms * 1e6))
        self.backoff = Backoff(int(cfg.reconnect_min_ms * 1e6), int(cfg.reconnect_max_ms * 1e6))
        self.connected = False
        self._next_connect_ns = 0
        self._pulse_ns = int(cfg.pulse_ms * 1e6)
        self._attempts = 1 + cfg.modbus.retries
        self._fault_written: bool | None = None
        self.last_error = "not connected yet"

    # -- link -------------------------------------------------------------------------------
    def ensure_connected(self, now_ns: int) -> bool:
        """Connect when due by the backoff; on success reset outputs to safe state first."""
        if self.connected:
            return True
        if now_ns < self._next_connect_ns:
            return False
        try:
            self.output.connect()
            try:
                self.output.safe_state()
            except PlcRefusedError as exc:  # the link works; each reject will be reported as refused
                self.log.error("plc_safe_state_refused", peer=self.output.peer, error=str(exc))
            self._fault_written = None
        except PlcLinkError as exc:
            self.output.close()
            self.last_error = str(exc)
            delay = self.backoff.next_delay_ns()
            self._next_connect_ns = time.monotonic_ns() + delay
            self.log.warning("plc_connect_failed", peer=self.output.peer, error=str(exc), retry_in_ms=delay / 1e6)
            return False
        self.connected = True
        self.backoff.reset()
        self.counters.set(Count.PLC_CONNECTED, 1)
        self.counters.add(Count.PLC_RECONNECTS)
        self.log.info("plc_connected", peer=self.output.peer)
        return True

    def _link_lost(self, exc: PlcLinkError) -> None:
        self.output.close()
        self.connected = False
        self.last_error = str(exc)
        self.counters.set(Count.PLC_CONNECTED, 0)
        self._next_connect_ns = 0  # first reconnect at once, then back off
        self.log.warning("plc_link_lost", peer=self.output.peer, error=str(exc))

    def sync_fault(self) -> None:
        """Mirror "not inspecting" (from the supervisor) on the PLC's fault coil, when it changes."""
        fault = self.counters.get(Count.INSPECTING) == 0
        if not self.connected or fault == self._fault_written:
            return
        try:
            self.output.set_fault(fault)
        except PlcLinkError as exc:
            self._link_lost(exc)
            return
        self._fault_written = fault
        self.counters.set(Count.PLC_FAULT, int(fault))

    # -- rejects ----------------------------------------------------------------------------
    def take_over(self) -> None:
        """Adopt the rejects a previous PLC worker left in the shared table."""
        for held in self.table.held():
            if held.state is RowState.FIRING:
                reject = PendingReject(held.t_acquired_ns, held.part_id, held.seq, held.t_acquired_ns, held.row)
                why = "the previous PLC worker died while writing this pulse; check the part"
                self._undelivered(reject, "delivery_unknown", why)
            else:
                self.schedule.add(held.part_id, held.seq, held.t_acquired_ns, held.row)
                self.log.info("reject_taken_over", part_id=held.part_id, seq=held.seq)

    def accept(self, item: tuple[int, int, int]) -> None:
        part_id, seq, t_acquired_ns = item
        self.counters.add(Count.PLC_RECEIVED)
        row = self.table.put(part_id, seq, t_acquired_ns)
        if row is None:
            reject = PendingReject(t_acquired_ns, part_id, seq, t_acquired_ns)
            self._undelivered(reject, "plc_queue_full", f"{self.table.capacity} rejects already wait for the PLC")
            return
        self.schedule.add(part_id, seq, t_acquired_ns, row)

    def fire(self, reject: PendingReject) -> bool:
        """One pulse for *reject*, retrying over reconnects; True when the rising edge was written.

        When the link cannot be brought back now, the reject goes back into the schedule: it is
        fired after a reconnect or, once ``max_late`` has passed, reported undelivered.
        """
        if reject.row >= 0:
            self.table.mark_firing(reject.row)
        for attempt in range(self._attempts):
            if attempt:
                self.counters.add(Count.PLC_RETRIES)
            if not self.ensure_connected(time.monotonic_ns()):
                break
            try:
                self.output.write_part_id(reject.part_id)
                self.output.set_reject(True)
            except PlcRefusedError as exc:  # retrying cannot help: the PLC refuses this address
                self._undelivered(reject, "plc_refused", str(exc))
                return False
            except PlcLinkError as exc:
                self._link_lost(exc)
                continue
            t_on = time.monotonic_ns()
            self._sleep_until(t_on + self._pulse_ns)
            try:
                self.output.set_reject(False)
            except PlcLinkError as exc:
                # The edge was delivered; the coil is reset to safe state on reconnect.
                self._link_lost(exc)
            self._delivered(reject, t_on)
            return True
        if reject.row >= 0:
            self.table.mark_pending(reject.row)
        self.schedule.push(reject)
        return False

    def _delivered(self, reject: PendingReject, t_on_ns: int) -> None:
        self.table.free(reject.row)
        self.counters.add(Count.PLC_DELIVERED)
        late_ns = t_on_ns - reject.due_ns
        self.log.info(
            "reject_delivered",
            part_id=reject.part_id,
            seq=reject.seq,
            t_pulse_ns=t_on_ns,
            late_ms=round(late_ns / 1e6, 3),
            since_acquired_ms=round((t_on_ns - reject.t_acquired_ns) / 1e6, 3),
        )

    def _undelivered(self, reject: PendingReject, reason: str, error: str = "") -> None:
        self.table.free(reject.row)
        self.counters.add(Count.PLC_UNDELIVERED)
        self.log.error("reject_undelivered", part_id=reject.part_id, seq=reject.seq, reason=reason, error=error or None)

    # -- loop -------------------------------------------------------------------------------
    def step(self, inbox: Inbox, now_ns: int) -> None:
        """Take what arrived (waiting at most until the next due pulse), expire, fire one due pulse."""
        self.ensure_connected(now_ns)
        self.sync_fault()
        due = self.schedule.next_due_ns()
        wait_ns = IDLE_POLL_NS if due is None or not self.connected else max(0, min(IDLE_POLL_NS, due - now_ns))
        for item in inbox.take(wait_ns / 1e9):
            self.accept(item)
        now_ns = time.monotonic_ns()
        for reject in self.schedule.pop_expired(now_ns):
            self.counters.add(Count.PLC_LATE)
            if self.connected:
                self._undelivered(reject, "too_late", f"not fired within {self.cfg.max_late_ms} ms of its due time")
            else:
                self._undelivered(reject, "plc_unreachable", self.last_error)
        if self.connected:
            due_reject = self.schedule.pop_due(now_ns)
            if due_reject is not None:
                self.fire(due_reject)
        self.counters.set(Count.PLC_PENDING, len(self.schedule))

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
                self.output.close()
            else:
                self.shutdown()

    def drain(self, inbox: Inbox, timeout_s: float) -> None:
        """Fire everything queued or scheduled until *timeout_s* runs out; the rest is undelivered."""
        end = time.monotonic_ns() + int(timeout_s * 1e9)
        while time.monotonic_ns() < end:
            arrived = inbox.take(0.05)
            for item in arrived:
                self.accept(item)
            if not arrived and not len(self.schedule):
                break
            self.counters.set(Count.PLC_HEARTBEAT_NS, time.monotonic_ns())
            self.step(inbox, time.monotonic_ns())
        for item in inbox.take(0):
            self.accept(item)
        for reject in self.schedule.drain():
            self._undelivered(reject, "shutdown", "stopped before the pulse could be fired")
        self.counters.set(Count.PLC_PENDING, 0)

    def shutdown(self) -> None:
        """Outputs safe (reject off, fault on: linegate no longer inspects), then disconnect."""
        if self.connected:
            try:
                self.output.safe_state()
                self.output.set_fault(True)
                self.counters.set(Count.PLC_FAULT, 1)
            except PlcLinkError as exc:
                self.log.error("plc_safe_state_failed", peer=self.output.peer, error=str(exc))
        self.output.close()
        self.connected = False
        self.counters.set(Count.PLC_CONNECTED, 0)

    @staticmethod
    def _sleep_until(t_ns: int) -> None:
        remaining = t_ns - time.monotonic_ns()
        if remaining > 0:
            time.sleep(remaining / 1e9)
