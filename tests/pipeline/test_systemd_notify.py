"""sd_notify from a real linegate process to a real datagram socket set as $NOTIFY_SOCKET.

No systemd manager is started (it would take over the machine's cgroups): the test's own socket
plays systemd's part, with $WATCHDOG_USEC set as systemd sets it for WatchdogSec=.
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import time
from pathlib import Path

from linegate.demo.runner import PlcSimProcess
from tests.pipeline.harness import LinegateRun, NotifySocket, assert_every_frame_and_reject_accounted

WATCHDOG_USEC = 1_000_000  # systemd's WatchdogSec=1s: linegate pings every 0.5 s
SLOW_STALL_KILL = {"[logging]": "[supervisor]\nheartbeat_timeout_ms = 3000\n\n[logging]"}


def test_ready_after_warm_up_then_regular_pings_then_stopping(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """READY=1 comes once the engine is warm and every worker runs; WATCHDOG=1 follows every half
    period; SIGTERM brings STOPPING=1 and the pings end."""
    notify = NotifySocket(tmp_path / "notify.sock")
    run = LinegateRun(tmp_path, plc_sim.port, notify=notify, watchdog_usec=WATCHDOG_USEC)
    try:
        run.wait_for(lambda: notify.times_of("READY=1"), what="READY=1")
        events_at_ready = [r["event"] for r in run.records()]
        time.sleep(3.0)
        t_term = time.monotonic_ns()
        stderr = run.stop()
    finally:
        notify.close()
    assert run.proc.returncode == 0, stderr
    # every worker runs (a camera not there yet is a reported fault, so camera_opened may come later)
    assert "engine_ready" in events_at_ready and events_at_ready.count("worker_started") == 3
    first_status = next(m for _, m in notify.messages if "STATUS=" in m)
    assert "starting" in first_status and "READY=1" not in first_status
    pings = [t for t in notify.times_of("WATCHDOG=1") if t < t_term]
    gaps_s = [(b - a) / 1e9 for a, b in itertools.pairwise(pings)]
    assert len(pings) >= 5 and 0.4 < statistics.median(gaps_s) < 0.6 and max(gaps_s) < 1.0, gaps_s
    (stopping,) = notify.times_of("STOPPING=1")
    assert stopping >= t_term and not [t for t in notify.times_of("WATCHDOG=1") if t > stopping]
    assert any("fps" in s and "rejects" in s and "deadline misses" in s for s in notify.statuses())
    assert_every_frame_and_reject_accounted(run.records(), plc_sim.rising_part_ids(0))


def test_stalled_inference_loop_stops_the_watchdog_pings(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """Inference frozen with SIGSTOP: no WATCHDOG=1 more than one watchdog period after the stall
    (systemd would restart linegate); once the supervisor restarts the stalled worker, pings resume."""
    notify = NotifySocket(tmp_path / "notify.sock")
    run = LinegateRun(tmp_path, plc_sim.port, SLOW_STALL_KILL, notify=notify, watchdog_usec=WATCHDOG_USEC)
    try:
        run.wait_for(lambda: len(notify.times_of("WATCHDOG=1")) >= 3, what="three pings")
        t_stall = time.monotonic_ns()
        os.kill(run.pid_of("infer"), signal.SIGSTOP)
        stalled = run.wait_event("worker_stalled", timeout_s=30)
        recovered = run.wait_event("worker_recovered", timeout_s=60)
        run.wait_for(lambda: any(t > recovered["t_ns"] for t in notify.times_of("WATCHDOG=1")), what="pings again")
        stderr = run.stop()
    finally:
        notify.close()
    assert run.proc.returncode == 0, stderr
    period_ns = WATCHDOG_USEC * 1000
    pings = notify.times_of("WATCHDOG=1")
    assert not [t for t in pings if t_stall + period_ns < t < recovered["t_ns"]]
    assert stalled["heartbeat_age_ms"] >= 3000
    assert_every_frame_and_reject_accounted(run.records(), plc_sim.rising_part_ids(0))
