"""End to end: camera simulator -> ring -> model -> PLC simulator, as real processes."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from linegate.demo.runner import PlcSimProcess
from tests.pipeline.harness import demo_config_file, records, run_linegate, start_linegate
from tests.pipeline.test_shared_memory import instance_entries

FRAMES = 600


def viky_frames(count: int) -> dict[int, np.ndarray]:
    """The simulator's frames by frame id (its content is a pure function of the id)."""
    from linegate.camera.genicam import GenICamCamera
    from linegate.config.schema import CameraSection

    cfg = CameraSection.model_validate(
        {"cti": "builtin:viky", "device": {"serial_number": "0"}, "width": 640, "height": 480,
         "pixel_format": "Mono8", "frame_rate_hz": 200.0, "buffers": 16}
    )  # fmt: skip
    frames: dict[int, np.ndarray] = {}
    with GenICamCamera(cfg) as cam:
        cam.open()
        cam.start()
        while max(frames, default=0) < count:  # under load the capture itself may skip an id
            cam.fetch(lambda f: frames.__setitem__(f.frame_id, f.pixels.copy()), timeout_s=2.0)
    return frames


def test_every_frame_one_verdict_every_reject_one_pulse(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """N frames: one record each, every reject a pulse with its part id, verdicts match ground truth >= 99%."""
    from linegate.demo.ground_truth import DEMO_ZONE, expected_reject

    config, instance = demo_config_file(tmp_path, plc_sim.port)
    log = tmp_path / "frames.jsonl"
    result = run_linegate("run", "--config", str(config), "--max-frames", str(FRAMES), "--log-file", str(log))
    assert result.returncode == 0, result.stderr
    assert "reconciled" in result.stderr
    assert instance_entries(instance) == set()  # nothing of this run is left in /dev/shm

    frame_records = [r for r in records(log) if r["event"] == "frame"]
    assert sorted(r["part_id"] for r in frame_records) == list(range(1, FRAMES + 1))  # one record per frame
    assert all(r["basis"] == "model" and r["deadline_met"] for r in frame_records)

    rejected = sorted(r["part_id"] for r in frame_records if r["verdict"] == "reject")
    assert rejected, "the demo must reject some parts"
    pulses = plc_sim.rising_part_ids(coil=0)
    assert sorted(pulses) == rejected  # each reject exactly one pulse, right part id, none extra
    assert Counter(e["value"] for e in plc_sim.edges) == {1: len(rejected), 0: len(rejected)}

    truth = viky_frames(max(r["frame_id"] for r in frame_records))
    compared = [r for r in frame_records if r["frame_id"] in truth]
    assert len(compared) >= 0.95 * len(frame_records)
    agree = sum((r["verdict"] == "reject") == expected_reject(truth[r["frame_id"]], DEMO_ZONE) for r in compared)
    assert agree / len(compared) >= 0.99, f"{agree}/{len(compared)} agree with ground truth"


def wait_for(predicate, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def check_rejects_accounted(log: Path, frame_records: list[dict], plc_sim: PlcSimProcess) -> None:  # type: ignore[type-arg]
    rejected = sorted(r["part_id"] for r in frame_records if r["verdict"] == "reject")
    delivered = sorted(r["part_id"] for r in records(log) if r["event"] == "reject_delivered")
    undelivered = sorted(r["part_id"] for r in records(log) if r["event"] == "reject_undelivered")
    assert sorted(delivered + undelivered) == rejected  # every reject delivered or reported by part id
    assert sorted(plc_sim.rising_part_ids(coil=0)) == delivered


@pytest.mark.parametrize("when_full", ["drop_newest", "drop_oldest"])
def test_stalled_inference_drops_and_late_frames_get_fail_safe(
    tmp_path: Path, plc_sim: PlcSimProcess, when_full: str
) -> None:
    """Inference frozen (SIGSTOP) for 0.6 s: the ring overflows; dropped and late frames still get a
    fail-safe reject, a record and a pulse, and the counters reconcile."""
    config, _ = demo_config_file(tmp_path, plc_sim.port, {'when_full = "drop_newest"': f'when_full = "{when_full}"'})
    log = tmp_path / "frames.jsonl"
    proc = start_linegate("run", "--config", str(config), "--max-frames", "300", "--log-file", str(log))
    try:
        wait_for(lambda: log.exists() and sum(r["event"] == "frame" for r in records(log)) >= 20)
        infer_pid = next(r["pid"] for r in records(log) if r["proc"] == "infer")
        os.kill(infer_pid, signal.SIGSTOP)
        time.sleep(0.6)
        os.kill(infer_pid, signal.SIGCONT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "reconciled" in stderr
    (summary,) = [r for r in records(log) if r["event"] == "run_summary"]
    if summary["plc_undelivered"]:  # fail-safe rejects decided after their ejector window: not well
        assert proc.returncode == 1 and "NOT WELL" in stderr and "rejects did not reach the PLC" in stderr, stderr
    else:
        assert proc.returncode == 0, stderr
    frame_records = [r for r in records(log) if r["event"] == "frame"]
    assert sorted(r["part_id"] for r in frame_records) == list(range(1, 301))
    bases = Counter(r["basis"] for r in frame_records)
    assert bases["dropped"] > 0 and bases["deadline_unreachable"] + bases["deadline_missed"] > 0, bases
    assert all(r["verdict"] == "reject" for r in frame_records if r["basis"] != "model")
    check_rejects_accounted(log, frame_records, plc_sim)


def test_budget_too_small_gives_fail_safe_verdicts(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """With a budget below what the frame's copy into the ring alone takes (10 us for 300 KB and two
    lock round trips; 0.2 ms was enough for a whole model verdict on a fast 2-core VM), frames get
    the fail-safe reject, never a late model verdict."""
    config, _ = demo_config_file(tmp_path, plc_sim.port, {"budget_ms = 50.0": "budget_ms = 0.01"})
    log = tmp_path / "frames.jsonl"
    result = run_linegate("run", "--config", str(config), "--max-frames", "100", "--log-file", str(log))
    assert result.returncode == 0, result.stderr
    frame_records = [r for r in records(log) if r["event"] == "frame"]
    assert len(frame_records) == 100
    assert all(r["verdict"] == "reject" and r["basis"] != "model" for r in frame_records)
    assert all(r["deadline_met"] is False for r in frame_records)
    check_rejects_accounted(log, frame_records, plc_sim)


def test_model_not_matching_the_classes_is_a_config_error(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """A model whose output does not fit model.postprocess.classes stops the start with exit 78, naming the key."""
    config, instance = demo_config_file(
        tmp_path,
        plc_sim.port,
        {'classes = ["pass", "reject"]': 'classes = ["pass", "reject", "unknown"]'},
    )
    result = run_linegate("run", "--config", str(config), "--max-frames", "10")
    assert result.returncode == 78, result.stderr
    assert "model.postprocess.classes: model output has 2 scores, config names 3 classes" in result.stderr
    assert instance_entries(instance) == set()


def test_camera_refusing_a_setting_exits_78(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """A frame rate the camera refuses is a configuration error (78: systemd must not restart-loop)."""
    config, _ = demo_config_file(tmp_path, plc_sim.port, {"frame_rate_hz = 100.0": "frame_rate_hz = 900.0"})
    result = run_linegate("run", "--config", str(config), "--max-frames", "10")
    assert result.returncode == 78, result.stderr
    assert "camera.frame_rate_hz: camera refused AcquisitionFrameRate=900.0 (allowed 1.0..200.0)" in result.stderr


def test_sigterm_stops_in_order_and_reconciles(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """SIGTERM mid-run: acquisition stops, every frame in the ring is decided, rejects delivered, exit 0."""
    config, instance = demo_config_file(tmp_path, plc_sim.port)
    log = tmp_path / "frames.jsonl"
    proc = start_linegate("run", "--config", str(config), "--log-file", str(log))
    try:
        wait_for(lambda: log.exists() and sum(r["event"] == "frame" for r in records(log)) >= 50)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "(SIGTERM)" in stderr and "reconciled" in stderr
    frame_records = [r for r in records(log) if r["event"] == "frame"]
    acquired = max(r["part_id"] for r in frame_records)
    assert sorted(r["part_id"] for r in frame_records) == list(range(1, acquired + 1))
    check_rejects_accounted(log, frame_records, plc_sim)
    assert instance_entries(instance) == set()
