"""Real-time priority and CPU affinity, applied in a child process so the test runner is untouched."""

from __future__ import annotations

import multiprocessing as mp
import os

from linegate.pipeline.scheduling import apply_scheduling


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
