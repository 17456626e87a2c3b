"""Which workers are stalled (pure): a heartbeat older than the timeout, or none since start."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def stalled(heartbeats: Mapping[K, int], started_ns: Mapping[K, int], now_ns: int, timeout_ns: int) -> dict[K, int]:
    """Workers (by role, or by role and camera) whose last sign of life is older than *timeout_ns*, with its age in ns.

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
