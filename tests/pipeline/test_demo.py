"""`linegate demo`, the README's first command, runs the whole pipeline and reconciles."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import DEMO_CONFIG
from tests.pipeline.harness import MODEL, records, run_linegate


def test_demo_runs_end_to_end_and_its_pulses_match(tmp_path: Path) -> None:
    """The demo prints live lines, a reconciled summary, and the PLC saw exactly the delivered pulses."""
    log = tmp_path / "demo.jsonl"
    result = run_linegate("demo", "--max-frames", "250", "--log-file", str(log))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"\] fps +\d+\.\d \| latency p50", out)
    assert "frames   acquired 250 = decided 250 + dropped 0" in out
    assert "reconciled: every frame has one verdict" in out
    seen = re.search(
        r"plc-sim  saw (\d+) (?:reject pulses|acknowledged results) for (\d+) parts \(linegate delivered (\d+)\)", out
    )
    assert seen and seen.group(1) == seen.group(2) == seen.group(3) and int(seen.group(1)) > 0
    assert sum(r["event"] == "frame" for r in records(log)) == 250


S7_PLC = """[plc]
protocol = "s7"
mode = "{mode}"
pulse_ms = 2.0

[plc.s7]
host = "127.0.0.1"
port = 1102
db = 100
{outputs}
"""


@pytest.mark.parametrize("mode", ["pulse", "handshake"])
def test_demo_runs_against_the_s7_simulator(tmp_path: Path, mode: str) -> None:
    """`linegate demo --config` with protocol = "s7": the S7 simulator takes exactly what linegate delivered
    (by part id in handshake mode; counted in pulse mode, whose S7 output carries no part id)."""
    text = DEMO_CONFIG.read_text().replace('path = "../engines/demo/ball_zone.onnx"', f'path = "{MODEL}"')
    start, end = text.index("[plc]\n"), text.index("[scheduling]")
    outputs = "reject_byte = 60\nfault_byte = 61" if mode == "pulse" else ""
    config = tmp_path / "s7.toml"
    config.write_text(text[:start] + S7_PLC.format(mode=mode, outputs=outputs) + "\n" + text[end:])
    result = run_linegate(
        "demo", "--config", str(config), "--max-frames", "200", "--log-file", str(tmp_path / "d.jsonl")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    seen = re.search(r"plc-sim  saw (\d+) .*\(linegate delivered (\d+)\)", result.stdout)
    assert seen and seen.group(1) == seen.group(2) and int(seen.group(1)) > 0, result.stdout
    if mode == "handshake":
        assert re.search(r"acknowledged results for (\d+) parts", result.stdout)


def test_demo_with_three_cameras_matches_each_cameras_pulses(tmp_path: Path) -> None:
    """`linegate demo --cameras 3`: the simulated producer's three devices in one linegate; the summary
    gives each camera's figures and the PLC saw exactly each camera's delivered pulses on its own coil."""
    log = tmp_path / "demo.jsonl"
    result = run_linegate("demo", "--cameras", "3", "--max-frames", "150", "--log-file", str(log))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "frames   acquired 450 = decided 450 + dropped 0" in out
    for name in ("cam0", "cam1", "cam2"):
        assert re.search(rf"camera {name}: acquired 150, decided 150, reject \d+", out), out
        seen = re.search(rf"plc-sim  saw (\d+) reject pulses from camera {name} for (\d+) parts "
                         r"\(linegate delivered (\d+)\)", out)  # fmt: skip
        assert seen and seen.group(1) == seen.group(2) == seen.group(3) and int(seen.group(1)) > 0, out
    assert {r["camera"] for r in records(log) if r["event"] == "frame"} == {"cam0", "cam1", "cam2"}


def test_demo_cameras_is_one_to_three() -> None:
    result = run_linegate("demo", "--cameras", "4")
    assert result.returncode == 2 and "expected 1, 2 or 3 (the simulated producer has 3 devices)" in result.stderr
