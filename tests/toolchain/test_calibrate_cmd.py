"""``linegate calibrate``: QDQ model and report written on agreement, refused below it unless --force, exit codes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from linegate.cli import main
from linegate.engine.accuracy import is_held_out
from linegate.engine.image_files import files_digest
from tests.engine.onnx_models import linear_classifier
from tests.toolchain.frame_sets import ball_frames, demo_config, far_levels, level_frames, write_config

pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test models and runs the quantiser")


def report_of(output: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(output.with_name(f"{output.stem}.report.json").read_text())
    return data


@pytest.fixture
def linear(tmp_path: Path) -> tuple[Path, list[Path], list[Path]]:
    """Config for the linear mean classifier, 30 calibration and 10 held-out frames far from its threshold."""
    model = linear_classifier(tmp_path / "lin.onnx")
    calib = level_frames(tmp_path / "calib", far_levels(30, seed=1), seed=2)
    held = level_frames(tmp_path / "held", far_levels(10, seed=3), seed=4)
    return write_config(tmp_path / "lin.toml", model), calib, held


def test_agreeing_int8_is_written_with_a_full_report(
    tmp_path: Path, linear: tuple[Path, list[Path], list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Full agreement: exit 0, the QDQ model beside the FP32 one, a report with counts, hashes, figures, versions."""
    import onnxruntime

    config, calib, held = linear
    code = main(["calibrate", "--config", str(config), "--images", str(tmp_path / "calib"),
                 "--holdout", str(tmp_path / "held")])
    assert code == 0
    output = tmp_path / "lin.int8.onnx"
    report = report_of(output)
    assert report["outcome"] == "accepted" and report["int8_model_written"] is True
    assert report["model"]["int8_sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert report["calibration"]["images"] == 30
    assert report["calibration"]["sha256"] == files_digest(calib)
    assert report["holdout"] == {"source": "folder", "folder": str(tmp_path / "held"), "images": 10,
                                 "sha256": files_digest(held)}
    verdicts = report["gate"]["verdicts"]
    assert (verdicts["frames"], verdicts["agree"], verdicts["agreement"]) == (10, 10, 1.0)
    assert verdicts["reference_rejects"] == 5  # far_levels: every other frame is dark
    assert 0 < report["gate"]["score_error"]["max_abs"] < 0.05
    assert report["thresholds"]["reject_thresholds"] == {"reject": 0.5}
    assert report["thresholds"]["min_agreement_percent"] == 99.5
    assert report["quantisation"]["onnxruntime"] == onnxruntime.__version__
    assert "exact INT8" in report["gate"]["execution"]["int8"]
    err = capsys.readouterr().err
    assert "WARNING: only 30 calibration images (fewer than 500)" in err
    assert "WARNING: only 10 held-out frames" in err
    assert len(report["warnings"]) == 2
    assert not list(tmp_path.glob(".*partial*"))


def test_without_holdout_a_name_hash_share_is_held_out(tmp_path: Path) -> None:
    """No --holdout: files whose name hashes below --holdout-share are held out, the rest calibrate."""
    model = linear_classifier(tmp_path / "lin.onnx")
    paths = level_frames(tmp_path / "all", far_levels(40, seed=5), seed=6)
    config = write_config(tmp_path / "lin.toml", model)
    output = tmp_path / "out" / "q.onnx"
    assert main(["calibrate", "--config", str(config), "--images", str(tmp_path / "all"), "--holdout-share", "0.3",
                 "--output", str(output)]) == 0
    held = [p for p in paths if is_held_out(p.name, 0.3)]
    calib = [p for p in paths if not is_held_out(p.name, 0.3)]
    report = report_of(output)
    assert report["holdout"]["source"] == "split" and report["holdout"]["share"] == 0.3
    assert report["holdout"]["images"] == len(held) and report["calibration"]["images"] == len(calib)
    assert report["holdout"]["sha256"] == files_digest(held)
    assert report["calibration"]["sha256"] == files_digest(calib)
    assert 0 < len(held) < 40 and output.is_file()


def test_disagreeing_int8_is_refused_then_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Demo model INT8 flips verdicts near its zone edges: exit 1 naming figures and --force; --force writes it."""
    config = demo_config(tmp_path / "demo.toml")
    ball_frames(tmp_path / "calib", 40, seed=1)
    ball_frames(tmp_path / "held", 40, seed=11, near_edges=True)
    output = tmp_path / "ball.int8.onnx"
    argv = ["calibrate", "--config", str(config), "--images", str(tmp_path / "calib"), "--holdout",
            str(tmp_path / "held"), "--output", str(output)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    report = report_of(output)
    verdicts = report["gate"]["verdicts"]
    assert report["outcome"] == "refused" and report["model"]["int8"] is None and not output.exists()
    assert verdicts["agree"] < 40 and verdicts["false_rejects"] + verdicts["missed_rejects"] == 40 - verdicts["agree"]
    assert f"agree with FP32 on {100 * verdicts['agreement']:.2f}% of 40 held-out frames" in err
    assert "below --min-agreement 99.5%" in err and "add --force" in err
    assert not list(tmp_path.glob(".*partial*"))

    assert main([*argv, "--force"]) == 0
    assert output.is_file() and report_of(output)["outcome"] == "forced"
    capsys.readouterr()
    assert main(argv) == 1  # refused again: the forced model stays, and the message says it was not gated now
    assert "ball.int8.onnx already there is from an earlier run and was not gated now" in capsys.readouterr().err


def test_min_agreement_is_a_percentage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--min-agreement 0.995 (a fraction) is a usage error, not a 0.995% gate."""
    with pytest.raises(SystemExit) as info:
        main(["calibrate", "--config", "x.toml", "--images", "d", "--min-agreement", "0.995"])
    assert info.value.code == 2
    assert "expected a percentage between 50 and 100 such as 99.5" in capsys.readouterr().err


def test_engine_file_as_model_and_bad_frame_are_config_errors(
    tmp_path: Path, linear: tuple[Path, list[Path], list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A TensorRT engine as --model and a frame of the wrong size exit 78, naming the file."""
    config, _, _ = linear
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    assert main(["calibrate", "--config", str(config), "--images", str(tmp_path / "calib"), "--model",
                 str(engine)]) == 78
    assert "m.engine: calibrate quantises an ONNX model" in capsys.readouterr().err
    import numpy as np

    np.save(tmp_path / "calib" / "f-0003.npy", np.zeros((24, 32), dtype=np.uint8))
    assert main(["calibrate", "--config", str(config), "--images", str(tmp_path / "calib"), "--holdout",
                 str(tmp_path / "held")]) == 78
    assert "f-0003.npy: array is uint8 [24, 32], the camera gives Mono8 frames as uint8 [12, 16]" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "lin.int8.onnx").exists()


def test_holdout_overlapping_the_calibration_set_is_refused(
    tmp_path: Path, linear: tuple[Path, list[Path], list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Held-out frames that are calibration frames too would prove nothing: usage error (2)."""
    config, _, _ = linear
    assert main(["calibrate", "--config", str(config), "--images", str(tmp_path / "calib"), "--holdout",
                 str(tmp_path / "calib")]) == 2
    assert "--holdout shares 30 files with --images" in capsys.readouterr().err
