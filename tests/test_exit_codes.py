"""Errors no restart can fix end `linegate run` with an exit status systemd does not restart on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.config.test_check import demo_copy, free_closed_port, garbage, model_path, onnx_model
from tests.conftest import REPO, unique_instance

UNIT = REPO / "systemd" / "linegate.service"


def restart_prevent_statuses() -> set[int]:
    """The exit statuses listed in the unit's RestartPreventExitStatus=."""
    lines = [line for line in UNIT.read_text().splitlines() if line.startswith("RestartPreventExitStatus=")]
    return {int(v) for line in lines for v in line.split("=", 1)[1].split() if v.isdigit()}


@pytest.mark.parametrize("model", ["garbage", "wrong input shape"])
def test_unusable_model_ends_run_with_a_status_systemd_does_not_restart(tmp_path: Path, model: str) -> None:
    """`linegate run` with a model that cannot load (garbage) or does not fit the preprocessing exits
    with a status in the unit's RestartPreventExitStatus= (78), naming the model file."""
    bad = garbage(tmp_path) if model == "garbage" else onnx_model(tmp_path / "small.onnx", (1, 1, 12, 16))
    path = demo_copy(
        tmp_path,
        model_path(bad),
        ('name = "demo"', f'name = "{unique_instance()}"'),
        ("port = 5020", f"port = {free_closed_port()}"),  # no PLC needed: start-up stops at the model
    )
    done = subprocess.run(
        [sys.executable, "-m", "linegate", "run", "--config", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode in restart_prevent_statuses(), done.stderr
    assert done.returncode == 78
    (failed,) = [r for r in map(json.loads, done.stdout.splitlines()) if r.get("event") == "linegate_failed"]
    assert failed["exit_code"] == 78 and str(bad) in failed["error"]
