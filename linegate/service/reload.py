"""What a reload changes (pure): which workers to replace, and which keys need a full restart."""

from __future__ import annotations

from dataclasses import dataclass

from linegate.config.schema import Config
from linegate.roles import SECTIONS_OF_ROLE, Role

RESTART_ONLY_KEYS = frozenset({"plc.queue_size", "plc.mode", "plc.handshake.results", "plc.part_ids"})
"""Keys inside reloadable sections that a reload cannot apply: the queue size sizes shared memory;
the mode and the results sent decide what the inference worker hands over and what the rows left in
the shared pending table mean; part ids are numbered once per run."""
SUPERVISOR_SECTIONS = frozenset({"recipes"})
"""Sections only the supervisor reads: a reload applies them without replacing a worker."""


@dataclass(frozen=True)
class ReloadPlan:
    """Workers to replace (in this order) and changed keys a reload cannot apply."""

    replace: tuple[Role, ...]
    needs_restart: tuple[str, ...]


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Compare two valid configurations section by section."""
    reloadable = {section for sections in SECTIONS_OF_ROLE.values() for section in sections} | SUPERVISOR_SECTIONS
    old_d, new_d = old.model_dump(), new.model_dump()
    changed = [key for section in old_d for key in _changed(section, old_d[section], new_d[section])]
    needs_restart = tuple(k for k in changed if k.split(".")[0] not in reloadable or k in RESTART_ONLY_KEYS)
    if old.cameras or new.cameras:  # each camera has its own PLC worker: replaced only by a restart for now
        needs_restart += tuple(k for k in changed if k.split(".")[0] == "plc" and k not in needs_restart)
    replace = tuple(role for role, sections in SECTIONS_OF_ROLE.items() if any(old_d[s] != new_d[s] for s in sections))
    return ReloadPlan(replace, needs_restart)


def _changed(prefix: str, old: object, new: object) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            k
            for key in sorted(old.keys() | new.keys())
            for k in _changed(f"{prefix}.{key}", old.get(key), new.get(key))
        ]
    return [prefix] if old != new else []
