"""The one place a reject's fate is written: delivered once, or undelivered with its part id.

Both output modes report through a :class:`Ledger`, which frees the reject's row in the shared
pending table, counts it and writes its single log record. A reject reaches exactly one of
:meth:`Ledger.delivered` or :meth:`Ledger.undelivered`, exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from linegate.counters import Count, SharedCounters
from linegate.plc.pending import PendingTable
from linegate.plc.schedule import PendingReject
from linegate.plc.tracking import EncoderReading


class Ledger:
    """Counts and records each reject's outcome."""

    def __init__(self, table: PendingTable, counters: SharedCounters, log: Any) -> None:
        self.table = table
        self.counters = counters
        self.log = log
        self.on_undelivered: Callable[[str, bool], None] | None = None
        """Told each undelivered result's reason and whether it was a reject (handshake mode latches
        it for the PLC to see)."""

    def delivered(
        self,
        reject: PendingReject,
        t_sent_ns: int,
        t_confirmed_ns: int,
        *,
        free: bool = True,
        position: EncoderReading | None = None,
        **fields: Any,
    ) -> None:
        """The PLC has the reject. Lateness is measured at the write that reached it (never beyond
        the window: a write is only sent while it can still arrive in time): ``late_ms`` against
        the due time, or ``late_counts`` against the due encoder *position* (encoder tracking)."""
        if free:
            self.table.free(reject.row)
        else:
            self.table.mark_on(reject.row)
        if not reject.is_reject:
            self.counters.add(Count.PLC_PASS_DELIVERED)
            self.log.info(
                "result_delivered", part_id=reject.part_id, seq=reject.seq, verdict="pass",
                since_acquired_ms=round((t_sent_ns - reject.t_acquired_ns) / 1e6, 3), **fields,
            )
            return
        self.counters.add(Count.PLC_DELIVERED)
        if position is None:
            fields["late_ms"] = round((t_sent_ns - reject.due_ns) / 1e6, 3)
        else:
            # The count the decision was made on, and its age when the write went out: the belt
            # travels on for that long (and the write's own time) before the ejector can act.
            t_read_ns, counts = position
            fields.update(
                position=counts,
                late_counts=counts - reject.due_ns,
                reading_age_ms=round((t_sent_ns - t_read_ns) / 1e6, 3),
            )
        self.log.info(
            "reject_delivered",
            part_id=reject.part_id,
            seq=reject.seq,
            t_pulse_ns=t_sent_ns,
            since_acquired_ms=round((t_sent_ns - reject.t_acquired_ns) / 1e6, 3),
            confirm_ms=round((t_confirmed_ns - t_sent_ns) / 1e6, 3),
            **fields,
        )

    def undelivered(self, reject: PendingReject, reason: str, error: str = "") -> None:
        """The reject did not reach the PLC (or it cannot be known): the part must be checked by hand."""
        self.table.free(reject.row)
        if self.on_undelivered is not None:
            self.on_undelivered(reason, reject.is_reject)
        if not reject.is_reject:  # a pass result the PLC did not get: it diverts the part or asks for nothing
            self.counters.add(Count.PLC_PASS_UNDELIVERED)
            self.log.warning("result_undelivered", part_id=reject.part_id, seq=reject.seq, verdict="pass",
                             reason=reason, error=error or None)
            return
        self.counters.add(Count.PLC_UNDELIVERED)
        if reason == "delivery_unknown":
            self.counters.add(Count.PLC_DELIVERY_UNKNOWN)
        self.log.error("reject_undelivered", part_id=reject.part_id, seq=reject.seq, reason=reason, error=error or None)
