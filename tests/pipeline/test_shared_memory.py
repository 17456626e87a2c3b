"""kill -9 of any process: nothing is orphaned, and after a restart no shared memory leaks."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from linegate.demo.runner import PlcSimProcess
from linegate.ring import ring_path
from tests.pipeline.harness import demo_config_file, records, run_linegate, start_linegate

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


def worker_pids(log: Path) -> dict[str, int]:
    return {r["proc"]: r["pid"] for r in records(log) if r.get("proc") in ("acquire", "infer", "plc")}


def start_and_wait_for_frames(config: Path, log: Path):  # type: ignore[no-untyped-def]
    proc = start_linegate("run", "--config", str(config), "--log-file", str(log))
    wait_until(lambda: log.exists() and sum(r["event"] == "frame" for r in records(log)) >= 10)
    wait_until(lambda: len(worker_pids(log)) == 3)
    return proc


def test_supervisor_killed_takes_workers_down_and_restart_cleans_up(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """SIGKILL of the supervisor kills its workers; the next start removes the stale ring and exits clean."""
    config, instance = demo_config_file(tmp_path, plc_sim.port)
    log = tmp_path / "first.jsonl"
    proc = start_and_wait_for_frames(config, log)
    pids = worker_pids(log)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_until(lambda: not any(alive(pid) for pid in pids.values()), timeout_s=10)
    assert os.path.exists(ring_path(instance))  # left behind by the kill
    result = run_linegate("run", "--config", str(config), "--max-frames", "30", "--log-file", str(tmp_path / "b.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "removed a shared-memory ring left by an earlier run" in result.stderr
    assert not os.path.exists(ring_path(instance))


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
    assert not os.path.exists(ring_path(instance))
    assert not any(alive(pid) for pid in pids.values())
