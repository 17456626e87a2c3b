"""Fault injection against real processes and real peers: every fault ends with nothing lost.

Each test runs `linegate run` as a child process on the simulated camera and a real Modbus server,
injects one fault mid-run, stops linegate with SIGTERM and then checks the invariants of
:func:`assert_every_frame_and_reject_accounted`, plus what that fault must (not) do to the frames
around it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from linegate.demo.runner import PlcSimProcess
from linegate.ring import ring_path
from tests.pipeline.harness import LinegateRun, NotifySocket, assert_every_frame_and_reject_accounted

FAULT_COIL = 5
WITH_FAULT_COIL = {"part_id_register = 0": f"part_id_register = 0\nfault_coil = {FAULT_COIL}"}


def model_decided_after(recs: list[dict[str, object]], t_ns: int) -> list[dict[str, object]]:
    return [r for r in recs if r["event"] == "frame" and int(r["t_acquired_ns"]) > t_ns]  # type: ignore[call-overload]


@pytest.mark.parametrize(("victim", "parallel"), [("acquire", 1), ("infer", 1), ("plc", 1), ("infer", 2)])
def test_killed_worker_is_restarted_and_nothing_is_lost(
    tmp_path: Path, plc_sim: PlcSimProcess, victim: str, parallel: int
) -> None:
    """SIGKILL of any worker: it is restarted, its in-flight frames/rejects get verdicts or reports,
    frames after the recovery meet their deadline, and a later SIGTERM exits 0 reconciled; also
    with model.parallel = 2 set, the restarted worker again with two sessions (the demo model keeps
    up, so frames rarely sit on a session at the kill: tests/pipeline/test_parallel_loop.py kills a
    loop with frames running and staged)."""
    run = LinegateRun(tmp_path, plc_sim.port, {"warmup_runs = 50": f"warmup_runs = 50\nparallel = {parallel}"})
    run.wait_frames(50)
    os.kill(run.pid_of(victim), signal.SIGKILL)
    recovered = run.wait_event("worker_recovered", timeout_s=60)
    run.wait_frames(100)
    stderr = run.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    (died,) = [r for r in recs if r["event"] == "worker_died"]
    assert died["worker"].startswith(victim) and "SIGKILL" in died["error"]
    assert recovered["worker"].startswith(victim)
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0))
    after = model_decided_after(recs, recovered["t_ns"] + 200_000_000)
    assert len(after) >= 50 and all(r["deadline_met"] for r in after), [
        r["basis"] for r in after if not r["deadline_met"]
    ]
    summary = run.events("run_summary")[0]
    assert summary["worker_restarts"] == 1 and summary["unresolved"] == 0
    ready = [r.get("parallel", 1) for r in recs if r["event"] == "engine_ready"]  # a restarted one's too
    assert ready and all(n == parallel for n in ready), ready


def test_plc_killed_then_restarted_mid_run(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """PLC gone: rejects are held until max_late, then reported by part id; inference never notices;
    the PLC back on its port: linegate reconnects by itself and delivers again."""
    run = LinegateRun(tmp_path, plc_sim.port)
    run.wait_frames(50)
    plc_sim.kill()
    time.sleep(1.5)
    revived = PlcSimProcess(plc_sim.port, part_id_register=0)
    try:
        run.wait_event("plc_connected", count=2, timeout_s=30)
        # The demo's rejects come in stretches (the ball crossing its zone): wait for one to be pulsed.
        run.wait_for(lambda: bool(revived.rising_part_ids(0)), 60, "a pulse at the restarted PLC")
        run.wait_frames(20)
        stderr = run.stop()
    finally:
        revived.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0) + revived.rising_part_ids(0))
    reasons = {r["reason"] for r in recs if r["event"] == "reject_undelivered"}
    assert reasons and reasons <= {"plc_unreachable", "too_late", "delivery_unknown"}, reasons
    assert revived.rising_part_ids(0), "no pulse reached the restarted PLC"
    frames = [r for r in recs if r["event"] == "frame"]
    assert all(r["basis"] == "model" for r in frames)  # the PLC outage never touched the loop


def test_plc_paused_mid_run(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """PLC frozen (SIGSTOP) for 1.5 s: calls time out, rejects are held or reported, the loop keeps
    its deadlines, and delivery resumes when the PLC does."""
    run = LinegateRun(tmp_path, plc_sim.port)
    # From the first reject of the demo's reject stretch (about 160 frames, 1.6 s): the rejects of the
    # pause's first second are then past max_late (500 ms) when the PLC resumes. (Pausing after a
    # frame count let the pause end with the stretch just begun: then nothing was late, by chance.)
    run.wait_for(lambda: any(r["event"] == "frame" and r["verdict"] == "reject" for r in run.records()), 60,
                 "the first reject")  # fmt: skip
    plc_sim.pause()
    time.sleep(1.5)
    plc_sim.resume()
    t_resumed = time.monotonic_ns()
    run.wait_frames(150)
    stderr = run.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0))
    assert any(r["event"] == "reject_undelivered" for r in recs)
    assert any(r["event"] == "reject_delivered" and r["t_pulse_ns"] > t_resumed for r in recs)
    assert all(r["basis"] == "model" for r in recs if r["event"] == "frame")


def test_camera_lost_and_restored_reports_the_fault_everywhere(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """The camera's acquirer destroyed mid-run (SIGUSR1 drill): linegate reopens it, counts the
    downtime, shows the fault in STATUS and the log, and holds the PLC's fault coil on meanwhile."""
    notify = NotifySocket(tmp_path / "notify.sock")
    run = LinegateRun(tmp_path, plc_sim.port, WITH_FAULT_COIL, notify=notify)
    try:
        run.wait_frames(50)
        os.kill(run.pid_of("acquire"), signal.SIGUSR1)
        lost = run.wait_event("camera_lost")
        back = run.wait_event("camera_recovered", timeout_s=30)
        run.wait_frames(100)
        time.sleep(1.1)  # one more STATUS tick
        stderr = run.stop()
    finally:
        notify.close()
    assert run.proc.returncode == 0, stderr
    assert "fault drill" in lost["error"] and back["down_ms"] > 0
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0))
    summary = run.events("run_summary")[0]
    assert summary["camera_reconnects"] == 1 and summary["camera_missed_estimate"] >= 1
    assert any("camera down" in s for s in notify.statuses())
    assert notify.statuses()[-1].startswith("stopping")
    fault_edges = [e["value"] for e in plc_sim.edges if e["coil"] == FAULT_COIL]
    # on until ready, off while inspecting, on while the camera is down, off again, on at the stop
    assert fault_edges[-4:] == [0, 1, 0, 1], fault_edges


