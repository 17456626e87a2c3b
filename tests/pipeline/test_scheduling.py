"""Real-time priority and CPU affinity, applied in a child process so the test runner is untouched."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
import sys

import pytest

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
