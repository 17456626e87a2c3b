"""A stop that arrives while a reload (or a recipe switch) is handing a worker over still decides
every frame: whichever of the two workers holds the role drains the ring."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from linegate.demo.runner import PlcSimProcess
from tests.pipeline.harness import LinegateRun, assert_every_frame_and_reject_accounted


@pytest.mark.parametrize("delay_s", [0.0, 0.4, 0.9, 1.5])
def test_sigterm_during_a_reload_hand_over_leaves_no_frame_unresolved(
    tmp_path: Path, plc_sim: PlcSimProcess, delay_s: float
) -> None:
    """SIGHUP with a new model, then SIGTERM *delay_s* later (before, during or after the hand-over):
    exit 0, every frame one verdict and one record, nothing left in the ring."""
    run = LinegateRun(tmp_path, plc_sim.port)
    run.wait_frames(50)
    run.config.write_text(run.config.read_text().replace('id = "demo-ball-zone-v1"', 'id = "demo-ball-zone-v2"'))
    run.proc.send_signal(signal.SIGHUP)
    time.sleep(delay_s)
    stderr = run.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    assert not [r for r in recs if r["event"] == "frame_unresolved"]
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(0))
