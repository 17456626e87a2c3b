"""Which workers are stalled (pure): a heartbeat older than the timeout, or none since start."""

from __future__ import annotations

from collections.abc import Mapping

from linegate.counters import Count

HEARTBEAT_OF_ROLE: dict[str, Count] = {
    "acquire": Count.ACQ_HEARTBEAT_NS,
    "infer": Count.INFER_HEARTBEAT_NS,
    "plc": Count.PLC_HEARTBEAT_NS,
}
"""Each worker writes ``time.monotonic_ns()`` here every turn of its loop (at most ~100 ms apart)."""


def stalled(
    heartbeats: Mapping[str, int], started_ns: Mapping[str, int], now_ns: int, timeout_ns: int
) -> dict[str, int]:
    """Roles whose last sign of life is older than *timeout_ns*, with its age in ns.

    A worker that has not beaten since it was (re)started is judged from its start time, so a
    worker wedged before its first turn is caught too.
    """
    out = {}
    for role, t_start in started_ns.items():
        last = max(heartbeats.get(role, 0), t_start)
        if now_ns - last > timeout_ns:
            out[role] = now_ns - last
    return out
