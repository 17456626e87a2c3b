"""The final summary tells the truth: latency over the whole run, every record counted, and a failed
start-up never ends in "reconciled"."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from linegate.demo.runner import PlcSimProcess
from tests.pipeline.harness import LinegateRun, demo_config_file, records, run_linegate


def test_summary_latency_covers_every_frame_not_the_last_window(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """run_summary's p50/p99 agree (within the histogram's 4%) with the frame records' total_ms over the whole run."""
    config, _ = demo_config_file(tmp_path, plc_sim.port)
    log = tmp_path / "f.jsonl"
    result = run_linegate("run", "--config", str(config), "--max-frames", "600", "--log-file", str(log))
    assert result.returncode == 0, result.stderr
    recs = records(log)
    totals = np.array([r["total_ms"] for r in recs if r["event"] == "frame" and "total_ms" in r])
    (summary,) = [r for r in recs if r["event"] == "run_summary"]
    for q, key in ((50, "latency_p50_ms"), (99, "latency_p99_ms")):
        exact = float(np.percentile(totals, q))
        assert abs(summary[key] - exact) <= 0.05 * exact + 0.01, (key, summary[key], exact)
    assert f"over all {len(totals)} frames" in result.stderr


def test_records_counted_include_those_of_replaced_workers(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """After a reload replaced the inference worker, 'records N queued' is every record the log holds."""
    run = LinegateRun(tmp_path, plc_sim.port)
    run.wait_frames(50)
    run.config.write_text(run.config.read_text().replace('id = "demo-ball-zone-v1"', 'id = "demo-ball-zone-v2"'))
    import signal

    run.proc.send_signal(signal.SIGHUP)
    run.wait_event("reload_applied", timeout_s=60)
    run.wait_frames(100)
    stderr = run.stop()
    assert run.proc.returncode == 0, stderr
    lines = sum(1 for line in run.log.read_text().splitlines() if line.strip())
    assert f"records {lines} queued by all processes" in stderr, (lines, stderr)


def test_failed_start_up_does_not_read_as_success(tmp_path: Path) -> None:
    """A model that cannot load: exit 78, the summary says linegate never inspected, never 'reconciled'."""
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"not a model")
    config, _ = demo_config_file(tmp_path, 1, {})
    config.write_text(
        config.read_text().replace(str((Path(__file__).parents[2] / "engines/demo/ball_zone.onnx").resolve()), str(bad))
    )
    result = run_linegate("run", "--config", str(config), "--max-frames", "10")
    assert result.returncode == 78, result.stderr
    assert "reconciled" not in result.stderr
    assert "NOT INSPECTING" in result.stderr
