"""SIGHUP reloads: a valid config swaps the model at a frame boundary; an invalid one changes nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from linegate.demo.runner import PlcSimProcess
from tests.pipeline.harness import WIDE_BUDGET, LinegateRun, NotifySocket, assert_every_frame_and_reject_accounted

HANDOVER_EVENTS = ("inference_handed_over", "plc_handed_over", "worker_replaced")


def hup(run: LinegateRun) -> None:
    run.proc.send_signal(signal.SIGHUP)


def test_valid_reload_swaps_model_and_plc_worker_without_dropping_a_frame(
    tmp_path: Path, plc_sim: PlcSimProcess
) -> None:
    """New model id, budget and pulse width: the new engine is warmed first and takes over between
    two frames, then a new PLC worker takes over; every frame has a model verdict (none dropped or
    late), the new PLC worker fires the pulses after it, and systemd sees RELOADING then READY.
    Budgets 500 then 400 ms (WIDE_BUDGET says why)."""
    notify = NotifySocket(tmp_path / "notify.sock")
    run = LinegateRun(tmp_path, plc_sim.port, WIDE_BUDGET, notify=notify)
    try:
        run.wait_frames(50)
        new = run.config.read_text().replace('id = "demo-ball-zone-v1"', 'id = "demo-ball-zone-v2"')
        new = new.replace("budget_ms = 500.0", "budget_ms = 400.0").replace("pulse_ms = 2.0", "pulse_ms = 3.0")
        run.config.write_text(new)
        hup(run)
        applied = run.wait_event("reload_applied", timeout_s=60)
        run.wait_frames(300)
        # rejects come in runs (the ball crossing the reject zone): wait for one after the hand-over
        run.wait_for(lambda: new_plc_delivered(run.records()), 120, "a reject delivered by the new PLC worker")
        stderr = run.stop()
    finally:
        notify.close()
    assert run.proc.returncode == 0, stderr
    assert applied["model"] == "demo-ball-zone-v2" and applied["budget_ms"] == 400.0
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0))
    (reloading,) = notify.times_of("RELOADING=1")  # receipt times, all taken by this process
    assert [t for t in notify.times_of("READY=1") if t > reloading]
    for order in legal_orders(recs):
        check_valid_reload(order)


def new_plc_delivered(recs: list[dict[str, Any]]) -> bool:
    """A PLC worker other than the one that handed over has delivered a reject."""
    old = {r["pid"] for r in recs if r["event"] == "plc_handed_over"}
    return bool(old) and any(r["event"] == "reject_delivered" and r["pid"] not in old and r["proc"] == "plc"
                             for r in recs)  # fmt: skip


def legal_orders(recs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The log as written, and two other orders the supervisor's collector could as well have written
    it in: it reads one pipe per process, so only each process's own records keep their order."""
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for r in recs:
        by_pid.setdefault(r["pid"], []).append(r)
    blocks = list(by_pid.values())
    return [recs, [r for b in blocks for r in b], [r for b in reversed(blocks) for r in b]]


def check_valid_reload(recs: list[dict[str, Any]]) -> None:
    """The valid reload's outcome, read without relying on the order of different processes' records."""
    frames = sorted((r for r in recs if r["event"] == "frame"), key=lambda r: r["seq"])  # the ring's order
    models = [r["model"] for r in frames]
    switch = models.index("demo-ball-zone-v2")
    assert set(models[:switch]) == {"demo-ball-zone-v1"} and set(models[switch:]) == {"demo-ball-zone-v2"}
    late = [{k: r.get(k) for k in ("seq", "pid", "basis", "queued_ms", "total_ms", "infer_ms")}
            for r in frames if r["basis"] != "model"]  # fmt: skip
    assert not late, (switch, late)
    assert all(r["deadline_ms"] == 400.0 for r in frames[switch:])
    handovers = sorted((r["event"], r.get("role", "")) for r in recs if r["event"] in HANDOVER_EVENTS)
    assert handovers == sorted([
        ("inference_handed_over", ""), ("worker_replaced", "infer"),
        ("plc_handed_over", ""), ("worker_replaced", "plc"),
    ])  # fmt: skip
    assert [r["role"] for r in recs if r["event"] == "worker_replaced"] == ["infer", "plc"]  # the supervisor's
    started = {role: {r["pid"] for r in recs if r["event"] == "worker_started" and r["role"] == role}
               for role in ("infer", "plc")}  # fmt: skip
    (old_infer,) = {r["pid"] for r in recs if r["event"] == "inference_handed_over"}
    (old_plc,) = {r["pid"] for r in recs if r["event"] == "plc_handed_over"}
    (new_infer,) = started["infer"] - {old_infer}
    (new_plc,) = started["plc"] - {old_plc}
    # the old engine decided every frame before the switch, the new one every frame after it
    assert {r["pid"] for r in frames[:switch]} == {old_infer} and {r["pid"] for r in frames[switch:]} == {new_infer}
    assert any(r["event"] == "reject_delivered" and r["pid"] == new_plc for r in recs)


