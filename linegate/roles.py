"""The processes of a run, in one table: which counters each one owns, when it starts, what a reload
replaces it for.

A role's value is what the logs and records say (``"proc": "infer"``, ``"role": "infer"``): :class:`Role`
is a ``str``, so it goes into a record, a process name or a config key (``infer_rt_priority``) as itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from linegate.counter_names import Count


class Role(str, Enum):
    """A process of the pipeline: the three workers, and the supervisor (for its own log pipe)."""

    ACQUIRE = "acquire"
    INFER = "infer"
    PLC = "plc"
    SUPERVISOR = "supervisor"

    def __str__(self) -> str:  # the value in f-strings and str(), on every Python (3.11 changed the default)
        return self.value


@dataclass(frozen=True)
class LogCounters:
    """A process's log pipe: records the collector received, dropped at a full pipe, not written out."""

    queued: Count
    queue_full: Count
    write_failed: Count


@dataclass(frozen=True)
class RoleSpec:
    """What the supervisor and the counters need to know about one role."""

    log: LogCounters
    start: int | None = None
    """Position in the start order (stop runs it backwards); None: not a worker the supervisor spawns."""
    heartbeat: Count | None = None
    """Where the worker writes ``time.monotonic_ns()`` every turn of its loop (at most ~100 ms apart)."""
    reload_sections: tuple[str, ...] = ()
    """Configuration sections a reload applies by replacing this worker (warm hand-over)."""


ROLES: dict[Role, RoleSpec] = {
    Role.ACQUIRE: RoleSpec(
        LogCounters(Count.LOG_QUEUED_ACQUIRE, Count.LOG_QUEUE_FULL_ACQUIRE, Count.LOG_WRITE_FAILED_ACQUIRE),
        start=2,
        heartbeat=Count.ACQ_HEARTBEAT_NS,
    ),
    Role.INFER: RoleSpec(
        LogCounters(Count.LOG_QUEUED_INFER, Count.LOG_QUEUE_FULL_INFER, Count.LOG_WRITE_FAILED_INFER),
        start=1,  # READY waits until its engine is warm, before acquisition fills the ring
        heartbeat=Count.INFER_HEARTBEAT_NS,
        reload_sections=("model", "deadline", "stages"),
    ),
    Role.PLC: RoleSpec(
        LogCounters(Count.LOG_QUEUED_PLC, Count.LOG_QUEUE_FULL_PLC, Count.LOG_WRITE_FAILED_PLC),
        start=0,  # first up, last down: every reject is delivered or reported and the outputs set safe
        heartbeat=Count.PLC_HEARTBEAT_NS,
        reload_sections=("plc",),
    ),
    Role.SUPERVISOR: RoleSpec(
        LogCounters(Count.LOG_QUEUED_SUPERVISOR, Count.LOG_QUEUE_FULL_SUPERVISOR, Count.LOG_WRITE_FAILED_SUPERVISOR),
    ),
}

START_ORDER: tuple[Role, ...] = tuple(
    role for _, role in sorted((spec.start, role) for role, spec in ROLES.items() if spec.start is not None)
)
"""The workers, in the order the supervisor starts them: PLC, inference, acquisition."""
PER_CAMERA: tuple[Role, ...] = (Role.ACQUIRE, Role.PLC)
"""Workers started once per camera (``[[cameras]]``); the inference worker serves them all."""
LOG_ROLES: tuple[Role, ...] = tuple(ROLES)
"""Every process with a log pipe to the supervisor's collector."""
HEARTBEAT_OF_ROLE: dict[Role, Count] = {r: spec.heartbeat for r, spec in ROLES.items() if spec.heartbeat is not None}
SECTIONS_OF_ROLE: dict[Role, tuple[str, ...]] = {
    r: spec.reload_sections for r, spec in ROLES.items() if spec.reload_sections
}
"""Sections a reload applies by replacing the worker that uses them, in the order it replaces them."""

__all__ = [
    "HEARTBEAT_OF_ROLE",
    "LOG_ROLES",
    "PER_CAMERA",
    "ROLES",
    "SECTIONS_OF_ROLE",
    "START_ORDER",
    "LogCounters",
    "Role",
    "RoleSpec",
]
