"""Real-time priority and CPU affinity for a worker process (Linux scheduling, set by the worker itself).

On a small machine the inference loop competes with the camera driver's threads (often real-time
themselves) and the acquisition process; under the default scheduler a woken loop can wait a
scheduler tick (about 1 ms) for a CPU. SCHED_FIFO lets it preempt them at once. It needs
CAP_SYS_NICE or an RLIMIT_RTPRIO (systemd: LimitRTPRIO=); without them linegate logs why and runs
with normal priority instead of refusing to inspect.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Sequence, Set

from linegate.config.schema import SchedulingSection

_NEIGHBOURS = (("acquire", "acquisition worker"), ("plc", "PLC worker"))
_CAP_SYS_NICE = 23


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


def granted_priority(asked: int, rtprio_limit: int, cap_sys_nice: bool) -> int:
    """The SCHED_FIFO priority a worker asking *asked* gets: above the RLIMIT_RTPRIO soft limit
    (systemd: LimitRTPRIO=) only with CAP_SYS_NICE; refused, it runs normal (0). *rtprio_limit* -1:
    unlimited."""
    return asked if cap_sys_nice or rtprio_limit < 0 or asked <= rtprio_limit else 0


def this_process_may_get(asked: int) -> int:
    """:func:`granted_priority` for this process's limit and capabilities (its workers' are the same)."""
    limit = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
    return granted_priority(asked, -1 if limit == resource.RLIM_INFINITY else limit, _has_cap_sys_nice())


def _has_cap_sys_nice() -> bool:
    try:
        with open("/proc/self/status") as f:
            eff = next(line.split()[1] for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration):
        return False
    return bool(int(eff, 16) >> _CAP_SYS_NICE & 1)


def loop_would_starve(
    sched: SchedulingSection, available: Set[int], granted: Callable[[int], int] = this_process_may_get
) -> list[str]:
    """Why the inference loop must not run real-time: a worker at its priority or below whose only
    CPU the loop can take (empty when none).

    *available*: the CPUs the service may use (its supervisor's); a worker's configured CPUs count
    as far as they are among them (the kernel drops the others from its affinity). *granted*: the
    priority a worker asking for one gets (a refused one runs normal).

    Under overload the loop never sleeps, and with one engine thread the engine runs on it: a
    SCHED_FIFO loop then keeps a normal worker off that CPU except for the kernel's 5% real-time
    throttling. Measured on one CPU, ResNet-18 at 100 fps: 57 of 100 frames a second taken, 273 of
    772 rejects undelivered; with the normal scheduler 97 taken and none. A worker with a second
    CPU runs there (the loop is one thread).
    """
    prio = granted(sched.infer_rt_priority)
    if not prio:
        return []
    usable = set(available)

    def cpus_of(configured: Sequence[int]) -> set[int]:
        return (set(configured) & usable or set(configured)) if configured else usable

    loop_cpus = cpus_of(sched.infer_cpus)
    problems = []
    for role, name in _NEIGHBOURS:
        cpus, asked = cpus_of(getattr(sched, f"{role}_cpus")), getattr(sched, f"{role}_rt_priority")
        worker_prio = granted(asked)
        if worker_prio <= prio and len(cpus) == 1 and cpus <= loop_cpus:
            got = f"priority {asked}" if worker_prio == asked else f"priority {asked} refused here, so 0"
            problems.append(
                f"scheduling.infer_rt_priority={prio}: not applied: the {name} (CPU {min(cpus)}, {got}) has only "
                f"a CPU the inference loop runs on, and under overload a real-time loop keeps it off that CPU; "
                f"give it another CPU (scheduling.{role}_cpus) or a priority above {prio}"
            )
    if len(usable) == 1 and usable <= loop_cpus:
        problems.append(
            f"scheduling.infer_rt_priority={prio}: not applied: the service has one CPU ({min(usable)}), and under "
            "overload a real-time loop keeps the supervisor (its log collector) off it; on one CPU set "
            "scheduling.infer_rt_priority = 0"
        )
    return problems
