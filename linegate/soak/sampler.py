"""One sample of a running linegate: memory per process role and the live counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linegate.service.state_file import read_state
from linegate.soak.memory import cmdline, read_memory, tree
from linegate.soak.records import LogTail

TOTAL = "total"
"""The row summing every process of the linegate tree (supervisor, workers, helpers)."""
LIVE_KEYS = ("state", "fps", "frames", "deadline_misses", "dropped", "restarts", "delivered", "undelivered")
"""What a sample keeps from the state file (``linegate status`` reads the same file)."""


@dataclass(frozen=True)
class Usage:
    """Memory of one role (all its processes) in kB; pss_kb None where any PSS was unreadable."""

    rss_kb: int
    pss_kb: int | None
    pids: tuple[int, ...]


@dataclass(frozen=True)
class Sample:
    """Memory and counters at *t_s* seconds after the run was started."""

    t_s: float
    memory: dict[str, Usage]
    """Role -> usage, and :data:`TOTAL` for the linegate tree."""
    outside: dict[str, Usage] = field(default_factory=dict)
    """Processes watched but not part of linegate (the demo's PLC simulator): not in the total."""
    live: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        def usage(u: Usage) -> dict[str, Any]:
            return {"rss_kb": u.rss_kb, "pss_kb": u.pss_kb, "pids": list(u.pids)}

        return {
            "t_s": round(self.t_s, 3),
            "memory": {k: usage(u) for k, u in self.memory.items()},
            "outside": {k: usage(u) for k, u in self.outside.items()},
            "live": self.live,
        }


def role_of(pid: int, supervisor_pid: int, tail: LogTail) -> str:
    """The role the log gave *pid*, else what its command line says (multiprocessing's helper)."""
    if pid == supervisor_pid:
        return "supervisor"
    if pid in tail.roles:
        return tail.roles[pid]
    return "resource-tracker" if "resource_tracker" in cmdline(pid) else "other"


def _add(into: dict[str, Usage], key: str, pid: int, rss_kb: int, pss_kb: int | None) -> None:
    old = into.get(key)
    if old is None:
        into[key] = Usage(rss_kb, pss_kb, (pid,))
        return
    pss = None if old.pss_kb is None or pss_kb is None else old.pss_kb + pss_kb
    into[key] = Usage(old.rss_kb + rss_kb, pss, (*old.pids, pid))


def take_sample(
    t_s: float, supervisor_pid: int, tail: LogTail, state_file: Path, outside: dict[str, int] | None = None
) -> Sample:
    """Memory of the supervisor's tree by role, of the *outside* processes by name, and the live counters."""
    memory: dict[str, Usage] = {}
    for pid in tree(supervisor_pid):
        m = read_memory(pid)
        if m is not None:
            _add(memory, role_of(pid, supervisor_pid, tail), pid, m.rss_kb, m.pss_kb)
            _add(memory, TOTAL, pid, m.rss_kb, m.pss_kb)
    others: dict[str, Usage] = {}
    for name, pid in (outside or {}).items():
        m = read_memory(pid)
        if m is not None:
            _add(others, name, pid, m.rss_kb, m.pss_kb)
    state = read_state(state_file) or {}
    live = {k: state[k] for k in LIVE_KEYS if k in state}
    return Sample(t_s, memory, others, live)
