"""SIGHUP reloads: a valid config swaps the model at a frame boundary; an invalid one changes nothing."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from linegate.demo.runner import PlcSimProcess
from tests.pipeline.harness import LinegateRun, NotifySocket, assert_every_frame_and_reject_accounted

HANDOVER_EVENTS = ("inference_handed_over", "plc_handed_over", "worker_replaced")


def hup(run: LinegateRun) -> None:
    run.proc.send_signal(signal.SIGHUP)


def test_valid_reload_swaps_model_and_plc_worker_without_dropping_a_frame(
    tmp_path: Path, plc_sim: PlcSimProcess
) -> None:
    """New model id, budget and pulse width: the new engine is warmed first and takes over between
    two frames, then a new PLC worker takes over; every frame has a model verdict (none dropped or
    late), the new PLC worker fires the pulses after it, and systemd sees RELOADING then READY."""
    notify = NotifySocket(tmp_path / "notify.sock")
    run = LinegateRun(tmp_path, plc_sim.port, notify=notify)
    try:
        run.wait_frames(50)
        new = run.config.read_text().replace('id = "demo-ball-zone-v1"', 'id = "demo-ball-zone-v2"')
        new = new.replace("budget_ms = 50.0", "budget_ms = 40.0").replace("pulse_ms = 2.0", "pulse_ms = 3.0")
        run.config.write_text(new)
        hup(run)
        applied = run.wait_event("reload_applied", timeout_s=60)
        run.wait_frames(300)
        stderr = run.stop()
    finally:
        notify.close()
    assert run.proc.returncode == 0, stderr
    assert applied["model"] == "demo-ball-zone-v2" and applied["budget_ms"] == 40.0
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0))
    frames = sorted((r for r in recs if r["event"] == "frame"), key=lambda r: r["seq"])
    models = [r["model"] for r in frames]
    switch = models.index("demo-ball-zone-v2")
    assert set(models[:switch]) == {"demo-ball-zone-v1"} and set(models[switch:]) == {"demo-ball-zone-v2"}
    assert all(r["basis"] == "model" for r in frames), [r["basis"] for r in frames if r["basis"] != "model"]
    assert all(r["deadline_ms"] == 40.0 for r in frames[switch:])
    (reloading,) = notify.times_of("RELOADING=1")
    assert [t for t in notify.times_of("READY=1") if t > reloading]
    handovers = [(r["event"], r.get("role")) for r in recs if r["event"] in HANDOVER_EVENTS]
    assert handovers == [
        ("inference_handed_over", None), ("worker_replaced", "infer"),
        ("plc_handed_over", None), ("worker_replaced", "plc"),
    ]  # fmt: skip
    new_plc = [r["pid"] for r in recs if r["event"] == "worker_started" and r["role"] == "plc"][-1]
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
