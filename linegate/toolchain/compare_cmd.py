"""``linegate compare``: a reference and a candidate model on the same frames, with tolerances.

Typical pairs: the FP32 ONNX model and its QDQ INT8 model (both ONNX Runtime, CPU), or the ONNX model
and the TensorRT engine built from it (on the Jetson, where TensorRT is installed; elsewhere the
comparison is skipped and says so). Exit 0 within tolerances, 1 over them (or skipped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from linegate.toolchain.arg_types import decimal, percent, whole

SUMMARY = "run two models (ONNX FP32, QDQ INT8, TensorRT engine) on the same frames and compare outputs and verdicts"
DESCRIPTION = (
    "Run a reference model (default: the configuration's model.path) and a candidate on the same frames, each "
    "frame passed once through the configuration's preprocessing and the same tensor given to both. .onnx files "
    "run in ONNX Runtime on the CPU (FP32 or QDQ INT8); .engine/.plan files in TensorRT, only where TensorRT is "
    "installed (on the Jetson; elsewhere nothing is compared and the command exits 1 saying so). A QDQ INT8 "
    ".onnx model is simulated (each quantised tensor at its exact INT8 value, as TensorRT's explicit "
    "quantisation prescribes) unless --cpu-int8-kernels. "
    "Prints the max absolute and relative error over all outputs and per output (scores as the thresholds see "
    "them: softmax for logits), and the verdict agreement through the configuration's postprocessing. Exit 1 "
    "when the max absolute error exceeds --max-abs-error, the agreement is below --min-agreement, or the max "
    "relative error exceeds --max-rel-error (when given)."
)

DEFAULT_MAX_ABS = 0.05
DEFAULT_MIN_AGREEMENT = 99.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", metavar="FILE", type=Path, required=True,
        help="linegate configuration: its camera, model.preprocess and model.postprocess are used")
    add("--images", metavar="DIR", type=Path, required=True, help="folder of frames (from `linegate capture`)")
    add("--candidate", metavar="MODEL", type=Path, required=True,
        help="the model to check: .onnx (e.g. the QDQ INT8 model) or a TensorRT .engine/.plan")
    add("--reference", metavar="MODEL", type=Path, default=None,
        help="the model to compare against (default: the configuration's model.path)")
    add("--max-abs-error", metavar="X", type=decimal(0.0), default=DEFAULT_MAX_ABS,
        help="largest allowed absolute score error (default: %(default)s)")
    add("--max-rel-error", metavar="X", type=decimal(0.0), default=None,
        help="largest allowed relative error |c - r| / max(|r|, 1e-6) (default: not checked: scores near 0 make "
        "it large)")
    add("--min-agreement", metavar="PERCENT", type=percent(0.0), default=DEFAULT_MIN_AGREEMENT,
        help="least share of frames with the same verdict (default: %(default)s)")
    add("--limit", metavar="N", type=whole(1), default=None,
        help="use only the first N frames by file name (default: all)")
    add("--threads", metavar="N", type=whole(1), default=None,
        help="ONNX Runtime threads per model (default: the configuration's model.threads)")
    add("--cpu-int8-kernels", action="store_true",
        help="run QDQ .onnx models through ONNX Runtime's fused CPU int8 kernels, as `linegate run` with the "
        "onnxruntime backend would (default: simulate them, each quantised tensor at its exact INT8 value; "
        "the CPU kernels differ by CPU and were less accurate on x86 without VNNI)")
    add("--json", metavar="FILE", type=Path, default=None,
        help="also write the figures to FILE as JSON (default: none)")


def run(args: argparse.Namespace) -> int:
    from linegate.config import load_config
    from linegate.config.check import frame_shape
    from linegate.engine import image_files
    from linegate.engine.compare import backend_for, tensorrt_missing
    from linegate.vision.preprocess import build_preprocessor

    cfg = load_config(args.config)
    reference: Path = args.reference or cfg.model.path
    candidate: Path = args.candidate
    for path in (reference, candidate):
        if backend_for(path) == "tensorrt" and (why := tensorrt_missing()) is not None:
            print(f"linegate compare: SKIPPED, nothing compared: {path} is a TensorRT engine and {why}; run this "
                  "command on the Jetson that built the engine", file=sys.stderr)
            return 1
    shape, pixel_format = frame_shape(cfg.camera), cfg.camera.pixel_format
    preprocess = build_preprocessor(cfg.model.preprocess, shape, pixel_format)
    images = image_files.list_images(args.images)[: args.limit]

    from linegate.engine.accuracy import assess
    from linegate.engine.compare import check_classes, engine_for, execution, run_pair

    kernels = args.cpu_int8_kernels
    with engine_for(cfg.model, reference, preprocess.spec, args.threads, cpu_int8_kernels=kernels) as ref_engine, \
            engine_for(cfg.model, candidate, preprocess.spec, args.threads, cpu_int8_kernels=kernels) as cand_engine:
        ref, cand = run_pair(ref_engine, cand_engine, image_files.model_inputs(images, preprocess, shape, pixel_format))
    check_classes(ref, reference, cfg.model.postprocess.classes)
    result = assess(ref, cand, cfg.model.postprocess)
    failures = over_tolerance(result.as_dict(), args.max_abs_error, args.max_rel_error, args.min_agreement)
    figures = {
        "reference": {"path": str(reference), "execution": execution(reference, kernels)},
        "candidate": {"path": str(candidate), "execution": execution(candidate, kernels)},
        "frames": len(images),
        "images": str(args.images),
        "tolerances": {"max_abs_error": args.max_abs_error, "max_rel_error": args.max_rel_error,
                       "min_agreement_percent": args.min_agreement},
        **result.as_dict(),
        "within_tolerances": not failures,
        "failures": failures,
    }
    print(format_figures(figures))
    if args.json is not None:
        import json

        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    for failure in failures:
        print(f"linegate compare: over tolerance: {failure}", file=sys.stderr)
    return 1 if failures else 0


def over_tolerance(figures: dict[str, Any], max_abs: float, max_rel: float | None, min_agreement: float) -> list[str]:
    """One line per tolerance the figures exceed (empty: within all)."""
    errors, verdicts = figures["score_error"], figures["verdicts"]
    failures = []
    if errors["max_abs"] > max_abs:
        failures.append(f"max absolute error {errors['max_abs']:.4g} > --max-abs-error {max_abs:g}")
    if max_rel is not None and errors["max_rel"] > max_rel:
        failures.append(f"max relative error {errors['max_rel']:.4g} > --max-rel-error {max_rel:g}")
    if 100.0 * verdicts["agreement"] < min_agreement:
        failures.append(
            f"verdicts agree on {100.0 * verdicts['agreement']:.2f}% of {verdicts['frames']} frames < "
            f"--min-agreement {min_agreement:g}% ({verdicts['missed_rejects']} missed rejects, "
            f"{verdicts['false_rejects']} false rejects)"
        )
    return failures


def format_figures(figures: dict[str, Any]) -> str:
    """The figures as a short table for a terminal."""
    e, v = figures["score_error"], figures["verdicts"]
    lines = [
        f"reference: {figures['reference']['path']}\n           {figures['reference']['execution']}",
        f"candidate: {figures['candidate']['path']}\n           {figures['candidate']['execution']}",
        f"frames:    {figures['frames']} from {figures['images']}",
        f"{'output':<16} {'max abs':>10} {'mean abs':>10} {'p99 abs':>10} {'max rel':>10}",
    ]
    rows = [*figures["per_output"].items(), ("all", e)]
    for name, s in rows:
        figs = (s["max_abs"], s["mean_abs"], s["p99_abs"], s["max_rel"])
        lines.append(f"{name:<16} " + " ".join(f"{x:>10.4g}" for x in figs))
    lines.append(
        f"verdicts:  {v['agree']}/{v['frames']} agree ({100 * v['agreement']:.2f}%); reference rejects "
        f"{v['reference_rejects']}, candidate rejects {v['candidate_rejects']}; missed rejects {v['missed_rejects']}, "
        f"false rejects {v['false_rejects']}"
    )
    lines.append("result:    " + ("within tolerances" if figures["within_tolerances"] else "OVER TOLERANCE"))
    return "\n".join(lines)
