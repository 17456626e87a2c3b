"""``linegate build-engine MODEL.onnx``: a TensorRT engine for this device, and its sidecar key beside it.

TensorRT, cuda-python and the builder are imported in :func:`run` only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import linegate
from linegate.engine.engine_key import KEY_SUFFIX, PRECISIONS, EngineKey, key_path
from linegate.errors import ModelError
from linegate.toolchain.arg_types import whole

SUMMARY = "build a TensorRT engine from an ONNX model on this device, with its sidecar key"
DESCRIPTION = (
    "Build a TensorRT engine from MODEL.onnx with TensorRT's builder, on the device that will run it (an "
    "engine only loads on the TensorRT version and GPU that built it; linegate never builds on the line). "
    "One optimisation profile per --sizes entry (square height and width) for a model with dynamic height "
    "and width, and a --batch range for a dynamic batch. --precision int8 builds an explicitly quantized "
    "model (QuantizeLinear/DequantizeLinear nodes, from `linegate calibrate`); there is no calibrator. "
    f"Writes ENGINE and ENGINE{KEY_SUFFIX}: the ONNX and engine sha256, TensorRT version, GPU and compute "
    "capability, L4T release, precision, profiles, calibration set and this command; the tensorrt backend "
    "checks that key before it loads the engine. Builder messages go to stderr as JSON records."
)

REPORT_SUFFIXES = (".int8.report.json", ".report.json")
"""Where `linegate calibrate`'s report is looked for beside the model (``model.int8.report.json``)."""


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 512,768,1024, got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"expected sizes like 512,768,1024 (each >= 1), got {text!r}")
    return sizes


