"""Build a TensorRT engine from an ONNX model with TensorRT 10's builder, and read back what an engine holds.

No CUDA memory is touched here (TensorRT allocates its own while it builds). Build on the machine
that will run the engine: a serialized engine only loads on the TensorRT version and GPU that
built it. Precision: ``fp32``; ``fp16``; ``int8`` = explicit quantisation of a model that already
has QuantizeLinear/DequantizeLinear nodes (``linegate calibrate`` writes those), with FP16 allowed
for the layers outside them; there is no calibrator here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import structlog
import tensorrt as trt

from linegate.engine.engine_key import Profile, Shape, TensorProfile, plan_profiles
from linegate.errors import EngineError, ModelError


def tensorrt_version() -> str:
    """The version of the TensorRT this process builds with (and so the engine needs)."""
    return str(trt.__version__)


@dataclass(frozen=True)
class BuildOptions:
    """What to build: precision, square input sizes (one profile each), batch range, workspace limit."""

    precision: str = "fp16"
    sizes: tuple[int, ...] = ()
    batch: tuple[int, int, int] | None = None
    workspace_mib: int | None = None


@dataclass(frozen=True)
class BuiltEngine:
    """A serialized engine and what went into it."""

    serialized: bytes
    inputs: dict[str, Shape]
    profiles: list[Profile]
    timing_cache: bytes | None
    seconds: float
    warnings: tuple[str, ...] = ()


class _Logger(trt.ILogger):  # type: ignore[misc]
    """TensorRT's messages as structlog records (event ``tensorrt``); keeps warnings and errors for messages."""

    _LEVELS = ("error", "error", "warning", "info", "debug")  # INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE

    def __init__(self) -> None:
        trt.ILogger.__init__(self)
        self.log_ = structlog.get_logger(component="tensorrt")
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def log(self, severity: Any, msg: str) -> None:
        level = int(severity)
        name = self._LEVELS[min(max(level, 0), len(self._LEVELS) - 1)]
        getattr(self.log_, name)("tensorrt", severity=getattr(severity, "name", str(level)), message=msg)
        if level <= 1:
            self.errors.append(msg)
        elif level == 2:
            self.warnings.append(msg)


# --- progress -------------------------------------------------------------------------------------


def render_progress(phases: Sequence[tuple[str, int, int]], width: int = 100) -> str:
    """One status line for the active build phases (outermost first): name, a bar, steps done/total."""
    parts = []
    for i, (name, done, total) in enumerate(phases):
        frac = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
        if i == 0:
            bar = "#" * round(frac * 20)
            parts.append(f"{name} [{bar:<20}] {done}/{total}")
        else:
            parts.append(f"{name} {done}/{total}")
    line = " > ".join(parts)
    return line if len(line) <= width else line[: width - 1] + "…"


class ProgressBar(trt.IProgressMonitor):  # type: ignore[misc]
    """Shows the builder's phases on a terminal (one rewritten line); elsewhere logs each top phase.

    Setting :attr:`cancelled` (a signal handler may) makes the builder stop at its next step.
    """

    def __init__(self, stream: TextIO | None) -> None:
        trt.IProgressMonitor.__init__(self)
        self._stream = stream if stream is not None and stream.isatty() else None
        self._phases: dict[str, list[Any]] = {}  # name -> [done, total, parent]
        self._log = structlog.get_logger(component="build")
        self.cancelled = False
        self.seen: list[str] = []
        """Every phase started, in order (for the summary and tests)."""

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        self._phases[phase_name] = [0, int(num_steps), parent_phase]
        self.seen.append(phase_name)
        if parent_phase is None:
            self._log.info("build_phase", phase=phase_name, steps=int(num_steps))
        self._draw()

    def step_complete(self, phase_name: str, step: int) -> bool:
        if phase_name in self._phases:
            self._phases[phase_name][0] = int(step) + 1
        self._draw()
        return not self.cancelled

    def phase_finish(self, phase_name: str) -> None:
        self._phases.pop(phase_name, None)
        self._draw()
        if not self._phases and self._stream is not None:
            self._stream.write("\r\033[K")
            self._stream.flush()

    def _draw(self) -> None:
        if self._stream is None or not self._phases:
            return
        chain = [(n, p[0], p[1]) for n, p in self._phases.items()]
        self._stream.write("\r\033[K" + render_progress(chain))
        self._stream.flush()


# --- build ----------------------------------------------------------------------------------------


