"""The PLC worker process entry."""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any

from linegate.counters import Count
from linegate.logs import Sink, shutdown_logging
from linegate.pipeline.baton import HANDOVER_TIMEOUT_S, Baton
from linegate.pipeline.context import WorkerContext
from linegate.plc.links import create_link
from linegate.plc.pending import PendingTable
from linegate.plc.reject_pipe import Reject, RejectInbox
from linegate.plc.worker import RejectWorker
from linegate.roles import Role


class _ReportingInbox:
    """The reject inbox; each take (about every 50 ms) also publishes this worker's log totals."""

    def __init__(self, inbox: RejectInbox, ctx: WorkerContext, sink: Sink) -> None:
        self._inbox = inbox
        self._ctx = ctx
        self._sink = sink

    def take(self, timeout_s: float) -> list[Reject]:
        self._ctx.report_logs(Role.PLC, self._sink, time.monotonic_ns())
        return self._inbox.take(timeout_s)


def plc_main(
    ctx: WorkerContext,
    rejects: Connection,
    stop: Any,
    ready: Any,
    table: PendingTable,
    own: Baton,
    predecessor: Baton | None,
) -> None:
    """Own the PLC link until *stop* (deliver what is pending, bounded, then safe state) or until a
    successor takes the baton (pending rejects stay in *table* for it)."""
    log, sink = ctx.enter(Role.PLC)
    counters = ctx.counters
    try:
        if predecessor is not None:
            beat = lambda: counters.set(Count.PLC_HEARTBEAT_NS, time.monotonic_ns())  # noqa: E731
            if not predecessor.take(beat, HANDOVER_TIMEOUT_S):
                log.warning("plc_handover_timeout", waited_s=HANDOVER_TIMEOUT_S, action="taking over anyway")
        worker = RejectWorker(ctx.cfg.plc, create_link(ctx.cfg.plc), counters, log, table)
        worker.take_over()
        ready.set()
        inbox = _ReportingInbox(RejectInbox(rejects), ctx, sink)
        handed_over = worker.run(inbox, stop, ctx.cfg.plc.drain_timeout_ms / 1000, own.handover)
        log.info("plc_handed_over" if handed_over else "plc_stopped")
    finally:
        own.released.set()
        ctx.report_logs(Role.PLC, sink, None)
        shutdown_logging()
