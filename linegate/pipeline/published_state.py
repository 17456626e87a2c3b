"""What the supervisor publishes in its state file for ``linegate status`` and ``linegate reload`` (pure)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from linegate.counters import Count, Snapshot
from linegate.pipeline.summary import camera_counts


@dataclass
class ReloadState:
    """The last reload request (SIGHUP) and what became of it."""

    requested: int = 0
    """SIGHUPs handled so far."""
    answered: int = 0
    """The request the outcome below belongs to."""
    outcome: str = ""
    """"applied", "refused" or "" (none yet)."""
    error: str = ""


@dataclass
class RunState:
    """Identity and events of this run, beside the counters."""

    instance: str
    config: str | None
    started_unix: float
    pid: int = field(default_factory=os.getpid)
    last_restart: dict[str, Any] | None = None
    reload: ReloadState = field(default_factory=ReloadState)


def build_state(
    run: RunState,
    phase: str,
    faults: list[str],
    snapshot: Snapshot,
    fps: float,
    uptime_s: float,
    model: str,
    plc: str,
    cameras: Sequence[tuple[str, Snapshot]] = (),
) -> dict[str, Any]:
    """The state file's content. *phase*: starting, inspecting, fault or stopping. *cameras*: with
    several cameras, each one's name and counters (*snapshot* sums them)."""
    s, c = snapshot, Count
    per_camera = [
        {"name": name, **camera_counts(cs), "plc_connected": bool(cs[c.PLC_CONNECTED]),
         "inspecting": bool(cs[c.INSPECTING])}
        for name, cs in cameras
    ]
    return {
        **asdict(run),
        "state": phase,
        "faults": faults,
        "uptime_s": round(uptime_s, 1),
        "model": model,
        "plc": plc,
        "fps": round(fps, 1),
        "frames": s[c.DECIDED] + s[c.DROPPED],
        "rejects": s[c.REJECTED],
        "delivered": s[c.PLC_DELIVERED],
        "undelivered": s[c.PLC_UNDELIVERED] + s[c.PLC_QUEUE_FULL],
        "deadline_misses": s[c.DEADLINE_MISSED] + s[c.DEADLINE_UNREACHABLE],
        "dropped": s[c.DROPPED],
        # with several cameras, connected only while every camera's PLC link is up
        "plc_connected": all(x["plc_connected"] for x in per_camera) if per_camera else bool(s[c.PLC_CONNECTED]),
        "restarts": s[c.WORKER_RESTARTS],
        **({"cameras": per_camera} if per_camera else {}),
    }
