"""kill -9 of any process: nothing is orphaned and no shared memory leaks; one run per instance name."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from linegate.demo.runner import PlcSimProcess
from linegate.service.instance_lock import lock_path
from tests.pipeline.harness import (
    LinegateRun,
    assert_every_frame_and_reject_accounted,
    demo_config_file,
    records,
    run_linegate,
    start_linegate,
)

NO_RESTARTS = {"[logging]": "[supervisor]\nrestart_limit = 0\n\n[logging]"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its parent counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_until(predicate, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def instance_entries(instance: str) -> set[str]:
    """What /dev/shm holds under *instance*'s name."""
    return {name for name in os.listdir("/dev/shm") if name.startswith(f"linegate-{instance}")}


def worker_pids(log: Path) -> dict[str, int]:
    return {r["proc"]: r["pid"] for r in records(log) if r.get("proc") in ("acquire", "infer", "plc")}


def start_and_wait_for_frames(config: Path, log: Path):  # type: ignore[no-untyped-def]
    proc = start_linegate("run", "--config", str(config), "--log-file", str(log))
    wait_until(lambda: log.exists() and sum(r["event"] == "frame" for r in records(log)) >= 10)
    wait_until(lambda: len(worker_pids(log)) == 3)
    return proc


def test_supervisor_killed_takes_workers_down_and_leaves_nothing(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """SIGKILL of the supervisor kills its workers and leaves no ring behind; the next start runs clean."""
    config, instance = demo_config_file(tmp_path, plc_sim.port)
    log = tmp_path / "first.jsonl"
    proc = start_and_wait_for_frames(config, log)
    pids = worker_pids(log)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_until(lambda: not any(alive(pid) for pid in pids.values()), timeout_s=10)
    assert instance_entries(instance) <= {lock_path(instance).name}  # the lock file is reused, and free
    result = run_linegate("run", "--config", str(config), "--max-frames", "30", "--log-file", str(tmp_path / "b.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "removed a shared-memory ring" not in result.stderr  # nothing was left to clean up
    assert instance_entries(instance) == set()


def test_second_run_of_a_running_instance_is_refused_and_the_first_runs_on(
    tmp_path: Path, plc_sim: PlcSimProcess
) -> None:
    """A second `linegate run` of a running instance exits 78 naming it and the first's pid; the first is untouched."""
    run = LinegateRun(tmp_path, plc_sim.port)
    second_log = tmp_path / "second.jsonl"
    try:
        run.wait_frames(20)
        second = run_linegate("run", "--config", str(run.config), "--max-frames", "30", "--log-file", str(second_log))
        run.wait_frames(50)  # still inspecting, on its own ring
        stderr = run.stop()
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert second.returncode == 78, second.stderr
    refusal = [line for line in second.stderr.splitlines() if f"pid {run.proc.pid}" in line]
    assert refusal and run.instance in refusal[0], second.stderr
    assert not second_log.exists()  # refused before it logged, or touched anything shared
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0))
    assert not [r for r in recs if r["event"] in ("worker_died", "stale_ring_removed", "linegate_failed")]
    assert instance_entries(run.instance) == set()


@pytest.mark.parametrize("victim", ["acquire", "infer", "plc"])
def test_worker_killed_with_no_restarts_left_stops_cleanly_without_leaks(
    tmp_path: Path, plc_sim: PlcSimProcess, victim: str
) -> None:
    """SIGKILL of a worker with the restart budget at 0: the rest stop in order, exit non-zero, ring unlinked."""
    config, instance = demo_config_file(
        tmp_path, plc_sim.port, {"[logging]": "[supervisor]\nrestart_limit = 0\n\n[logging]"}
    )
    log = tmp_path / "frames.jsonl"
    proc = start_and_wait_for_frames(config, log)
    pids = worker_pids(log)
    os.kill(pids[victim], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert f"FAILED   {victim} worker" in stderr and "restart limit reached" in stderr
    assert instance_entries(instance) == set()
    assert not any(alive(pid) for pid in pids.values())
