"""`linegate demo`, the README's first command, runs the whole pipeline and reconciles."""

from __future__ import annotations

import re
from pathlib import Path

from tests.pipeline.harness import records, run_linegate


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
