"""Real-time priority and CPU affinity, applied in a child process so the test runner is untouched."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from linegate.config.schema import SchedulingSection
from linegate.demo.runner import PlcSimProcess
from linegate.pipeline.scheduling import (
    ServiceCpus,
    apply_scheduling,
    granted_priority,
    loop_would_starve,
    usable_cpus,
)
from tests.pipeline.harness import LinegateRun


def _apply(priority: int, cpus: list[int], out) -> None:  # type: ignore[no-untyped-def]
    problems = apply_scheduling(priority, cpus, "infer")
    out.put((problems, os.sched_getscheduler(0), sorted(os.sched_getaffinity(0))))


def run_in_child(priority: int, cpus: list[int]) -> tuple[list[str], int, list[int]]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_apply, args=(priority, cpus, out))
    proc.start()
    result = out.get(timeout=30)
    proc.join(10)
    return result  # type: ignore[no-any-return]


def test_rt_priority_is_applied_or_the_reason_is_named() -> None:
    """SCHED_FIFO is set where permitted; where not, the problem names the key and the fix."""
    problems, policy, _ = run_in_child(5, [])
    if problems:
        assert "scheduling.infer_rt_priority=5: not permitted (needs CAP_SYS_NICE or LimitRTPRIO=)" in problems[0]
        assert policy == os.SCHED_OTHER
    else:
        assert policy == os.SCHED_FIFO


def test_affinity_is_applied() -> None:
    """The worker runs only on the configured CPUs."""
    problems, _, cpus = run_in_child(0, [0])
    assert problems == [] and cpus == [0]


def test_impossible_affinity_names_the_key() -> None:
    """A CPU that does not exist is reported with the key, not raised."""
    problems, policy, _ = run_in_child(0, [4096])
    assert problems and problems[0].startswith("scheduling.infer_cpus=[4096]: cannot pin")
    assert policy == os.SCHED_OTHER


def test_zero_priority_leaves_the_normal_scheduler() -> None:
    """Priority 0 changes nothing."""
    assert run_in_child(0, []) == ([], os.SCHED_OTHER, sorted(os.sched_getaffinity(0)))


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0, reason="needs root and util-linux setpriv")
def test_without_cap_sys_nice_the_loop_runs_and_says_why() -> None:
    """Without CAP_SYS_NICE (dropped with setpriv) the request is refused with the key and the fix named."""
    code = "from linegate.pipeline.scheduling import apply_scheduling as a; print(a(5, [], 'infer'))"
    out = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice", "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ).stdout
    assert "scheduling.infer_rt_priority=5: not permitted (needs CAP_SYS_NICE or LimitRTPRIO=)" in out


def _thread_policies(pid: int) -> dict[int, int]:
    """Each thread of *pid* and its scheduling policy (field 41 of /proc/PID/task/TID/stat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[int(tid)] = int(fields[41 - 3])
    return out


def test_only_the_loop_thread_runs_real_time_not_the_engines_threads(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """scheduling.infer_rt_priority goes to the inference loop's own thread once the engine's threads
    have started: those keep the normal scheduler, so an engine using every CPU cannot starve the
    acquisition worker under overload (ResNet-18 on the 2-CPU VM at 200 fps: 121 frames a second
    acquired with a real-time pool, 194 without)."""
    run = LinegateRun(tmp_path, plc_sim.port, {'threads = "auto"': "threads = 2"})
    try:
        ready = run.wait_event("engine_ready")
        run.wait_frames(20)
        policies = _thread_policies(int(ready["pid"]))
        refused = [r for r in run.events("scheduling_not_applied") if "infer_rt_priority" in r["problem"]]
    finally:
        run.stop()
    if refused:
        pytest.skip(f"real-time priority not permitted here: {refused[0]['problem']}")
    assert run.proc.returncode == 0, run.stderr
    assert ready["threads"] == 2 and len(policies) > 1
    assert [tid for tid, policy in policies.items() if policy == os.SCHED_FIFO] == [int(ready["pid"])], policies


def sched(**values: object) -> SchedulingSection:
    return SchedulingSection.model_validate({"infer_rt_priority": 10, **values})


def all_granted(asked: int) -> int:
    return asked


def on(service: set[int], loop: set[int] | None = None, usable: set[int] | None = None) -> ServiceCpus:
    """A service on CPUs *service*, its loop on *loop* (default: the same), *usable* (default: the same)."""
    return ServiceCpus(frozenset(loop or service), frozenset(service), frozenset(usable or service))


def starving(cfg: SchedulingSection, cpus: ServiceCpus, granted=all_granted) -> list[str]:  # type: ignore[no-untyped-def]
    return loop_would_starve(cfg, cpus, granted)


def test_a_real_time_loop_sharing_a_workers_only_cpu_is_refused_naming_the_worker() -> None:
    """Under overload a SCHED_FIFO loop keeps a worker at its priority or below off their one shared
    CPU: the loop's priority is refused, naming the worker, its CPU and the fix."""
    problems = starving(sched(acquire_cpus=[1], plc_cpus=[0]), on({0, 1}, loop={1}))
    assert problems == [
        "scheduling.infer_rt_priority=10: not applied: the acquisition worker (CPU 1, priority 0) has only a CPU "
        "the inference loop runs on, and under overload a real-time loop keeps it off that CPU; give it another "
        "CPU (scheduling.acquire_cpus) or a priority above 10 that the service may set"
    ]
    # equal priority starves too (FIFO does not preempt its equal); above it does not
    assert len(starving(sched(acquire_cpus=[1], acquire_rt_priority=10), on({0, 1}, loop={1}))) == 1
    assert starving(sched(acquire_cpus=[1], acquire_rt_priority=11), on({0, 1}, loop={1})) == []


def test_a_one_cpu_service_refuses_the_real_time_loop_once_naming_who_it_starves_and_the_fix() -> None:
    """On one CPU every worker below the loop and the supervisor's log collector share it with the
    loop, and there is no other CPU to give them: one problem, naming them and the loop's priority 0."""
    assert starving(sched(plc_rt_priority=20), on({3})) == [
        "scheduling.infer_rt_priority=10: not applied: the service has one CPU (3), and under overload a real-time "
        "loop keeps the acquisition worker and the supervisor (its log collector) off it; on one CPU set "
        "scheduling.infer_rt_priority = 0"
    ]
    assert "the acquisition worker, PLC worker and the supervisor" in starving(sched(), on({3}))[0]


def test_a_worker_with_a_second_cpu_or_a_loop_elsewhere_leaves_the_priority_applied() -> None:
    """The loop is one thread: a worker with two CPUs runs on the other; a loop pinned elsewhere never meets it."""
    assert starving(sched(), on({0, 1})) == []
    assert starving(sched(acquire_cpus=[0, 1], plc_cpus=[0, 1]), on({0, 1})) == []
    assert starving(sched(acquire_cpus=[0], plc_cpus=[0]), on({0, 1}, loop={1})) == []
    assert starving(sched(infer_rt_priority=0, acquire_cpus=[0]), on({0})) == []


def test_a_workers_cpus_are_those_the_kernel_gives_it() -> None:
    """acquire_cpus = [0, 5] where CPU 5 does not exist: the worker gets CPU 0 alone, the loop's.
    acquire_cpus = [0, 2] on a service limited to {0, 1} by affinity only: it gets {0, 2}, not starved.
    acquire_cpus = [7] (none usable): the pin fails and it keeps the service's CPUs."""
    problems = starving(sched(acquire_cpus=[0, 5], plc_cpus=[1]), on({0, 1}, loop={0}))
    assert len(problems) == 1 and "the acquisition worker (CPU 0, priority 0)" in problems[0]
    assert starving(sched(acquire_cpus=[0, 2], plc_cpus=[1]), on({0, 1}, loop={0}, usable={0, 1, 2, 3})) == []
    assert starving(sched(acquire_cpus=[7], plc_cpus=[1]), on({0, 1}, loop={0})) == []


def test_a_priority_above_the_loops_that_the_limit_refuses_counts_as_normal() -> None:
    """acquire_rt_priority = 30 beyond LimitRTPRIO=20 without CAP_SYS_NICE runs normal: still starved.
    A loop whose own priority is refused runs normal and starves nobody."""
    limited = lambda asked: granted_priority(asked, 20, cap_sys_nice=False)  # noqa: E731
    cfg = sched(acquire_cpus=[0], acquire_rt_priority=30, plc_cpus=[1])
    problems = starving(cfg, on({0, 1}, loop={0}), limited)
    assert len(problems) == 1 and "(CPU 0, priority 30, refused here, so normal)" in problems[0]
    assert starving(cfg, on({0, 1}, loop={0}), lambda asked: granted_priority(asked, 20, cap_sys_nice=True)) == []
    assert starving(sched(infer_rt_priority=25, acquire_cpus=[0]), on({0, 1}, loop={0}), limited) == []


def test_granted_priority_follows_the_rtprio_limit_unless_cap_sys_nice() -> None:
    """sched(7): without CAP_SYS_NICE a thread may take SCHED_FIFO up to RLIMIT_RTPRIO; -1 is unlimited."""
    assert [granted_priority(p, 20, False) for p in (0, 20, 21)] == [0, 20, 0]
    assert granted_priority(90, 0, True) == 90 and granted_priority(90, -1, False) == 90


def test_usable_cpus_are_online_ones() -> None:
    """The CPUs a configured affinity can hold include every CPU this process may run on."""
    assert os.sched_getaffinity(0) <= usable_cpus()


def test_the_loop_stays_normal_beside_an_acquisition_on_its_cpu(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """linegate run with the loop (priority 10) and the acquisition worker pinned to one CPU: the loop
    thread keeps the normal scheduler and says why; frames flow."""
    run = LinegateRun(tmp_path, plc_sim.port, {"infer_rt_priority = 10": "infer_rt_priority = 10\ninfer_cpus = [0]\n"
                                                                         "acquire_cpus = [0]"})  # fmt: skip
    try:
        ready = run.wait_event("engine_ready")
        run.wait_frames(20)
        policies = _thread_policies(int(ready["pid"]))
        problems = [r["problem"] for r in run.events("scheduling_not_applied")]
    finally:
        run.stop()
    assert run.proc.returncode == 0, run.stderr
    if any("not permitted" in p for p in problems):
        pytest.skip(f"real-time priority not permitted here: {problems}")
    assert any("infer_rt_priority=10: not applied: the acquisition worker" in p for p in problems), problems
    assert os.SCHED_FIFO not in policies.values(), policies