def test_invalid_reload_is_logged_and_changes_nothing(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """A config with an error, then one changing a key that needs a restart: both are refused with
    the reason (key named), linegate keeps running unchanged, READY follows each RELOADING."""
    notify = NotifySocket(tmp_path / "notify.sock")
    run = LinegateRun(tmp_path, plc_sim.port, notify=notify)
    try:
        run.wait_frames(30)
        good = run.config.read_text()
        run.config.write_text(good.replace("budget_ms = 50.0", "budget_ms = -5"))
        hup(run)
        first = run.wait_event("reload_failed")
        run.config.write_text(good.replace("width = 640", "width = 320"))
        hup(run)
        second = run.wait_event("reload_failed", count=2)
        run.wait_frames(50)
        time.sleep(0.2)
        stderr = run.stop()
    finally:
        notify.close()
    assert run.proc.returncode == 0, stderr
    assert "deadline.budget_ms" in first["error"] and "camera.width" in second["error"]
    assert "restart" in second["error"]
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0))
    assert {r["model"] for r in recs if r["event"] == "frame"} == {"demo-ball-zone-v1"}
    assert not [r for r in recs if r["event"] in ("worker_replaced", "reload_applied")]
    reloading, ready = notify.times_of("RELOADING=1"), notify.times_of("READY=1")
    assert len(reloading) == 2 and all(any(r < t for t in ready) for r in reloading)
    summary = run.events("run_summary")[0]
    assert summary["reload_failures"] == 2 and summary["reloads"] == 0


def test_a_sighup_sent_to_every_process_reloads_once_and_kills_no_worker(
    tmp_path: Path, plc_sim: PlcSimProcess
) -> None:
    """`systemctl kill -s HUP` (or a terminal hang-up) signals every process of the service: the
    supervisor reloads, the workers ignore it (before, every worker died by SIGHUP and was restarted)."""
    run = LinegateRun(tmp_path, plc_sim.port, own_group=True)
    run.wait_frames(30)
    os.killpg(run.proc.pid, signal.SIGHUP)
    run.wait_event("reload_applied")
    run.wait_frames(50)
    stderr = run.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0))
    assert not [r for r in recs if r["event"] in ("worker_died", "worker_restarting")]
    assert len(run.events("reload_requested")) == 1


def test_sighups_to_every_process_while_workers_start_kill_none(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """HUPs sent to the whole group while the workers import and load (before they can ignore it):
    the signal waits, blocked, until each worker ignores it; no worker dies, the run reconciles."""
    run = LinegateRun(tmp_path, plc_sim.port, own_group=True)
    run.wait_event("worker_started")  # the first worker is up; the others are starting
    for _ in range(4):
        os.killpg(run.proc.pid, signal.SIGHUP)
        time.sleep(0.2)
    run.wait_frames(50)
    stderr = run.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    assert not [r for r in recs if r["event"] in ("worker_died", "worker_restarting")]
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0))