def _batch(text: str) -> tuple[int, int, int]:
    parts = text.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = [1, values[0], values[0]]
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise argparse.ArgumentTypeError(f"expected MIN:OPT:MAX (1 <= MIN <= OPT <= MAX) or MAX, got {text!r}")
    return values[0], values[1], values[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.onnx", type=Path, help="the ONNX model")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16",
                        help="fp32, fp16 (default), or int8 for a Q/DQ-quantized model (layers outside Q/DQ in fp16)")
    parser.add_argument("--sizes", metavar="S1,S2,...", type=_sizes, default=(),
                        help="square input sizes, one optimisation profile each, for a dynamic height and width "
                        "(default: none; required when the model has a dynamic height and width)")
    parser.add_argument("--batch", metavar="MIN:OPT:MAX", type=_batch, default=None,
                        help="batch range for a dynamic batch dimension (default 1:1:1; N means 1:N:N)")
    parser.add_argument("--workspace-mib", metavar="MIB", type=whole(1, what="a whole number of MiB"), default=None,
                        help="limit TensorRT's workspace memory pool (default: TensorRT's, all device memory)")
    parser.add_argument("--timing-cache", metavar="FILE", type=Path, default=None,
                        help="read and update this timing cache (created if missing): later builds go faster "
                        "(default: none)")
    parser.add_argument("--calibration-report", metavar="FILE", type=Path, default=None,
                        help="linegate calibrate's report for an int8 model; its calibration_set_sha256 goes into "
                        "the key (default: MODEL.int8.report.json beside the model, if present)")
    parser.add_argument("--output", "-o", metavar="ENGINE", type=Path, default=None,
                        help="engine file to write (default: MODEL.engine beside the model)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                        help="builder messages at this level and up go to stderr (default: %(default)s)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from linegate.logs import configure_logging, shutdown_logging

    configure_logging(level=args.log_level, stream=sys.stderr)
    try:
        return _build(args)
    finally:
        shutdown_logging()


def _build(args: argparse.Namespace) -> int:
    model: Path = args.model
    if not model.is_file():
        raise ModelError(f"{model}: no such ONNX model")
    output: Path = args.output if args.output is not None else model.with_suffix(".engine")
    calibration = calibration_set(model, args.precision, args.calibration_report)
    try:
        from linegate.engine import trt_build
    except ImportError as exc:
        raise ModelError(
            f"TensorRT is not available here ({exc}): build the engine on the device that will run it "
            "(JetPack's python3-libnvinfer)"
        ) from None
    from linegate.engine import gpu_info

    gpu = gpu_info.current_gpu()
    options = trt_build.BuildOptions(args.precision, tuple(args.sizes), args.batch, args.workspace_mib)
    cache_in = _read_cache(args.timing_cache)
    monitor = trt_build.ProgressBar(sys.stderr)
    with _cancel_on_sigint(monitor):
        built = trt_build.build(model, options, timing_cache=cache_in, monitor=monitor)
    key = EngineKey(
        onnx_file=model.name,
        onnx_sha256=sha256_file(model),
        tensorrt_version=trt_build.tensorrt_version(),
        gpu_name=gpu.name,
        compute_capability=gpu.capability,
        l4t_release=gpu_info.l4t_release(),
        precision=args.precision,
        profiles=tuple(built.profiles),
        calibration_set_sha256=calibration,
        engine_sha256=hashlib.sha256(built.serialized).hexdigest(),
        built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        build_seconds=round(built.seconds, 3),
        linegate_version=linegate.__version__,
        rebuild_command=rebuild_command(args, output),
        workspace_mib=args.workspace_mib,
    )
    write_atomically(output, built.serialized)
    write_atomically(key_path(output), key.to_json().encode())
    if args.timing_cache is not None and built.timing_cache is not None:
        write_atomically(args.timing_cache, built.timing_cache)
    profiles = f"{len(built.profiles)} optimisation profile{'s' if len(built.profiles) != 1 else ''}"
    print(
        f"wrote {output} ({len(built.serialized)} bytes, {args.precision}, {profiles}, TensorRT "
        f"{key.tensorrt_version} on {gpu.name} sm_{gpu.capability.replace('.', '')}, built in {built.seconds:.1f} s) "
        f"and {key_path(output).name}"
        + (f"; {len(built.warnings)} TensorRT warnings in the log" if built.warnings else "")
    )
    return 0


def calibration_set(model: Path, precision: str, report: Path | None) -> str | None:
    """The calibration set's sha256 from ``linegate calibrate``'s report (given, or found beside an int8 model)."""
    if report is None:
        if precision != "int8":
            return None
        found = [p for p in (model.with_suffix(s) for s in REPORT_SUFFIXES) if p.is_file()]
        if not found:
            return None
        report = found[0]
    elif precision != "int8":
        raise ModelError(f"--calibration-report {report}: only an int8 build has a calibration set")
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"{report}: cannot read the calibration report: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ModelError(f"{report}: the calibration report is not JSON: {exc}") from None
    value = data.get("calibration_set_sha256") if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise ModelError(f"{report}: the calibration report has no calibration_set_sha256")
    return value


def rebuild_command(args: argparse.Namespace, output: Path) -> str:
    """The command line that builds this engine again, with absolute paths."""
    argv = ["linegate", "build-engine", str(args.model.resolve()), "--precision", args.precision]
    if args.sizes:
        argv += ["--sizes", ",".join(map(str, args.sizes))]
    if args.batch is not None:
        argv += ["--batch", ":".join(map(str, args.batch))]
    if args.workspace_mib is not None:
        argv += ["--workspace-mib", str(args.workspace_mib)]
    if args.timing_cache is not None:
        argv += ["--timing-cache", str(args.timing_cache.resolve())]
    if args.calibration_report is not None:
        argv += ["--calibration-report", str(args.calibration_report.resolve())]
    return shlex.join([*argv, "--output", str(output.resolve())])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_cache(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the timing cache: {exc.strerror or exc}") from None


def write_atomically(path: Path, data: bytes) -> None:
    """Write *data* to a temporary file beside *path*, flush it to disk, then rename it over *path*.

    The file gets the mode of the one it replaces, else 0666 less the umask (as ``open`` would).
    """
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _cancel_on_sigint(monitor: Any) -> Iterator[None]:
    """While building, Ctrl-C only asks the builder to stop at its next step (a second one interrupts)."""

    def handler(signum: int, frame: Any) -> None:
        if monitor.cancelled:
            raise KeyboardInterrupt
        monitor.cancelled = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