def build(
    onnx_path: Path, options: BuildOptions, *, timing_cache: bytes | None = None, monitor: Any = None
) -> BuiltEngine:
    """Parse *onnx_path*, configure precision, profiles, workspace and timing cache, build and serialize.

    *timing_cache*: the bytes of an earlier cache (``b""`` for a new one; None: no cache). Raises
    ModelError when the model or the options cannot make an engine, EngineError when TensorRT fails
    (or the build was cancelled through *monitor*).
    """
    logger = _Logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or logger.errors or ["no detail"]
        raise ModelError(
            f"{onnx_path}: TensorRT {trt.__version__}'s ONNX parser refused the model:\n"
            + "\n".join(f"  - {e}" for e in errors)
        )
    inputs = {t.name: tuple(int(d) for d in t.shape) for t in (network.get_input(i) for i in range(network.num_inputs))}
    if options.precision == "int8" and not _has_qdq(network):
        raise ModelError(
            f"{onnx_path}: --precision int8 needs an explicitly quantized model (QuantizeLinear/DequantizeLinear "
            "nodes), and this one has none; quantize it first with `linegate calibrate`, or build fp16"
        )
    profiles = plan_profiles(inputs, options.sizes, options.batch)
    config = builder.create_builder_config()
    _configure(config, builder, options, profiles, onnx_path)
    cache = _use_timing_cache(config, timing_cache, logger) if timing_cache is not None else None
    if monitor is not None:
        config.progress_monitor = monitor
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        if monitor is not None and getattr(monitor, "cancelled", False):
            raise EngineError(f"{onnx_path}: the build was cancelled")
        detail = "; ".join(logger.errors[-3:]) or "no detail from TensorRT"
        raise EngineError(f"{onnx_path}: TensorRT {trt.__version__} could not build an engine: {detail}")
    new_cache = bytes(cache.serialize()) if cache is not None else None
    return BuiltEngine(bytes(serialized), inputs, profiles, new_cache, seconds, tuple(logger.warnings))


def _has_qdq(network: Any) -> bool:
    kinds = (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


def _configure(config: Any, builder: Any, options: BuildOptions, profiles: list[Profile], onnx_path: Path) -> None:
    if options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    for index, ranges in enumerate(profiles):
        profile = builder.create_optimization_profile()
        for r in ranges:
            profile.set_shape(r.name, r.min, r.opt, r.max)
        if config.add_optimization_profile(profile) < 0:
            shapes = ", ".join(map(str, ranges))
            raise ModelError(f"{onnx_path}: TensorRT refused optimisation profile {index}: {shapes}")


def _use_timing_cache(config: Any, blob: bytes, logger: _Logger) -> Any:
    """Load *blob* as the timing cache; one from another TensorRT or GPU, or a corrupt one, is replaced."""
    try:
        cache = config.create_timing_cache(blob)
    except Exception:  # TensorRT raises or returns None on a corrupt blob, depending on the version
        cache = None
    if cache is not None and config.set_timing_cache(cache, False):
        return cache
    logger.log_.warning(
        "timing_cache_ignored",
        reason="corrupt, or written by another TensorRT version or GPU; starting a new one",
        bytes=len(blob),
    )
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    return cache


# --- reading an engine back -----------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    name: str
    mode: str
    """``"input"`` or ``"output"``."""
    dtype: str
    shape: Shape


@dataclass(frozen=True)
class EngineInfo:
    """What a serialized engine declares: IO tensors and, per optimisation profile, each dynamic input's range."""

    tensors: tuple[TensorInfo, ...]
    profiles: tuple[Profile, ...] = field(default=())


def describe(data: bytes, source: Path) -> EngineInfo:
    """Deserialize *data* (no execution context, no buffers) and list its tensors and profiles."""
    logger = _Logger()
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        detail = "; ".join(logger.errors[-3:]) or "no detail from TensorRT"
        raise ModelError(f"{source}: TensorRT {trt.__version__} cannot deserialize this engine: {detail}")
    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        tensors.append(TensorInfo(name, mode, dtype_name(engine.get_tensor_dtype(name)), shape))
    dynamic = [t.name for t in tensors if t.mode == "input" and -1 in t.shape]
    profiles = []
    for k in range(engine.num_optimization_profiles if dynamic else 0):  # a static engine needs no profile
        ranges = []
        for name in dynamic:
            lo, opt, hi = (tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, k))
            ranges.append(TensorProfile(name, lo, opt, hi))
        profiles.append(tuple(ranges))
    return EngineInfo(tuple(tensors), tuple(profiles))


def dtype_name(dtype: Any) -> str:
    """numpy's name for a TensorRT data type, else TensorRT's own (bf16, fp8 have no numpy type)."""
    try:
        return str(np.dtype(trt.nptype(dtype)).name)
    except TypeError:
        return str(getattr(dtype, "name", dtype)).lower()
