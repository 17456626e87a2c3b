"""The reject image archive in the running service: every reject's frame (and 1 in N passes) on disk
with its metadata, the images the camera really sent; a directory that cannot be written costs
images (counted), never a verdict, a record or a reject."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from linegate.demo.runner import PlcSimProcess
from tests.pipeline.harness import assert_every_frame_and_reject_accounted, demo_config_file, records, run_linegate
from tests.pipeline.test_end_to_end import viky_frames

FRAMES = 300
PASSES_ONE_IN = 10

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def archive_config(tmp_path: Path, port: int, directory: Path) -> Path:
    config, _instance = demo_config_file(tmp_path, port)
    text = config.read_text() + (
        f'\n[archive]\nenabled = true\ndirectory = "{directory}"\npasses_one_in = {PASSES_ONE_IN}\nqueue_frames = 16\n'
    )
    config.write_text(text)
    return config


def test_rejects_and_sampled_passes_are_archived_with_their_frames(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """Each reject's image is the camera's frame for that part, its sidecar names part, verdict and
    model; every 10th pass is there too; archive_summary counts what was written."""
    directory = tmp_path / "archive"
    config = archive_config(tmp_path, plc_sim.port, directory)
    log = tmp_path / "run.jsonl"
    result = run_linegate("run", "--config", str(config), "--max-frames", str(FRAMES), "--log-file", str(log))
    assert result.returncode == 0, result.stderr
    recs = records(log)
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(coil=0))
    frames = {r["part_id"]: r for r in recs if r["event"] == "frame"}
    rejects = sorted(p for p, r in frames.items() if r["verdict"] == "reject")
    passes = sorted(p for p, r in frames.items() if r["verdict"] == "pass")
    assert rejects and passes

    sidecars = {}
    for path in directory.glob("*/*.json"):
        meta = json.loads(path.read_text())
        sidecars[meta["part_id"]] = (path, meta)
    archived_rejects = sorted(p for p, (_, m) in sidecars.items() if m["verdict"] == "reject")
    archived_passes = sorted(p for p, (_, m) in sidecars.items() if m["verdict"] == "pass")
    assert archived_rejects == rejects
    assert len(archived_passes) == len(passes) // PASSES_ONE_IN
    assert set(archived_passes) <= set(passes)

    (summary,) = [r for r in recs if r["event"] == "archive_summary"]
    assert summary["written"] == len(sidecars)
    assert summary["dropped_queue_full"] == summary["dropped_write_error"] == 0

    camera = viky_frames(max(r["frame_id"] for r in frames.values()))
    checked = 0
    for part in rejects[:20]:
        path, meta = sidecars[part]
        assert meta["model"] == "demo-ball-zone-v1" and meta["basis"] == "model"
        assert meta["t_acquired_ns"] == frames[part]["t_acquired_ns"]
        image = np.asarray(Image.open(path.with_suffix(".png")))
        expected = camera.get(frames[part]["frame_id"])
        if expected is not None:
            np.testing.assert_array_equal(image, expected)
            checked += 1
    assert checked >= 10


def test_an_unwritable_archive_drops_images_and_nothing_else(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """archive.directory under a regular file (ENOTDIR): every frame still gets its verdict, record
    and PLC delivery; each image offered is reported as a dropped write, none written."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the archive folder should be")
    config = archive_config(tmp_path, plc_sim.port, blocker / "archive")
    log = tmp_path / "run.jsonl"
    result = run_linegate("run", "--config", str(config), "--max-frames", str(FRAMES), "--log-file", str(log))
    assert result.returncode == 0, result.stderr
    recs = records(log)
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(coil=0))
    frames = [r for r in recs if r["event"] == "frame"]
    assert all(r["basis"] == "model" for r in frames)
    (summary,) = [r for r in recs if r["event"] == "archive_summary"]
    assert summary["written"] == 0
    assert summary["accepted"] > 0
    assert summary["dropped_write_error"] + summary["dropped_queue_full"] == summary["offered"]
    assert any(r["event"].startswith("archive_") and r["level"] == "warning" for r in recs)
