"""Which workers are stalled (pure): a heartbeat older than the timeout, or none since start."""

from __future__ import annotations

from collections.abc import Mapping

from linegate.roles import Role


def stalled(
    heartbeats: Mapping[Role, int], started_ns: Mapping[Role, int], now_ns: int, timeout_ns: int
) -> dict[Role, int]:
    """Roles whose last sign of life is older than *timeout_ns*, with its age in ns.

    A worker that has not beaten since it was (re)started is judged from its start time, so a
    worker wedged before its first turn is caught too. Each worker's heartbeat counter:
    :data:`linegate.roles.HEARTBEAT_OF_ROLE`.
    """
    out = {}
    for role, t_start in started_ns.items():
        last = max(heartbeats.get(role, 0), t_start)
        if now_ns - last > timeout_ns:
            out[role] = now_ns - last
    return out
