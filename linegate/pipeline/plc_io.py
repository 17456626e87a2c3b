"""The PLC worker process entry."""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import Any

from linegate.logs import shutdown_logging
from linegate.pipeline.context import WorkerContext
from linegate.pipeline.handoff import RejectInbox
from linegate.plc.output import create_output
from linegate.plc.worker import RejectWorker


def plc_main(ctx: WorkerContext, rejects: Connection, stop: Any) -> None:
    """Own the PLC link until *stop*; then deliver what is pending (bounded) and go to safe state."""
    log, _sink = ctx.enter("plc")
    try:
        worker = RejectWorker(ctx.cfg.plc, create_output(ctx.cfg.plc), ctx.counters, log)
        worker.run(RejectInbox(rejects), stop, ctx.cfg.plc.drain_timeout_ms / 1000)
        log.info("plc_stopped")
    finally:
        shutdown_logging()
