"""What the supervisor publishes in its state file for ``linegate status`` and ``linegate reload`` (pure)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any


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
    snapshot: dict[str, int],
    fps: float,
    uptime_s: float,
    model: str,
    plc: str,
) -> dict[str, Any]:
    """The state file's content. *phase*: starting, inspecting, fault or stopping."""
    s = snapshot
    return {
        **asdict(run),
        "state": phase,
        "faults": faults,
        "uptime_s": round(uptime_s, 1),
        "model": model,
        "plc": plc,
        "fps": round(fps, 1),
        "frames": s["decided"] + s["dropped"],
        "rejects": s["rejected"],
        "delivered": s["plc_delivered"],
        "undelivered": s["plc_undelivered"] + s["plc_queue_full"],
        "deadline_misses": s["deadline_missed"] + s["deadline_unreachable"],
        "dropped": s["dropped"],
        "plc_connected": bool(s["plc_connected"]),
        "restarts": s["worker_restarts"],
    }
