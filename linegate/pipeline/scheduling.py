"""Real-time priority and CPU affinity for a worker process (Linux scheduling, set by the worker itself).

On a small machine the inference loop competes with the camera driver's threads (often real-time
themselves) and the acquisition process; under the default scheduler a woken loop can wait a
scheduler tick (about 1 ms) for a CPU. SCHED_FIFO lets it preempt them at once. It needs
CAP_SYS_NICE or an RLIMIT_RTPRIO (systemd: LimitRTPRIO=); without them linegate logs why and runs
with normal priority instead of refusing to inspect.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


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
