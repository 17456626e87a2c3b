"""``linegate calibrate``: an FP32 ONNX model to a QDQ INT8 model, gated on held-out line frames.

Calibration frames go through exactly the runtime preprocessing of the configuration. The gate runs
FP32 and INT8 on the CPU (ONNX Runtime) over held-out frames, decides each verdict with the runtime's
postprocessing and refuses the INT8 model below ``--min-agreement`` unless ``--force``. A JSON report
is written beside the output either way.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from linegate.toolchain.arg_types import SHARE, percent, whole

if TYPE_CHECKING:
    from linegate.config.schema import ModelSection
    from linegate.engine.quantize import QuantOptions
    from linegate.vision.preprocess import Preprocessor

SUMMARY = "quantise an ONNX model to INT8 (QDQ) on line frames and gate it against FP32"
DESCRIPTION = (
    "Quantise the configuration's ONNX model (or --model) to INT8 with ONNX Runtime static quantisation "
    "(QDQ format, symmetric INT8 as TensorRT needs), calibrated on the frames in --images, each passed through "
    "exactly the preprocessing of the configuration. Then run FP32 and INT8 on the CPU over held-out frames "
    "(--holdout, or a deterministic share of --images picked by file-name hash) and compare verdicts (through "
    "the configuration's postprocessing and thresholds) and scores; INT8 is simulated with each quantised "
    "tensor at its exact INT8 value (as TensorRT's explicit quantisation prescribes), not with ONNX Runtime's "
    "CPU int8 kernels. Writes the QDQ model (default: <model>.int8.onnx beside the model) only when verdicts "
    "agree on at least --min-agreement percent of the held-out frames, or with --force, and a JSON report "
    "beside it in every case (x.int8.onnx -> x.int8.report.json: counts, agreement, errors, set hashes, "
    "thresholds, versions). Build the TensorRT engine from the QDQ "
    "model with build-engine. Frames come from `linegate capture` (PNG, BMP, TIFF or .npy, each a whole camera "
    "frame); fewer than 500 calibration frames is warned about. Exit 0: written; 1: refused (or a missing "
    "package); 2: wrong options; 78: a bad configuration, model or frame file."
)

MIN_CALIBRATION_IMAGES = 500
DEFAULT_MIN_AGREEMENT = 99.5
DEFAULT_HOLDOUT_SHARE = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", metavar="FILE", type=Path, required=True,
        help="linegate configuration: its camera, model.preprocess and model.postprocess are used")
    add("--images", metavar="DIR", type=Path, required=True,
        help="folder of calibration frames (from `linegate capture`); at least 500 recommended")
    add("--holdout", metavar="DIR", type=Path, default=None,
        help="folder of held-out frames for the gate (recommended: captured apart from --images); default: hold "
        "out --holdout-share of --images, chosen by a hash of each file name (deterministic)")
    add("--holdout-share", metavar="SHARE", type=SHARE, default=DEFAULT_HOLDOUT_SHARE,
        help="without --holdout: the share of --images held out (default: %(default)s)")
    add("--model", metavar="ONNX", type=Path, default=None,
        help="the FP32 ONNX model (default: the configuration's model.path)")
    add("--output", metavar="ONNX", type=Path, default=None,
        help="the QDQ INT8 model to write (default: <model>.int8.onnx beside the model)")
    add("--min-agreement", metavar="PERCENT", type=percent(50.0), default=DEFAULT_MIN_AGREEMENT,
        help="least share of held-out frames on which INT8 and FP32 verdicts must agree (default: %(default)s)")
    add("--force", action="store_true",
        help="write the INT8 model even below --min-agreement (the report records it)")
    add("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
        help="calibration method: ranges from min/max, or chosen from histograms by entropy or percentile "
        "(slower) (default: %(default)s)")
    add("--per-tensor", action="store_true",
        help="one weight scale per tensor instead of per output channel")
    add("--exclude-node", metavar="NAME", action="append", default=[],
        help="keep this ONNX node's weights and computation in float (repeatable; default: none). Its input stays "
        "quantised while the node producing it is quantised: exclude a whole chain to keep a precise path float")
    add("--threads", metavar="N", type=whole(1, 64, what="a whole number of threads"), default=None,
        help="ONNX Runtime threads for the gate (default: the configuration's model.threads)")


def run(args: argparse.Namespace) -> int:
    import time

    from linegate.config import load_config
    from linegate.config.check import frame_shape
    from linegate.engine.compare import require_onnx
    from linegate.errors import ConfigError
    from linegate.vision.preprocess import build_preprocessor

    started = time.perf_counter_ns()
    cfg = load_config(args.config)
    require_onnx("quantisation (ONNX Runtime's tool)")
    model_path, output = _model_paths(args, cfg.model.path)
    if cfg.model.preprocess.dtype != "float32":
        raise ConfigError(f"{args.config}: model.preprocess.dtype: calibrate needs a float32 model input")
    shape = frame_shape(cfg.camera)
    preprocess = build_preprocessor(cfg.model.preprocess, shape, cfg.camera.pixel_format)
    calibration, holdout, holdout_source = _frame_sets(args)
    shared = {p.resolve() for p in calibration} & {p.resolve() for p in holdout}
    if shared:
        print(f"linegate calibrate: --holdout shares {len(shared)} files with --images (e.g. {min(shared)}); the "
              "gate needs frames the calibration did not see", file=sys.stderr)
        return 2
    warnings = set_warnings(len(calibration), len(holdout), args.min_agreement)
    for line in warnings:
        print(f"linegate calibrate: WARNING: {line}", file=sys.stderr)

    from linegate.engine import quantize
    from linegate.engine.image_files import files_digest

    options = quantize.QuantOptions(args.method, not args.per_tensor, tuple(args.exclude_node))
    had_output = output.exists()
    frames = (shape, cfg.camera.pixel_format)
    gate = _quantise_and_gate(args, cfg.model, model_path, output, preprocess, frames, calibration, holdout, options)
    report = {
        "outcome": "accepted" if gate.accepted else "forced" if gate.written else "refused",
        "int8_model_written": gate.written,
        "created_utc": _utc_now(),
        "duration_s": {"total": round((time.perf_counter_ns() - started) / 1e9, 3), **gate.duration_s},
        "config": str(args.config.resolve()),
        "model": {"id": cfg.model.id, "fp32": str(model_path), "fp32_sha256": _sha256(model_path),
                  "int8": str(output) if gate.written else None,
                  "int8_sha256": _sha256(output) if gate.written else None, "input_name": gate.input_name},
        "quantisation": options.describe(),
        "preprocess": cfg.model.preprocess.model_dump(mode="json"),
        "camera_frames": {"width": cfg.camera.width, "height": cfg.camera.height,
                          "pixel_format": cfg.camera.pixel_format},
        "calibration": {"folder": str(args.images), "images": gate.calibration_frames,
                        "sha256": files_digest(calibration), "hash_rule": HASH_RULE},
        "holdout": {**holdout_source, "images": len(holdout), "sha256": files_digest(holdout)},
        "thresholds": {"classes": list(cfg.model.postprocess.classes), "scores": cfg.model.postprocess.scores,
                       "reject_thresholds": dict(cfg.model.postprocess.reject_thresholds),
                       "min_agreement_percent": args.min_agreement},
        "gate": gate.figures,
        "warnings": warnings,
    }
    report_path = output.with_name(f"{output.stem}.report.json")
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(summary(report, report_path))
    if gate.written:
        return 0
    print(refusal(report, output, report_path, stale_output=had_output), file=sys.stderr)
    return 1


def _quantise_and_gate(
    args: argparse.Namespace,
    model: ModelSection,
    model_path: Path,
    output: Path,
    preprocess: Preprocessor,
    frames: tuple[tuple[int, ...], str],
    calibration: list[Path],
    holdout: list[Path],
    options: QuantOptions,
) -> GateRun:
    """Quantise into a staged file, run FP32 and INT8 on the held-out frames, move the INT8 model into place
    when accepted (or forced); the staged file never outlives this call."""
    import time

    from linegate.engine import quantize
    from linegate.engine.accuracy import assess
    from linegate.engine.compare import check_classes, engine_for, execution, run_pair
    from linegate.engine.image_files import model_inputs

    shape, pixel_format = frames
    input_name = quantize.model_input_name(model_path, model.input_name)
    model_cfg = model.model_copy(update={"input_name": input_name})
    output.parent.mkdir(parents=True, exist_ok=True)
    staged = output.with_name(f".{output.stem}.partial.onnx")
    try:
        print(f"calibrating on {len(calibration)} frames from {args.images} ({options.method})", file=sys.stderr)
        t0 = time.perf_counter_ns()
        inputs = model_inputs(calibration, preprocess, shape, pixel_format)
        used = quantize.quantize_qdq(model_path, staged, input_name, inputs, len(calibration), options)
        print(f"gating on {len(holdout)} held-out frames", file=sys.stderr)
        t1 = time.perf_counter_ns()
        with engine_for(model_cfg, model_path, preprocess.spec, args.threads) as fp32, \
                engine_for(model_cfg, staged, preprocess.spec, args.threads) as int8:
            ref, cand = run_pair(fp32, int8, model_inputs(holdout, preprocess, shape, pixel_format))
        check_classes(ref, model_path, model.postprocess.classes)
        result = assess(ref, cand, model.postprocess)
        accepted = result.agreement.share >= args.min_agreement / 100.0
        written = accepted or args.force
        figures = {"execution": {"fp32": execution(model_path, False), "int8": execution(staged, False)},
                   **result.as_dict()}
        if written:
            staged.replace(output)
        t2 = time.perf_counter_ns()
    finally:
        staged.unlink(missing_ok=True)
    durations = {"quantise": round((t1 - t0) / 1e9, 3), "gate": round((t2 - t1) / 1e9, 3)}
    return GateRun(accepted, written, input_name, used, figures, durations)


@dataclass(frozen=True)
class GateRun:
    """What quantising and gating did."""

    accepted: bool
    written: bool
    input_name: str
    calibration_frames: int
    figures: dict[str, Any]
    duration_s: dict[str, float]


HASH_RULE = "sha256 over the files sorted by name: for each, name, NUL, size as 8 bytes big-endian, contents"


def _model_paths(args: argparse.Namespace, configured: Path) -> tuple[Path, Path]:
    """The FP32 model to quantise and the QDQ model to write, checked."""
    from linegate.errors import ConfigError

    model_path: Path = args.model or configured
    if model_path.suffix.lower() != ".onnx":
        raise ConfigError(f"{model_path}: calibrate quantises an ONNX model; give the FP32 .onnx with --model")
    if not model_path.is_file():
        raise ConfigError(f"{model_path}: model file not found")
    output: Path = args.output or model_path.with_name(f"{model_path.stem}.int8.onnx")
    if output.suffix.lower() != ".onnx":
        raise ConfigError(f"{output}: --output must end in .onnx (it is an ONNX model)")
    if output.resolve() == model_path.resolve():
        raise ConfigError(f"{output}: --output would overwrite the FP32 model")
    return model_path, output


def _frame_sets(args: argparse.Namespace) -> tuple[list[Path], list[Path], dict[str, Any]]:
    """Calibration files, held-out files and how the held-out set was chosen."""
    from linegate.engine.accuracy import holdout_split
    from linegate.engine.image_files import list_images
    from linegate.errors import ConfigError

    images = list_images(args.images)
    if args.holdout is not None:
        return images, list_images(args.holdout), {"source": "folder", "folder": str(args.holdout)}
    calibration, holdout = holdout_split(images, args.holdout_share)
    if not calibration or not holdout:
        raise ConfigError(
            f"{args.images}: {len(images)} images give {len(calibration)} for calibration and {len(holdout)} "
            "held out; capture more frames or give --holdout DIR"
        )
    rule = "held out when the first 8 bytes of sha256(file name), read as a fraction of 2**64, are below share"
    return calibration, holdout, {"source": "split", "folder": str(args.images), "share": args.holdout_share,
                                  "rule": rule}


def set_warnings(calibration: int, holdout: int, min_agreement_percent: float) -> list[str]:
    """What is too small about the frame sets: fewer than 500 calibration frames, too few to resolve the gate."""
    from linegate.engine.accuracy import frames_to_resolve

    warnings = []
    if calibration < MIN_CALIBRATION_IMAGES:
        warnings.append(
            f"only {calibration} calibration images (fewer than {MIN_CALIBRATION_IMAGES}): INT8 ranges from a "
            "small set may clip what the line shows; capture more with `linegate capture`"
        )
    needed = frames_to_resolve(min_agreement_percent / 100.0)
    if holdout < needed:
        warnings.append(
            f"only {holdout} held-out frames: a single disagreement already fails --min-agreement "
            f"{min_agreement_percent:g}% (at least {needed} frames are needed to tolerate one)"
        )
    return warnings


def summary(report: dict[str, Any], report_path: Path) -> str:
    """The report's figures in a few lines for a terminal."""
    gate = report["gate"]
    v, e = gate["verdicts"], gate["score_error"]
    return "\n".join([
        f"calibration: {report['calibration']['images']} frames, sha256 {report['calibration']['sha256'][:16]}...",
        f"held out:    {report['holdout']['images']} frames ({report['holdout']['source']})",
        f"verdicts:    {v['agree']}/{v['frames']} agree ({100 * v['agreement']:.2f}%); FP32 rejects "
        f"{v['reference_rejects']}, INT8 rejects {v['candidate_rejects']}; missed rejects {v['missed_rejects']}, "
        f"false rejects {v['false_rejects']}",
        f"score error: max {e['max_abs']:.4g}, mean {e['mean_abs']:.4g}, p99 {e['p99_abs']:.4g}",
        f"outcome:     {report['outcome']}; INT8 model: {report['model']['int8'] or 'not written'}",
        f"report:      {report_path}",
    ])


def refusal(report: dict[str, Any], output: Path, report_path: Path, *, stale_output: bool = False) -> str:
    """Why the INT8 model was not written, with the figures and how to force it."""
    v, e = report["gate"]["verdicts"], report["gate"]["score_error"]
    stale = f" The {output.name} already there is from an earlier run and was not gated now." if stale_output else ""
    return (
        f"linegate calibrate: refused: INT8 verdicts agree with FP32 on {100 * v['agreement']:.2f}% of {v['frames']} "
        f"held-out frames ({v['missed_rejects']} missed rejects, {v['false_rejects']} false rejects; max score error "
        f"{e['max_abs']:.4g}), below --min-agreement {report['thresholds']['min_agreement_percent']:g}%. {output} "
        f"was not written; see {report_path}. To write it anyway add --force (the report records it).{stale}"
    )


def _utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
