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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class ServiceCpus:
    """Where the service's processes can run: what the starvation rule needs to know of the machine."""

    loop: frozenset[int]
    """The CPUs the inference loop runs on."""
    service: frozenset[int]
    """The service's own (its supervisor's) affinity, which a worker without ``*_cpus`` keeps."""
    usable: frozenset[int]
    """The CPUs a worker's configured affinity can hold: online and in the service's cpuset (the
    kernel drops the others; an affinity alone, e.g. taskset or CPUAffinity=, does not limit it)."""

    def of_worker(self, configured: Sequence[int]) -> frozenset[int]:
        """The CPUs a worker configured with *configured* runs on (a pin that fails keeps the service's)."""
        return (frozenset(configured) & self.usable or self.service) if configured else self.service


def usable_cpus() -> frozenset[int]:
    """Online CPUs, within this process's cgroup cpuset where one is readable (cgroup v2)."""
    cpus = _cpu_list("/sys/devices/system/cpu/online") or frozenset(range(os.cpu_count() or 1))
    try:
        with open("/proc/self/cgroup") as f:
            path = next((line.strip().split(":", 2)[2] for line in f if line.startswith("0::")), None)
    except OSError:
        path = None
    cpuset = _cpu_list(f"/sys/fs/cgroup{path}/cpuset.cpus.effective") if path is not None else frozenset()
    return cpus & cpuset or cpus


def _cpu_list(path: str) -> frozenset[int]:
    """A kernel CPU list file ("0-3,8") as a set; empty when unreadable."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return frozenset()
    cpus: set[int] = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(cpus)


def loop_would_starve(
    sched: SchedulingSection, cpus: ServiceCpus, granted: Callable[[int], int] = this_process_may_get
) -> list[str]:
    """Why the inference loop must not run real-time: a worker at its priority or below whose only
    CPU the loop can take (empty when none). *granted*: the priority a worker asking for one gets
    (a refused one runs normal).

    Under overload the loop never sleeps, and with one engine thread the engine runs on it: a
    SCHED_FIFO loop then keeps a normal worker off that CPU except for the kernel's 5% real-time
    throttling. Measured on one CPU, ResNet-18 at 100 fps: 57 of 100 frames a second taken, 273 of
    772 rejects undelivered; with the normal scheduler 97 taken and none. A worker with a second
    CPU runs there (the loop is one thread).
    """
    prio = granted(sched.infer_rt_priority)
    if not prio:
        return []
    starved = []
    for role, name in _NEIGHBOURS:
        on, asked = cpus.of_worker(getattr(sched, f"{role}_cpus")), getattr(sched, f"{role}_rt_priority")
        gets = granted(asked)
        if gets <= prio and len(on) == 1 and on <= cpus.loop:
            starved.append((role, name, min(on), asked, gets == asked))
    head = f"scheduling.infer_rt_priority={prio}: not applied: "
    if len(cpus.service) == 1 and cpus.service <= cpus.loop:  # no other CPU to give anyone: the loop's is the fix
        names = ", ".join(name for _, name, _, _, _ in starved)
        return [
            f"{head}the service has one CPU ({min(cpus.service)}), and under overload a real-time loop keeps the "
            f"{names + ' and the ' if names else ''}supervisor (its log collector) off it; on one CPU set "
            "scheduling.infer_rt_priority = 0"
        ]
    return [
        f"{head}the {name} (CPU {cpu}, priority {asked}{'' if ok else ', refused here, so normal'}) has only a "
        f"CPU the inference loop runs on, and under overload a real-time loop keeps it off that CPU; give it "
        f"another CPU (scheduling.{role}_cpus) or a priority above {prio} that the service may set"
        for role, name, cpu, asked, ok in starved
    ]
