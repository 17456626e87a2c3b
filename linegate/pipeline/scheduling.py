"""Real-time priority and CPU affinity for a worker process (Linux scheduling, set by the worker itself).

On a small machine the inference loop competes with the camera driver's threads (often real-time
themselves) and the acquisition process; under the default scheduler a woken loop can wait a
scheduler tick (about 1 ms) for a CPU. SCHED_FIFO lets it preempt them at once. It needs
CAP_SYS_NICE or an RLIMIT_RTPRIO (systemd: LimitRTPRIO=); without them linegate logs why and runs
with normal priority instead of refusing to inspect.
"""

from __future__ import annotations

import os
from collections.abc import Sequence, Set

from linegate.config.schema import SchedulingSection

_NEIGHBOURS = (("acquire", "acquisition worker"), ("plc", "PLC worker"))


def apply_scheduling(rt_priority: int, cpus: Sequence[int], key: str) -> list[str]:
    """Set SCHED_FIFO *rt_priority* (0: leave the normal scheduler) and affinity *cpus* (empty: any).

    Returns the problems, each naming the configuration key; an empty list when all was applied.
    """
    problems = []
    if cpus:
        try:
            os.sched_setaffinity(0, set(cpus))
        except (OSError, ValueError) as exc:
            problems.append(f"scheduling.{key}_cpus={list(cpus)}: cannot pin: {exc}")
    if rt_priority:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(rt_priority))
        except PermissionError:
            problems.append(
                f"scheduling.{key}_rt_priority={rt_priority}: not permitted (needs CAP_SYS_NICE or "
                "LimitRTPRIO=); running with normal priority"
            )
        except OSError as exc:
            problems.append(f"scheduling.{key}_rt_priority={rt_priority}: {exc}")
    return problems


def loop_would_starve(sched: SchedulingSection, available: Set[int]) -> list[str]:
    """Why the inference loop must not run real-time: a worker at its priority or below whose only
    CPU the loop can take (empty when none; *available*: the CPUs the service may use).

    Under overload the loop never sleeps, and with one engine thread the engine runs on it: a
    SCHED_FIFO loop then keeps a normal worker off that CPU except for the kernel's 5% real-time
    throttling. Measured on one CPU, ResNet-18 at 100 fps: 57 of 100 frames a second taken, 273 of
    772 rejects undelivered; with the normal scheduler 97 taken and none. A worker with a second
    CPU runs there (the loop is one thread).
    """
    prio = sched.infer_rt_priority
    if not prio:
        return []
    loop_cpus = set(sched.infer_cpus) or set(available)
    workers = [(f"scheduling.{role}_cpus", name, getattr(sched, f"{role}_rt_priority"),
                set(getattr(sched, f"{role}_cpus")) or set(available)) for role, name in _NEIGHBOURS]  # fmt: skip
    workers.append(("the CPUs it may use", "supervisor (log collector)", 0, set(available)))
    problems = []
    for key, name, worker_prio, cpus in workers:
        if worker_prio <= prio and len(cpus) == 1 and cpus <= loop_cpus:
            problems.append(
                f"scheduling.infer_rt_priority={prio}: not applied: the {name} ({key}: CPU {min(cpus)}, "
                f"priority {worker_prio}) has only a CPU the inference loop runs on, and under overload a "
                f"real-time loop keeps it off that CPU; give it another CPU or a priority above {prio}"
            )
    return problems
