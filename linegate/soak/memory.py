"""Memory of a process tree, read from /proc (Linux; no third-party library).

RSS (``VmRSS`` in /proc/PID/status) counts every page a process maps, shared ones (the frame ring,
libraries) in each process that maps them; PSS (``Pss`` in /proc/PID/smaps_rollup, Linux 4.14+)
shares them out, so PSS adds up across processes. PSS is None where it cannot be read (another
user's process, an older kernel).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcMemory:
    """One process's memory in kB (as /proc reports it)."""

    pid: int
    rss_kb: int
    pss_kb: int | None


def _field_kb(text: str, name: str) -> int | None:
    """The kB value of ``Name:   123 kB`` in a /proc status-like text."""
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return None


def read_memory(pid: int, proc: Path = PROC) -> ProcMemory | None:
    """RSS and PSS of *pid*; None when it has exited (or is a zombie: no VmRSS)."""
    try:
        rss = _field_kb((proc / str(pid) / "status").read_text(), "VmRSS")
    except (OSError, ValueError):
        return None
    if rss is None:
        return None
    try:
        pss = _field_kb((proc / str(pid) / "smaps_rollup").read_text(), "Pss")
    except (OSError, ValueError):
        pss = None
    return ProcMemory(pid, rss, pss)


def parent_of(pid: int, proc: Path = PROC) -> int | None:
    """The parent pid from /proc/PID/stat (the command name may hold spaces and parentheses)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children(pid: int, proc: Path = PROC) -> list[int]:
    """Direct children of *pid*: /proc/PID/task/*/children, else a scan of every /proc/*/stat."""
    found: set[int] = set()
    try:
        tasks = list((proc / str(pid) / "task").iterdir())
        for task in tasks:
            found.update(int(p) for p in (task / "children").read_text().split())
        return sorted(found)
    except (OSError, ValueError):  # no CONFIG_PROC_CHILDREN, or the process is gone
        pass
    for entry in proc.iterdir():
        if entry.name.isdigit() and parent_of(int(entry.name), proc) == pid:
            found.add(int(entry.name))
    return sorted(found)


def tree(pid: int, proc: Path = PROC) -> list[int]:
    """*pid* and all its descendants, parents first."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        if current not in out:
            out.append(current)
            todo.extend(children(current, proc))
    return out


def cmdline(pid: int, proc: Path = PROC) -> str:
    """The command line, arguments separated by spaces ("" when gone)."""
    try:
        return (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""

