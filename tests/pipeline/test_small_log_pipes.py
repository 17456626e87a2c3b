"""Log pipes the kernel would not enlarge. A user past /proc/sys/fs/pipe-user-pages-soft, without
CAP_SYS_RESOURCE or CAP_SYS_ADMIN, gets 8 KiB pipes instead of the 1 MiB linegate asks for. Then a
restarted inference worker's first step, the fail-safe records of every frame dropped while its
predecessor hung (hundreds at once), overflowed the pipe: CI lost 320 frame records in the stalled
loop test while the counters reconciled. Here a real linegate runs under setpriv without those
capabilities, beside a process holding 70 MiB of pipes, and its inference worker is frozen."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from linegate.demo.runner import PlcSimProcess
from tests.pipeline.harness import LinegateRun, assert_every_frame_and_reject_accounted

UNPRIVILEGED = ("setpriv", "--bounding-set=-sys_resource,-sys_admin", "--inh-caps=-sys_resource,-sys_admin")
SLOW_STALL_KILL = {"[logging]": "[supervisor]\nheartbeat_timeout_ms = 3000\n\n[logging]"}
HOG = """
import fcntl, os, sys
pipes = []
for _ in range(70):
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass
    pipes.append((r, w))
print("holding", flush=True)
sys.stdin.read()
"""


PROBE = """
import fcntl, os
r, w = os.pipe()
try:
    fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    print("granted")
except OSError:
    print("refused")
"""


@pytest.fixture
def pipe_hog() -> Iterator[None]:
    """A process of this user holding 70 pipes of 1 MiB (as far as the kernel lets it) until the test
    ends; skips where a process without those capabilities still gets a 1 MiB pipe."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    hog = subprocess.Popen([*UNPRIVILEGED, sys.executable, "-c", HOG], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)  # fmt: skip
    try:
        assert hog.stdout is not None and hog.stdout.readline().strip() == "holding"
        probe = subprocess.run([*UNPRIVILEGED, sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
        if probe.stdout.strip() != "refused":
            pytest.skip("this machine still gives full-size pipes (a user limit other than the default)")
        yield
    finally:
        hog.kill()
        hog.wait()


def test_a_burst_of_fail_safe_records_into_small_log_pipes_keeps_every_record(
    tmp_path: Path, plc_sim: PlcSimProcess, pipe_hog: None
) -> None:
    """The pipes are small (log_pipe_small says so); the inference worker frozen for 3 s, killed and
    restarted; every acquired frame still has exactly one record, none dropped."""
    run = LinegateRun(tmp_path, plc_sim.port, SLOW_STALL_KILL, prefix=UNPRIVILEGED)
    run.wait_frames(50)
    os.kill(run.pid_of("infer"), signal.SIGSTOP)
    run.wait_event("worker_stalled", timeout_s=30)
    run.wait_event("worker_recovered", timeout_s=60)
    run.wait_frames(50)
    stderr = run.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    (summary,) = [r for r in recs if r["event"] == "run_summary"]
    assert summary["log_dropped"] == 0 and summary["log_queue_full"] == 0
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0))
    assert "one record" in stderr
    small = [r for r in recs if r["event"] == "log_pipe_small"]
    assert small and all(r["bytes"] < r["asked"] for r in small)  # each process said so
