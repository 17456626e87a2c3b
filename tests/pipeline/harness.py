"""Run `linegate` as a real process against a real PLC simulator, and read its records back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import DEMO_CONFIG, unique_instance

MODEL = (DEMO_CONFIG.parent / ".." / "engines" / "demo" / "ball_zone.onnx").resolve()


def demo_config_file(tmp_path: Path, plc_port: int, replace: dict[str, str] | None = None) -> tuple[Path, str]:
    """A copy of config/demo.toml in *tmp_path* using *plc_port* and a fresh instance name."""
    instance = unique_instance()
    text = DEMO_CONFIG.read_text()
    edits = {
        'name = "demo"': f'name = "{instance}"',
        "port = 5020": f"port = {plc_port}",
        'path = "../engines/demo/ball_zone.onnx"': f'path = "{MODEL}"',
        **(replace or {}),
    }
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{instance}.toml"
    path.write_text(text)
    return path, instance


def run_linegate(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linegate", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def start_linegate(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "linegate", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