def test_unwritable_log_file_never_blocks_and_is_reported(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """logging.file inside a regular file: stdout (journald) still gets every record, the lost file
    records are counted in the summary, and log_write_failed names the path."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    bad = blocker / "frames.jsonl"
    stdout = tmp_path / "stdout.jsonl"
    run = LinegateRun(tmp_path, plc_sim.port, {'level = "info"': f'level = "info"\nfile = "{bad}"'}, stdout_file=stdout)
    run.wait_frames(100)
    stderr = run.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    failures = [r for r in recs if r["event"] == "log_write_failed"]
    assert failures and str(blocker) in failures[0]["error"]
    summary = next(r for r in recs if r["event"] == "run_summary")
    assert summary["problems"] == [] and summary["log_write_failed"] > 0


def test_restart_limit_exhausted_exits_non_zero_for_systemd(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """More crashes than supervisor.restart_limit allows: linegate stops in order and exits 1, with
    the reason in the summary, and leaves no shared memory behind."""
    run = LinegateRun(tmp_path, plc_sim.port, {"[logging]": "[supervisor]\nrestart_limit = 1\n\n[logging]"})
    run.wait_frames(30)
    os.kill(run.pid_of("plc"), signal.SIGKILL)
    run.wait_event("worker_recovered")
    os.kill(run.pid_of("plc"), signal.SIGKILL)
    stderr = run.finish()
    assert run.proc.returncode == 1, stderr
    assert "restart limit reached" in stderr
    assert not os.path.exists(ring_path(run.instance))
    recs = run.records()
    frames = [r for r in recs if r["event"] == "frame"]
    summary = run.events("run_summary")[0]
    assert sorted(r["part_id"] for r in frames) == list(range(1, summary["acquired"] + 1))
    rejected = {r["part_id"] for r in frames if r["verdict"] == "reject"}
    reported = [r["part_id"] for r in recs if r["event"] in ("reject_delivered", "reject_undelivered")]
    assert sorted(reported) == sorted(rejected)  # even with no PLC worker left, each reject has its record


LONG_DRAIN = {"fire_delay_ms = 0.0": "fire_delay_ms = 10000.0\nmax_late_ms = 20000.0\ndrain_timeout_ms = 30000.0"}


def wait_for_rejects(run: LinegateRun, n: int) -> None:
    """Until *n* frames were rejected (the demo ball enters the reject zone a few seconds in)."""
    run.wait_for(lambda: sum(r["verdict"] == "reject" for r in run.events("frame")) >= n, what=f"{n} rejects")


def test_second_sigint_cuts_a_long_drain_short_and_still_reports_every_reject(
    tmp_path: Path, plc_sim: PlcSimProcess
) -> None:
    """Rejects scheduled 10 s ahead make a graceful stop wait for them; a second SIGINT (Ctrl-C
    twice on a terminal) kills the workers at once, and the rejects they held are reported by part id."""
    run = LinegateRun(tmp_path, plc_sim.port, LONG_DRAIN)
    wait_for_rejects(run, 10)
    t0 = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    run.proc.send_signal(signal.SIGINT)
    stderr = run.finish(timeout_s=30)
    elapsed = time.monotonic() - t0
    assert elapsed < 8, elapsed  # the graceful drain alone would have taken about 10 s
    recs = run.records()
    (killed,) = [r for r in recs if r["event"] == "worker_killed_on_stop"]
    assert killed["worker"].startswith("plc") and killed["reason"] == "second stop signal"
    assert_every_frame_and_reject_accounted(recs)
    assert {r["reason"] for r in recs if r["event"] == "reject_undelivered"} == {"plc_worker_lost"}
    assert run.proc.returncode == 0, stderr
    # the person who pressed Ctrl-C twice sees that the stop was forced, and what that cost
    assert "FORCED: workers killed (second stop signal)" in stderr, stderr
    assert "rejects did not reach the PLC" in stderr


def test_stop_timeout_bounds_a_graceful_stop(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """One SIGTERM, a drain that would take 10 s, supervisor.stop_timeout_ms = 1500: linegate
    exits in about that time, reporting what the killed PLC worker held."""
    edits = {**LONG_DRAIN, "[logging]": "[supervisor]\nstop_timeout_ms = 1500\n\n[logging]"}
    run = LinegateRun(tmp_path, plc_sim.port, edits)
    wait_for_rejects(run, 10)
    t0 = time.monotonic()
    stderr = run.stop(timeout_s=30)
    elapsed = time.monotonic() - t0
    assert elapsed < 6, elapsed
    recs = run.records()
    (killed,) = [r for r in recs if r["event"] == "worker_killed_on_stop"]
    assert killed["reason"] == "supervisor.stop_timeout_ms"
    assert_every_frame_and_reject_accounted(recs)
    assert run.proc.returncode == 0, stderr


def test_camera_absent_at_start_is_a_reported_fault_not_a_failed_start(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """No such camera (serial "9"): linegate still starts (READY), says "camera down" in STATUS and
    the log, retries with growing back-off, keeps the PLC's fault coil on, and stops cleanly."""
    notify = NotifySocket(tmp_path / "notify.sock")
    edits = {**WITH_FAULT_COIL, 'device = { serial_number = "0" }': 'device = { serial_number = "9" }'}
    run = LinegateRun(tmp_path, plc_sim.port, edits, notify=notify)
    try:
        run.wait_for(lambda: notify.times_of("READY=1"), what="READY=1")
        run.wait_event("camera_open_failed", count=3, timeout_s=30)
        t_stop = time.monotonic_ns()
        stderr = run.stop()
    finally:
        notify.close()
    assert run.proc.returncode == 0, stderr
    failures = run.events("camera_open_failed")
    assert "serial_number" in failures[0]["error"]
    delays = [r["retry_in_ms"] for r in failures]
    assert delays[:3] == [200.0, 400.0, 800.0]  # camera.reconnect_min_ms, doubling
    assert any(s.startswith("FAULT: camera down") for s in notify.statuses())
    # on from the first connect, before the stop, and never off: linegate never inspected
    (fault_on,) = [e for e in plc_sim.edges if e["coil"] == FAULT_COIL]
    assert fault_on["value"] == 1 and fault_on["t_ns"] < t_stop
    assert_every_frame_and_reject_accounted(run.records())
    # The summary counts the time without a camera (it never came), and shows no made-up latency.
    summary = run.events("run_summary")[-1]
    assert summary["camera_downtime_ms"] >= sum(delays[:2]) and summary["camera_reconnects"] == 0, summary
    assert "latency  none (no frames)" in stderr and "nan" not in stderr.lower(), stderr
    assert summary["latency_p50_ms"] is None and summary["latency_p99_ms"] is None, summary
    assert "NOT WELL camera down" in stderr, stderr
