"""The PLC worker process entry."""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any

from linegate.logs import Sink, shutdown_logging
from linegate.pipeline.baton import HANDOVER_TIMEOUT_S, Baton, LetGo
from linegate.pipeline.context import WorkerContext
from linegate.pipeline.inflight import InFlight
from linegate.plc.links import create_link
from linegate.plc.pending import PendingTable
from linegate.plc.reject_pipe import Reject, RejectInbox
from linegate.plc.worker import RejectWorker
from linegate.roles import Role

POLL_LEAD_NS = 300_000
"""The PLC worker starts polling this long before the verdict is due."""


class _ReportingInbox:
    """The reject inbox; each take (about every 50 ms) also publishes this worker's log totals.

    While the inference loop is deciding a frame (*inflight*), a take polls the pipe for up to
    *poll_max_ns* instead of sleeping in the kernel: a sleeping process is woken 0.1-0.3 ms after
    the verdict arrives on a busy machine, and that wake-up is on every reject's way to the PLC.
    Polling starts :data:`POLL_LEAD_NS` before the verdict is due (the path's p50 at warm-up):
    for a model of tens of milliseconds it used to spin its whole window at the start of each
    frame, 13% of a CPU in a ResNet-18 overload on the 2-CPU VM. Nor does it poll for a frame taken
    while others wait (:data:`~linegate.pipeline.inflight.BACKLOG_DUE`).
    """

    def __init__(
        self, inbox: RejectInbox, ctx: WorkerContext, sink: Sink, inflight: InFlight | None = None, poll_max_ns: int = 0
    ) -> None:
        self._inbox = inbox
        self._ctx = ctx
        self._sink = sink
        self._inflight = inflight if poll_max_ns > 0 else None
        self._poll_max_ns = poll_max_ns

    def take(self, timeout_s: float) -> list[Reject]:
        now = time.monotonic_ns()
        self._ctx.report_logs(Role.PLC, self._sink, now)
        inflight, inbox = self._inflight, self._inbox
        due_ns = inflight.poll_due_ns() if inflight is not None and timeout_s > 0 else None
        if inflight is not None and due_ns is not None:
            lead_ns = due_ns - POLL_LEAD_NS - now
            if lead_ns > 0:  # not due yet: sleep until shortly before it is
                wait_ns = min(lead_ns, int(timeout_s * 1e9))
                arrived = inbox.take(wait_ns / 1e9)
                if arrived:
                    return arrived
                if not inflight.deciding:  # handed off just as the wait ended: one last look
                    return inbox.take(0)
                timeout_s -= wait_ns / 1e9
                now = time.monotonic_ns()
                if timeout_s <= 0:
                    return []
            end = now + min(self._poll_max_ns, int(timeout_s * 1e9))
            while True:
                arrived = inbox.take(0)
                if arrived:
                    return arrived
                if not inflight.deciding:  # handed off (or done): one last look, then sleep as usual
                    return inbox.take(0)
                now = time.monotonic_ns()
                if now >= end:
                    break
            timeout_s = max(0.0, timeout_s - self._poll_max_ns / 1e9)
        return inbox.take(timeout_s)


def plc_main(
    ctx: WorkerContext,
    rejects: Connection,
    stop: Any,
    ready: Any,
    table: PendingTable,
    own: Baton,
    predecessor: Baton | None,
    inflight: InFlight | None = None,
) -> None:
    """Own the PLC link until *stop* (deliver what is pending, bounded, then safe state) or until a
    successor takes the baton (pending rejects stay in *table* for it)."""
    log, sink = ctx.enter(Role.PLC)
    counters = ctx.counters
    try:
        if predecessor is not None:
            predecessor.take(HANDOVER_TIMEOUT_S, "PLC")
        worker = RejectWorker(ctx.cfg.plc, create_link(ctx.cfg.plc), counters, log, table)
        worker.take_over()
        ready.set()
        poll_ns = ctx.cfg.scheduling.plc_poll_max_us * 1000
        inbox = _ReportingInbox(RejectInbox(rejects), ctx, sink, inflight, poll_ns)
        handed_over = worker.run(inbox, stop, ctx.cfg.plc.drain_timeout_ms / 1000, LetGo(own))
        log.info("plc_handed_over" if handed_over else "plc_stopped")
    finally:
        own.released.set()
        ctx.report_logs(Role.PLC, sink, None)
        shutdown_logging()