def test_a_reload_while_the_inference_worker_hangs_is_refused_and_the_hung_worker_replaced(
    tmp_path: Path, plc_sim: PlcSimProcess
) -> None:
    """The inference worker hangs (SIGSTOP: a model run that never returns) and a reload comes: the
    successor waits for it to let go, then gives up instead of deciding frames beside it (the
    reload is refused, naming why); the hung worker's heartbeat stops, so it is killed and
    restarted, its frames recovered. One inference worker at a time decides frames, each frame and
    reject accounted for once."""
    import os

    run = LinegateRun(tmp_path, plc_sim.port, WIDE_BUDGET)
    try:
        run.wait_frames(50)
        (started,) = [r for r in run.records() if r["event"] == "worker_started" and r["role"] == "infer"]
        hung = int(started["pid"])
        os.kill(hung, signal.SIGSTOP)
        run.config.write_text(run.config.read_text().replace("budget_ms = 500.0", "budget_ms = 400.0"))
        hup(run)
        failed = run.wait_event("reload_failed", timeout_s=60)
        run.wait_event("worker_recovered", timeout_s=60)
        run.wait_for(lambda: not os.path.exists(f"/proc/{hung}"), 30, f"the hung worker {hung} gone")
        run.wait_frames(100)
        stderr = run.stop()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGKILL)
    assert run.proc.returncode == 0, stderr
    assert "the running inference worker did not let go of its role" in failed["error"]
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0))
    summary = run.events("run_summary")[0]
    assert summary["reloads"] == 0 and summary["reload_failures"] == 1 and summary["worker_restarts"] == 1
    by_pid: dict[int, list[int]] = {}
    for r in recs:
        if r["event"] == "frame" and r["proc"] == "infer":
            by_pid.setdefault(int(r["pid"]), []).append(int(r["t_done_ns"]))
    assert len(by_pid) == 2 and hung in by_pid, sorted(by_pid)  # the hung one, then its replacement
    (after,) = [times for pid, times in by_pid.items() if pid != hung]
    assert max(by_pid[hung]) < min(after)  # never two deciding at once
    assert {r["deadline_ms"] for r in recs if r["event"] == "frame"} == {500.0}  # the running configuration


def test_a_reload_refused_after_one_worker_took_over_says_what_changed(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """A reload of [model] and [plc] while the PLC worker hangs (SIGSTOP; heartbeat_timeout_ms 15 s so
    it is not replaced meanwhile): the new model takes over first, then the new PLC worker gives up
    waiting. The refusal names what did change, and status and the state file show the model that
    runs (not the old one); the old PLC worker, back, goes on with the old [plc]."""
    import json
    import os

    from linegate.service.state_file import state_path

    run = LinegateRun(tmp_path, plc_sim.port, WIDE_BUDGET, append="\n[supervisor]\nheartbeat_timeout_ms = 15000.0\n")
    run.wait_frames(50)
    plc = run.pid_of("plc")
    try:
        new = run.config.read_text().replace('id = "demo-ball-zone-v1"', 'id = "demo-ball-zone-v2"')
        run.config.write_text(new.replace("pulse_ms = 2.0", "pulse_ms = 3.0"))
        os.kill(plc, signal.SIGSTOP)  # a PLC call that hangs
        hup(run)
        failed = run.wait_event("reload_failed", timeout_s=60)
        state = json.loads(state_path(run.instance).read_text())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(plc, signal.SIGCONT)
    run.wait_frames(50)
    stderr = run.stop()
    assert run.proc.returncode in (0, 1), stderr  # 1: a reject held up by the hung PLC worker went undelivered
    assert failed["partly_applied"] == ["model", "deadline", "stages"], failed
    assert "the infer worker had already taken over with the new [model], [deadline], [stages]" in failed["error"]
    assert state["model"] == "demo-ball-zone-v2", state
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0))
    assert [r["model"] for r in recs if r["event"] == "frame"][-1] == "demo-ball-zone-v2"
    assert not [r for r in recs if r["event"] == "worker_replaced" and r["role"] == "plc"]
    summary = run.events("run_summary")[0]
    assert summary["reloads"] == 0 and summary["reload_failures"] == 1
