"""What the operator is told must be true: a fault that lasts shows as a fault in STATUS, the journal,
`linegate status`, the final summary and the exit code of a bounded run; `linegate reload` returns
only with the reload's outcome. Real `linegate run` processes, real PLC simulator or none at all."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from linegate.demo.runner import PlcSimProcess, free_port
from linegate.service.commands import reload_command, status_command
from tests.pipeline.harness import LinegateRun, NotifySocket, demo_config_file, records, run_linegate


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Iterator[Path]:
    """linegate's state files go to a directory of this test's (the children inherit the variable)."""
    d = tmp_path / "run"
    d.mkdir()
    old = os.environ.get("RUNTIME_DIRECTORY")
    os.environ["RUNTIME_DIRECTORY"] = str(d)
    yield d
    if old is None:
        del os.environ["RUNTIME_DIRECTORY"]
    else:
        os.environ["RUNTIME_DIRECTORY"] = old


def status(instance: str, runtime_dir: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = status_command(instance, out, err, runtime_dir)
    return code, out.getvalue() + err.getvalue()


def test_plc_never_reachable_is_a_fault_everywhere_and_fails_a_bounded_run(tmp_path: Path, runtime_dir: Path) -> None:
    """No PLC at all for a whole bounded run: journal and STATUS name it, the summary lists it as lasting
    with the undelivered rejects, and the run exits 1 (it used to exit 0 with problems: [])."""
    notify_path = tmp_path / "notify.sock"
    notify = NotifySocket(notify_path)
    config, _ = demo_config_file(tmp_path, free_port())  # nothing listens there
    env = {"NOTIFY_SOCKET": str(notify_path)}
    try:
        result = run_linegate(
            "run", "--config", str(config), "--max-frames", "300", "--log-file", str(tmp_path / "f.jsonl"), env=env
        )
    finally:
        notify.close()
    assert result.returncode == 1, result.stderr
    assert "NOT WELL PLC unreachable (still at the end)" in result.stderr
    assert "rejects did not reach the PLC" in result.stderr
    recs = records(tmp_path / "f.jsonl")
    suspended = [r for r in recs if r["event"] == "inspection_suspended"]
    assert suspended and any("PLC unreachable" in f for r in suspended for f in r["faults"]), suspended
    assert not [r for r in recs if r["event"] == "inspection_resumed"]
    assert any(s.startswith("FAULT: PLC unreachable") for s in notify.statuses())
    (summary,) = [r for r in recs if r["event"] == "run_summary"]
    assert summary["exit_code"] == 1 and summary["lasting"] and summary["problems"] == []


def test_status_command_tells_inspecting_then_the_camera_fault(tmp_path: Path, runtime_dir: Path) -> None:
    """`linegate status`: exit 0 and INSPECTING on a healthy line; with no camera (wrong serial) exit 1
    and FAULT naming it; after the stop exit 3 (not running), and the summary lists the lasting fault."""
    sim = PlcSimProcess(free_port())
    try:
        healthy = LinegateRun(tmp_path, sim.port)
        healthy.wait_event("inspection_resumed")
        healthy.wait_frames(100)
        code, text = status(healthy.instance, runtime_dir)
        healthy.stop()
        assert code == 0 and "INSPECTING" in text and "fps" in text and "demo-ball-zone-v1" in text, text
        assert status(healthy.instance, runtime_dir)[0] == 3

        (tmp_path / "blind").mkdir()
        no_camera = {'device = { serial_number = "0" }': 'device = { serial_number = "9" }'}
        blind = LinegateRun(tmp_path / "blind", sim.port, no_camera)
        blind.wait_event("inspection_suspended", timeout_s=30)
        blind.wait_event("camera_open_failed", count=2, timeout_s=30)
        code, text = status(blind.instance, runtime_dir)
        stderr = blind.stop()
    finally:
        sim.stop()
    assert code == 1 and "FAULT" in text and "camera down" in text, text
    assert blind.proc.returncode == 0, stderr  # a requested stop; the fault is in the summary
    assert "fault    camera down, reconnecting:" in stderr and "still at the end" in stderr, stderr


def test_reload_command_returns_the_outcome_applied_or_refused(tmp_path: Path, runtime_dir: Path) -> None:
    """`linegate reload` sends SIGHUP and returns 0 once the new model runs, 1 with the reason when refused."""
    sim = PlcSimProcess(free_port())
    try:
        run = LinegateRun(tmp_path, sim.port)
        run.wait_event("inspection_resumed")
        run.config.write_text(run.config.read_text().replace('id = "demo-ball-zone-v1"', 'id = "demo-ball-zone-v2"'))
        out, err = io.StringIO(), io.StringIO()
        code = reload_command(run.instance, out, err, 60.0, runtime_dir)
        returned = datetime.now(timezone.utc)
        assert code == 0 and "reload applied (model demo-ball-zone-v2)" in out.getvalue(), err.getvalue()
        # The journal record may reach the log file a moment after the state file: its time stamp
        # (taken when it was emitted) tells whether the reload was applied before the command returned.
        applied = run.wait_event("reload_applied", timeout_s=10)
        assert datetime.fromisoformat(applied["ts"].replace("Z", "+00:00")) <= returned, (applied, returned)
        run.config.write_text(run.config.read_text().replace("width = 640", "width = 320"))
        out, err = io.StringIO(), io.StringIO()
        code = reload_command(run.instance, out, err, 60.0, runtime_dir)
        run.stop()
    finally:
        sim.stop()
    assert code == 1 and "REFUSED" in err.getvalue() and "camera.width" in err.getvalue(), err.getvalue()
