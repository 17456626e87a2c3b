"""handshake mode: linegate writes results, the PLC acknowledges them and fires the ejector itself.

The words are those of :mod:`linegate.plc.interface`. Each reject becomes a result with the next
sequence number, written with the whole vision block in one request. The PLC acknowledges by
writing that number into ``ack_seq``. Exactly once:

- a write whose reply did not come is simply written again with the *same* sequence number (the
  PLC acts on a number once), after the link is back: that is how its unknown outcome is settled;
- no acknowledgement within ``ack_timeout_ms``: written again, same number (counted as a retry);
- no acknowledgement by the reject's deadline: reported undelivered (``not_acknowledged``); an
  acknowledgement of that number seen later is logged ``result_acknowledged_late``;
- the sequence number continues from the one found in the PLC's copy of the block at the first
  connect, so a restarted linegate never repeats a number the PLC has already acted on.

Up to ``buffer`` results are held until acknowledged (the one in the block and those queued behind
it); one more is reported undelivered (``results_buffer_overrun``). Every undelivered reject sets
the block's error latch (``error_code`` says why, ``undelivered`` counts them) until the PLC's
``clear error`` control bit; ``set offline`` stops new results (each reject is then reported
``plc_offline``). The block also shows the active recipe and whether a recipe switch is under way
or failed.

The vision block goes out every ``alive_ms`` and whenever what it says changes; the PLC block is
read with it (and every ``poll_ms`` while a result waits): a PLC alive counter that stops changing
for ``plc_alive_timeout_ms`` is a fault (``PLC_ALIVE_STALE``), shown in STATUS and the fault code.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from linegate.config.schema import HandshakeSection
from linegate.counters import Count, SharedCounters
from linegate.plc.connection import LinkKeeper
from linegate.plc.interface import (
    ERROR_OF_REASON,
    NO_RECIPE,
    PLC_OFFSET,
    PLC_WORDS,
    Control,
    ErrorCode,
    FaultCode,
    PlcInputs,
    Result,
    Verdict,
    VisionState,
    decode_plc_block,
    encode_vision_block,
    next_seq,
)
from linegate.plc.ledger import Ledger
from linegate.plc.link import PlcLink, PlcLinkError, PlcRefusedError
from linegate.plc.pending import HeldReject, RowState
from linegate.plc.schedule import PendingReject, RejectSchedule

RESULT_SEQ_WORD = 3
LATE_ACK_WATCH = 64


@dataclass
class Outstanding:
    """The result now in the vision block, waiting for its acknowledgement."""

    reject: PendingReject
    seq: int
    t_first_ns: int = 0
    t_last_ns: int = 0
    written: bool = False
    writes: int = 0


class HandshakeMode:
    """The vision block and the results held for the PLC; see the module docstring for the rules."""

    def __init__(
        self,
        link: PlcLink,
        keeper: LinkKeeper,
        ledger: Ledger,
        schedule: RejectSchedule,
        counters: SharedCounters,
        log: Any,
        cfg: HandshakeSection,
        timeout_ms: float,
        *,
        block_keys: str,
        part_ids_from_plc: bool = False,
    ) -> None:
        self.link = link
        self.keeper = keeper
        self.ledger = ledger
        self.schedule = schedule
        self.counters = counters
        self.log = log
        self.cfg = cfg
        self.timeout_ns = int(timeout_ms * 1e6)
        self.alive_ns = int(cfg.alive_ms * 1e6)
        self.poll_ns = int(cfg.poll_ms * 1e6)
        self.ack_timeout_ns = int(cfg.ack_timeout_ms * 1e6)
        self.plc_alive_timeout_ns = int(cfg.plc_alive_timeout_ms * 1e6)
        self.alive = 0
        self.seq = 0
        self.toggle = False
        self.current: Outstanding | None = None
        self.last_result: Result | None = None
        self.fault_code = FaultCode.STARTING
        self.plc: PlcInputs | None = None
        self._seq_known = False
        self._next_alive_ns = 0
        self._next_poll_ns = 0
        self._plc_alive_seen_ns = time.monotonic_ns()
        self._stale = False
        self._late: OrderedDict[int, PendingReject] = OrderedDict()
        self.part_ids_from_plc = part_ids_from_plc
        self.block_keys = block_keys
        # What the PLC is told besides the result (latched until its clear-error bit).
        self.offline = False
        self.control = 0
        self.overrun = False
        self.error = False
        self.error_code = ErrorCode.NONE
        self.undelivered = 0
        self._written: VisionState | None = None
        ledger.on_undelivered = self._latch

    # -- link ----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """After a connect: learn where the sequence stands, write the block (ready as it is, and
        the outstanding result again, same number), read the PLC's. A link error fails the connect
        (the keeper backs off): a PLC that accepts connections but drops the first request is not
        reconnected to in a loop. So does a refusal: without its blocks the handshake cannot run, and
        the reason names the keys that place them."""
        self._plc_alive_seen_ns = time.monotonic_ns()  # judged from this connection on
        try:
            if not self._seq_known:
                found = self.link.read_words(RESULT_SEQ_WORD, 1)[0]
                self.seq = max(self.seq, found)
                self._seq_known = True
                self.log.info("plc_result_seq_continues", last_seq=found)
            self._write(time.monotonic_ns(), connecting=True)
            self._read(time.monotonic_ns(), connecting=True)
        except PlcRefusedError as exc:
            raise PlcLinkError(f"the PLC refuses the handshake blocks ({exc}): check {self.block_keys}") from exc

    def ready(self) -> bool:
        return self.current is None

    def admits(self, queued: int) -> bool:
        """Whether one more result fits in the buffer, with *queued* rejects already behind the current one."""
        return queued + int(self.current is not None) < self.cfg.buffer

    def next_wake_ns(self) -> int | None:
        if self.current is not None:
            return min(self._next_alive_ns, self._next_poll_ns)
        return self._next_alive_ns

    def take_over(self, held: HeldReject, reject: PendingReject) -> bool:
        """Adopt a result a previous worker had written: True if it becomes the outstanding one."""
        if held.state is not RowState.FIRING or held.plc_seq == 0 or self.current is not None:
            return False
        self.current = Outstanding(reject, held.plc_seq, t_first_ns=time.monotonic_ns())
        self.seq = max(self.seq, held.plc_seq)
        self.log.info("result_taken_over", part_id=reject.part_id, seq=reject.seq, plc_seq=held.plc_seq)
        return True

    def service(self, now_ns: int, fault_code: FaultCode) -> None:
        """Alive counter, fault code, re-writes, acknowledgement polls and deadlines."""
        if self._stale:
            fault_code = FaultCode.PLC_ALIVE_STALE
        elif self.offline and fault_code == FaultCode.NONE:
            fault_code = FaultCode.OFFLINE
        cur = self.current
        if self.keeper.connected:
            retry = cur is not None and cur.written and now_ns - cur.t_last_ns >= self.ack_timeout_ns
            if (
                now_ns >= self._next_alive_ns
                or self._state(fault_code) != self._written
                or retry
                or (cur is not None and not cur.written)
            ):
                self.fault_code = fault_code
                self._write(now_ns)
                self._read(now_ns)
            elif cur is not None and now_ns >= self._next_poll_ns:
                self._read(now_ns)
        self.fault_code = fault_code
        self._check_alive(time.monotonic_ns())
        cur = self.current
        if cur is not None and time.monotonic_ns() > self.schedule.deadline_ns(cur.reject):
            self.current = None
            self._late[cur.seq] = cur.reject
            while len(self._late) > LATE_ACK_WATCH:
                self._late.popitem(last=False)
            why = f"not acknowledged (seq {cur.seq}, written {cur.writes}x) before its deadline"
            if not self.keeper.connected:
                why += f"; link down: {self.keeper.last_error}"
            self.ledger.undelivered(cur.reject, "not_acknowledged", why)

    def abandon(self) -> PendingReject | None:
        """At stop: the result still waiting for its acknowledgement, if any, for the caller to report."""
        cur, self.current = self.current, None
        return None if cur is None else cur.reject

    def shutdown(self) -> None:
        """Not ready, fault code STOPPING."""
        if self.keeper.connected:
            self.fault_code = FaultCode.STOPPING
            try:
                self._write_block(time.monotonic_ns())
                self.counters.set(Count.PLC_FAULT, 1)
            except PlcLinkError as exc:
                self.log.error("plc_safe_state_failed", peer=self.link.peer, error=str(exc))

    # -- one reject ----------------------------------------------------------------------------
    def deliver(self, reject: PendingReject) -> None:
        """Write *reject* as the next result (it is then acknowledged, or reported at its deadline)."""
        if self.offline:
            why = "the PLC's control word asks for offline: no results are sent"
            self.ledger.undelivered(reject, "plc_offline", why)
            return
        now = time.monotonic_ns()
        if now + self.timeout_ns > self.schedule.deadline_ns(reject):
            self.counters.add(Count.PLC_LATE)
            self.ledger.undelivered(reject, "too_late", "the result could no longer reach the PLC before its deadline")
            return
        self.seq = next_seq(self.seq)
        self.toggle = not self.toggle
        self.current = Outstanding(reject, self.seq, t_first_ns=now)
        self.ledger.table.mark_firing(reject.row, self.seq)
        if self.keeper.connected:
            self._write(now)
            self._read(time.monotonic_ns())

    # -- words ---------------------------------------------------------------------------------
    def _state(self, fault_code: FaultCode) -> VisionState:
        """The block's status words as they stand (alive counter 0: it is set when written)."""
        c = self.counters
        active = c.get(Count.ACTIVE_RECIPE)
        return VisionState(
            alive=0,
            ready=fault_code == FaultCode.NONE,
            fault_code=fault_code,
            toggle=self.toggle,
            waiting=len(self.schedule),
            online=not self.offline,
            overrun=self.overrun,
            error=self.error,
            error_code=self.error_code,
            undelivered=self.undelivered & 0xFFFF,
            recipe=active - 1 if active else NO_RECIPE,
            recipe_switching=bool(c.get(Count.RECIPE_SWITCHING)),
            recipe_failed=bool(c.get(Count.RECIPE_UNKNOWN) or c.get(Count.RECIPE_FAILED)),
            control_echo=self.control,
        )

    def _latch(self, reason: str, is_reject: bool) -> None:
        """A result was reported undelivered: any one that overran the buffer sets the overrun bit;
        a reject also the error latch (a part to check by hand)."""
        code = ERROR_OF_REASON.get(reason, ErrorCode.OTHER)
        if code is ErrorCode.OVERRUN:
            self.overrun = True
        if is_reject:
            self.undelivered += 1
            self.error, self.error_code = True, code

    def _write(self, now_ns: int, *, connecting: bool = False) -> None:
        """Write the block; a link error loses the link (*connecting*: raised, to fail the connect)."""
        try:
            self._write_block(now_ns)
        except PlcRefusedError as exc:
            if connecting:
                raise
            self.log.error("plc_block_refused", peer=self.link.peer, error=str(exc))
            cur, self.current = self.current, None
            if cur is not None:
                self.ledger.undelivered(cur.reject, "plc_refused", str(exc))
        except PlcLinkError as exc:
            if connecting:
                raise
            self.keeper.lost(exc)  # the outstanding result (if any) is written again after reconnect

    def _write_block(self, now_ns: int) -> None:
        cur = self.current
        if cur is not None:
            r = cur.reject
            self.last_result = Result(cur.seq, r.part_id, Verdict(r.verdict), r.basis, r.class_index, r.score / 10_000)
        self.alive = (self.alive + 1) & 0xFFFF
        state = self._state(self.fault_code)
        words = encode_vision_block(replace(state, alive=self.alive), self.last_result)
        if cur is not None:
            cur.written = False
        t_sent = time.monotonic_ns()
        self.link.write_words(0, words)
        t_reply = time.monotonic_ns()
        self._written = state
        self._next_alive_ns = now_ns + self.alive_ns
        self.counters.set(Count.PLC_FAULT, int(not state.ready))
        if cur is not None:
            if cur.writes:
                self.counters.add(Count.PLC_RETRIES)  # the same seq again (retry, alive tick or reconnect)
            cur.written = True
            cur.writes += 1
            cur.t_last_ns = time.monotonic_ns()
            self.counters.add(Count.PLC_RESULT_WRITES)
            self.counters.add_plc_write_latency(t_reply - t_sent)

    def _read(self, now_ns: int, *, connecting: bool = False) -> None:
        """Read the PLC's block and act on it; as :meth:`_write` for link errors."""
        if not (self.keeper.connected or connecting):
            return
        try:
            inputs = decode_plc_block(self.link.read_words(PLC_OFFSET, PLC_WORDS))
        except PlcLinkError as exc:
            if connecting:
                raise
            self.keeper.lost(exc)
            return
        t_read = time.monotonic_ns()
        self._next_poll_ns = now_ns + self.poll_ns
        previous, self.plc = self.plc, inputs
        if previous is None or inputs.alive != previous.alive:
            self._plc_alive_seen_ns = t_read
        if previous is None or inputs.recipe != previous.recipe:
            self.counters.set(Count.PLC_RECIPE, inputs.recipe + 1)
            if previous is not None:
                self.log.warning("plc_recipe_changed", recipe=inputs.recipe, previous=previous.recipe)
        if inputs.control != self.control:
            self._follow_control(inputs.control)
        if self.part_ids_from_plc:
            self._follow_part_ids(inputs.part_id)
        cur = self.current
        if cur is not None and cur.written and inputs.ack_seq == cur.seq:
            self.current = None
            self.ledger.delivered(
                cur.reject, cur.t_first_ns, t_read, confirmed_by="ack", plc_seq=cur.seq, writes=cur.writes,
                plc_part_id=inputs.part_id,
            )
        elif inputs.ack_seq in self._late:
            late = self._late.pop(inputs.ack_seq)
            self.counters.add(Count.PLC_LATE_ACKS)
            if late.is_reject:
                self.error, self.error_code = True, ErrorCode.ACKNOWLEDGED_LATE
            self.log.error("result_acknowledged_late", part_id=late.part_id, seq=late.seq, plc_seq=inputs.ack_seq)

    def _follow_control(self, control: int) -> None:
        """The PLC's commands: offline is a level, clear-error an edge."""
        rising = control & ~self.control
        self.control = control
        if rising >> Control.CLEAR_ERROR & 1:
            self.log.info("plc_error_cleared", error_code=int(self.error_code), overrun=self.overrun)
            self.error, self.overrun, self.error_code = False, False, ErrorCode.NONE
        offline = bool(control >> Control.SET_OFFLINE & 1)
        if offline != self.offline:
            self.offline = offline
            self.counters.set(Count.PLC_OFFLINE, int(offline))
            if offline:
                self.log.warning("plc_set_offline", action="no results are sent; rejects are reported undelivered")
            else:
                self.log.info("plc_set_online")

    def _follow_part_ids(self, plc_part_id: int) -> None:
        """plc.part_ids = "plc": adopt the PLC's next part id once (the camera waits for it), then
        say when the PLC's numbering and linegate's drift apart by more than one part."""
        c = self.counters
        base = c.get(Count.PART_ID_BASE)
        if not base:
            if plc_part_id:
                c.set(Count.PART_ID_BASE, plc_part_id)
                self.log.info("part_ids_follow_plc", first_part_id=plc_part_id)
            return
        expected = base + c.get(Count.ACQUIRED)
        drift = (plc_part_id - expected + 2**31) % 2**32 - 2**31
        drifted = abs(drift) > 1
        if drifted != bool(c.get(Count.PLC_PART_ID_DRIFT)):
            c.set(Count.PLC_PART_ID_DRIFT, int(drifted))
            if drifted:
                self.log.warning("plc_part_id_drift", plc_part_id=plc_part_id, next_part_id=expected, drift=drift)
            else:
                self.log.info("plc_part_id_in_step", plc_part_id=plc_part_id)

    def _check_alive(self, now_ns: int) -> None:
        """The PLC's alive counter is judged only over a link: while it is down, the fault is the
        link (a PLC never reached is "unreachable", not "not taking results")."""
        if not self.keeper.connected:
            return
        stale = now_ns - self._plc_alive_seen_ns > self.plc_alive_timeout_ns
        if stale == self._stale:
            return
        self._stale = stale
        self.counters.set(Count.PLC_ALIVE_STALE, int(stale))
        if stale:
            self.log.error("plc_alive_stale", since_ms=round((now_ns - self._plc_alive_seen_ns) / 1e6, 1))
        else:
            self.log.info("plc_alive_restored")
