"""SIGKILL of the whole process group (what systemd does on a watchdog timeout with KillMode=mixed,
or to a crashed unit) leaves nothing in /dev/shm, however often it happens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from linegate.demo.runner import PlcSimProcess
from linegate.service.instance_lock import InstanceLock, lock_path
from tests.pipeline.harness import STARTED, demo_config_file, records

SHM = Path("/dev/shm")
KILLS = 5


def shm_names(prefix: str) -> set[str]:
    return {p.name for p in SHM.iterdir() if p.name.startswith(prefix)}


def group_pids(pgid: int) -> set[int]:
    """Every live process of process group *pgid* (the supervisor, its workers, any helper)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.add(int(entry.name))
    return pids


def mapped_shm_names(pids: set[int]) -> set[str]:
    """Names in /dev/shm that *pids* have mapped (named semaphores, shared-memory segments)."""
    names = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            path = line.split(maxsplit=5)[5] if len(line.split(maxsplit=5)) == 6 else ""
            if path.startswith("/dev/shm/") and not path.endswith("(deleted)"):
                names.add(path[len("/dev/shm/") :])
    return names


def frames(log: Path) -> int:
    return sum(r["event"] == "frame" for r in records(log)) if log.exists() else 0


def wait_until(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sigkill_of_the_whole_process_group_leaks_nothing(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """Five SIGKILLs of linegate's whole process group mid-run: no semaphore or segment it used survives any of them."""
    config, instance = demo_config_file(tmp_path, plc_sim.port)
    sems_before, ours_before = shm_names("sem.mp-"), shm_names(f"linegate-{instance}")
    used: set[str] = set()
    for i in range(KILLS):
        log = tmp_path / f"run{i}.jsonl"
        proc = subprocess.Popen(
            [sys.executable, "-m", "linegate", "run", "--config", str(config), "--log-file", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        STARTED.append(proc)
        try:
            wait_until(lambda log=log: frames(log) >= 5, 90, "frames")
            pids = group_pids(proc.pid)
            assert len(pids) >= 4, pids  # the supervisor and its three workers
            used |= mapped_shm_names(pids)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        wait_until(lambda pgid=proc.pid: not group_pids(pgid), 10, "every process of the group to be gone")
    sems_after, ours_after = shm_names("sem.mp-"), shm_names(f"linegate-{instance}")
    left = sorted(name for name in used if (SHM / name).exists())
    print(f"{KILLS} kills: sem.mp-* {len(sems_before)} -> {len(sems_after)}; named /dev/shm entries used: {len(used)}")
    assert not left, f"{len(left)} of the {len(used)} names linegate had mapped survived {KILLS} kills: {left[:5]}"
    # All that may stay is the instance's lock file: reused by every run (it does not grow) and free.
    assert ours_after - ours_before <= {lock_path(instance).name}, sorted(ours_after - ours_before)
    InstanceLock.acquire(instance).release()
    assert len(sems_after) <= len(sems_before), f"{len(sems_after) - len(sems_before)} new sem.mp-* entries"
