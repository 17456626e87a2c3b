"""``linegate compare``: figures per output and over all, verdict agreement, tolerances and exit codes."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linegate.cli import main
from linegate.engine.image_files import list_images, read_frame
from linegate.toolchain.compare_cmd import over_tolerance
from tests.toolchain.frame_sets import centred_classifier, level_frames, reject_probability, write_config

pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test models")

LEVELS = [110, 118, 137, 145, 60, 200]
"""Frame grey levels: four near the threshold (127.5), where a change of gain moves scores most."""


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A config whose model is the gain-10 classifier, and a folder of frames."""
    model = centred_classifier(tmp_path / "ref.onnx", 10.0)
    level_frames(tmp_path / "frames", LEVELS, seed=1)
    return write_config(tmp_path / "c.toml", model), tmp_path / "frames"


def compare(config: Path, frames: Path, candidate: Path, *extra: str, out: Path | None = None) -> tuple[int, Any]:
    args = ["compare", "--config", str(config), "--images", str(frames), "--candidate", str(candidate), *extra]
    if out is not None:
        args += ["--json", str(out)]
    code = main(args)
    return code, (json.loads(out.read_text()) if out is not None else None)


def test_same_model_is_within_tolerance(tmp_path: Path, setup: tuple[Path, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A copy of the reference model: exit 0, zero error, every verdict the same, a table per output."""
    config, frames = setup
    shutil.copy(tmp_path / "ref.onnx", tmp_path / "copy.onnx")
    code, figures = compare(config, frames, tmp_path / "copy.onnx", out=tmp_path / "f.json")
    assert code == 0
    assert figures["score_error"]["max_abs"] == 0.0 and figures["verdicts"]["agreement"] == 1.0
    assert figures["verdicts"]["reference_rejects"] == 3 and figures["frames"] == 6
    out = capsys.readouterr().out
    assert "6/6 agree (100.00%)" in out and "within tolerances" in out
    assert [line.split()[0] for line in out.splitlines() if line.split()[:1] in (["pass"], ["reject"], ["all"])] == [
        "pass", "reject", "all"]


def test_another_gain_is_over_the_absolute_tolerance(tmp_path: Path, setup: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Gain 20 vs 10: the measured max error is the analytic one; exit 1 at 0.05, exit 0 with a looser tolerance."""
    config, frames = setup
    candidate = centred_classifier(tmp_path / "cand.onnx", 20.0)
    means = [float(read_frame(p, (12, 16), "Mono8").mean()) / 255.0 for p in list_images(frames)]
    expected = max(abs(reject_probability(m, 20.0) - reject_probability(m, 10.0)) for m in means)
    code, figures = compare(config, frames, candidate, out=tmp_path / "f.json")
    assert code == 1
    assert figures["per_output"]["reject"]["max_abs"] == pytest.approx(expected, rel=1e-4)
    assert figures["score_error"]["max_abs"] == pytest.approx(expected, rel=1e-4) and expected > 0.05
    assert figures["verdicts"]["agreement"] == 1.0  # a steeper curve, the same side of the threshold
    assert f"max absolute error {expected:.4g} > --max-abs-error 0.05" in capsys.readouterr().err
    assert compare(config, frames, candidate, "--max-abs-error", "0.5")[0] == 0


def test_moved_threshold_fails_on_verdicts(tmp_path: Path, setup: tuple[Path, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A candidate rejecting up to a mean of 0.6 disagrees on the frames between 0.5 and 0.6: counted, exit 1."""
    config, frames = setup
    candidate = centred_classifier(tmp_path / "cand.onnx", 10.0, centre=0.6)
    code, figures = compare(config, frames, candidate, "--max-abs-error", "1", out=tmp_path / "f.json")
    assert code == 1
    verdicts = figures["verdicts"]
    counts = (verdicts["frames"], verdicts["agree"], verdicts["false_rejects"], verdicts["missed_rejects"])
    assert counts == (6, 4, 2, 0)
    assert "verdicts agree on 66.67% of 6 frames < --min-agreement 99.5% (0 missed rejects, 2 false rejects)" in (
        capsys.readouterr().err
    )


def test_qdq_candidate_is_simulated_unless_cpu_kernels_are_asked_for(tmp_path: Path,
                                                                     setup: tuple[Path, Path]) -> None:
    """The figures say how each model ran: a QDQ model as exact-INT8 simulation, or ORT's CPU int8 kernels."""
    from linegate.engine.quantize import QuantOptions, quantize_qdq

    config, frames = setup
    qdq = tmp_path / "ref.int8.onnx"
    tensors = [np.full((1, 1, 12, 16), v, dtype=np.float32) for v in (0.0, 0.3, 0.7, 1.0)]
    quantize_qdq(tmp_path / "ref.onnx", qdq, "image", tensors, 4, QuantOptions())
    code, figures = compare(config, frames, qdq, out=tmp_path / "a.json")
    assert code == 0 and "exact INT8" in figures["candidate"]["execution"]
    assert "linegate's onnxruntime backend" in figures["reference"]["execution"]
    _, figures = compare(config, frames, qdq, "--cpu-int8-kernels", out=tmp_path / "b.json")
    assert "int8 kernels" in figures["candidate"]["execution"]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed: nothing to skip")
def test_tensorrt_engine_without_tensorrt_is_skipped_and_says_so(tmp_path: Path, setup: tuple[Path, Path],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A .engine candidate where TensorRT is missing: nothing compared, exit 1, the reason and where to run it."""
    config, frames = setup
    (tmp_path / "m.engine").write_bytes(b"plan")
    assert compare(config, frames, tmp_path / "m.engine")[0] == 1
    err = capsys.readouterr().err
    assert "SKIPPED, nothing compared" in err and "m.engine is a TensorRT engine" in err and "Jetson" in err


def test_over_tolerance_names_each_exceeded_limit() -> None:
    """Each exceeded tolerance is one line with the figure and the option; relative error only when asked."""
    figures = {"score_error": {"max_abs": 0.1, "max_rel": 3.0},
               "verdicts": {"agreement": 0.99, "frames": 100, "missed_rejects": 1, "false_rejects": 0}}
    assert over_tolerance(figures, 0.2, None, 99.0) == []
    lines = over_tolerance(figures, 0.05, 2.0, 99.5)
    assert lines == [
        "max absolute error 0.1 > --max-abs-error 0.05",
        "max relative error 3 > --max-rel-error 2",
        "verdicts agree on 99.00% of 100 frames < --min-agreement 99.5% (1 missed rejects, 0 false rejects)",
    ]
