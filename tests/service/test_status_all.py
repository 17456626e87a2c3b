"""`linegate status --all`: a station running one instance per camera sees every live one, and the
exit code is 0 only when each of them inspects. Real state files in a directory of the test's
(as the supervisor writes them), read by the real command."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from linegate.service.commands import EXIT_FAULT, EXIT_NOT_RUNNING, EXIT_OK, status_all_command
from linegate.service.state_file import state_path, write_state


def state(instance: str, phase: str, faults: list[str], pid: int) -> dict[str, Any]:
    return {
        "instance": instance, "config": f"/etc/linegate/{instance}.toml", "started_unix": 0.0, "pid": pid,
        "state": phase, "faults": faults, "uptime_s": 60.0, "model": "m1", "plc": "modbus 127.0.0.1:502",
        "fps": 99.5, "frames": 5970, "rejects": 12, "delivered": 12, "undelivered": 0, "deadline_misses": 0,
        "dropped": 0, "plc_connected": True, "restarts": 0, "reload": {},
    }  # fmt: skip


def run_all(directory: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = status_all_command(out, err, directory)
    return code, out.getvalue() + err.getvalue()


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_every_live_instance_is_shown_and_one_fault_fails_the_check(tmp_path: Path) -> None:
    assert run_all(tmp_path) == (EXIT_NOT_RUNNING, "linegate is not running (no live instance found)\n")
    write_state(state_path("cam1", tmp_path), state("cam1", "inspecting", [], os.getpid()))
    write_state(state_path("cam2", tmp_path), state("cam2", "inspecting", [], os.getpid()))
    write_state(state_path("old", tmp_path), state("old", "fault", ["camera down"], dead_pid()))  # left by a kill
    code, text = run_all(tmp_path)
    assert code == EXIT_OK, text
    assert "linegate cam1: INSPECTING" in text and "linegate cam2: INSPECTING" in text and "old" not in text
    assert text.rstrip().endswith("2 instance(s) running; all inspecting")

    write_state(state_path("cam2", tmp_path), state("cam2", "fault", ["camera down, reconnecting"], os.getpid()))
    code, text = run_all(tmp_path)
    assert code == EXIT_FAULT
    assert "linegate cam2: FAULT - camera down, reconnecting" in text
    assert text.rstrip().endswith("2 instance(s) running; NOT inspecting: cam2")


def test_the_cli_flag_reads_the_runtime_directory(tmp_path: Path) -> None:
    """`linegate status --all` as maintenance runs it, with the runtime directory systemd would give."""
    write_state(state_path("cam1", tmp_path), state("cam1", "inspecting", [], os.getpid()))
    proc = subprocess.run([sys.executable, "-m", "linegate", "status", "--all"], capture_output=True, text=True,
                          env={**os.environ, "RUNTIME_DIRECTORY": str(tmp_path)})  # fmt: skip
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "linegate cam1: INSPECTING" in proc.stdout and "1 instance(s) running; all inspecting" in proc.stdout
