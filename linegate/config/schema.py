"""Typed, validated, immutable configuration: one pydantic model per TOML table.

Unknown keys are errors (``extra="forbid"``); every model is frozen. Relative paths are resolved
against the configuration file's directory, passed as the validation context ``base_dir``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from linegate.archive.settings import ArchiveSection as _ArchiveSettings
from linegate.camera.event_wait import longest_fetch_ms

BUILTIN_VIKY = "builtin:viky"
"""The simulated GenTL producer shipped inside the ``genicam`` package."""

PixelFormat = Literal["Mono8", "RGB8", "BGR8", "RGBa8", "BGRa8"]
CHANNELS_OF: dict[str, int] = {"Mono8": 1, "RGB8": 3, "BGR8": 3, "RGBa8": 4, "BGRa8": 4}

Milliseconds = Annotated[float, Field(gt=0, le=60_000)]
NodeValue = int | float | bool | str


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve(value: str | Path, info: ValidationInfo) -> Path:
    path = Path(os.path.expanduser(str(value)))
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return Path(os.path.normpath(path))


def _check_backoff(min_ms: float, max_ms: float) -> None:
    if max_ms < min_ms:
        raise ValueError(f"reconnect_max_ms ({max_ms}) must be >= reconnect_min_ms ({min_ms})")


class InstanceSection(_Section):
    """Identity of this linegate instance; names its shared-memory segments and log records."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")] = "linegate"


class DeviceSelector(_Section):
    """Which camera to open: by serial number, user-defined id or enumeration index (exactly one)."""

    serial_number: str | None = None
    user_id: str | None = None
    index: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> DeviceSelector:
        given = [k for k in ("serial_number", "user_id", "index") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of serial_number, user_id, index (got {given or 'none'})")
        return self


class CameraSection(_Section):
    """GenTL producer, device and the GenICam node settings applied at start."""

    cti: str
    device: DeviceSelector = DeviceSelector(index=0)
    width: Annotated[int, Field(ge=1, le=16384)]
    height: Annotated[int, Field(ge=1, le=16384)]
    pixel_format: PixelFormat = "Mono8"
    frame_rate_hz: Annotated[float, Field(gt=0, le=10_000)] | None = None
    exposure_us: Annotated[float, Field(gt=0)] | None = None
    gain_db: float | None = None
    trigger_mode: Literal["On", "Off"] | None = None
    trigger_source: str | None = None
    nodes: dict[str, NodeValue] = {}
    """Further nodes set verbatim, after the typed ones; each must exist on the camera."""
    fetch_timeout_ms: Annotated[int, Field(ge=1, le=10_000)] = 100
    """A fetch with no frame gives up after this plus up to half of it, at most 100 ms more
    (:mod:`linegate.camera.event_wait`); the sum must stay within half of
    ``supervisor.heartbeat_timeout_ms``, whose heartbeat the acquisition loop sets between fetches."""
    buffers: Annotated[int, Field(ge=2, le=256)] = 8
    reconnect_min_ms: Milliseconds = 200.0
    """After the camera is lost, the first reopen is tried this soon, then the delay doubles."""
    reconnect_max_ms: Milliseconds = 5_000.0
    _keys: dict[str, str] = PrivateAttr(default_factory=dict)
    """Where a ``[[cameras]]`` entry gave a setting itself (``device``, ``exposure_us``, ``gain_db``),
    that setting's key there (``cameras.2.device``): set by :func:`linegate.config.lanes.lane_config`,
    never by the file."""

    def key(self, name: str) -> str:
        """The configuration key of setting *name* as the file holds it: ``camera.<name>``, or the
        ``[[cameras]]`` entry's own key for its device, exposure and gain."""
        return self._keys.get(name, f"camera.{name}")

    @field_validator("cti")
    @classmethod
    def _cti_exists(cls, value: str, info: ValidationInfo) -> str:
        if value == BUILTIN_VIKY:
            return value
        path = _resolve(value, info)
        if not path.is_file():
            raise ValueError(f"GenTL producer file not found: {path}")
        if path.suffix != ".cti":
            raise ValueError(f"expected a GenTL producer ending in .cti, got {path.name}")
        return str(path)

    @model_validator(mode="after")
    def _backoff_order(self) -> CameraSection:
        _check_backoff(self.reconnect_min_ms, self.reconnect_max_ms)
        return self

    @property
    def channels(self) -> int:
        return CHANNELS_OF[self.pixel_format]

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * self.channels


class RingSection(_Section):
    """Shared-memory frame ring between acquisition and inference."""

    slots: Annotated[int, Field(ge=2, le=1024)] = 8
    when_full: Literal["drop_newest", "drop_oldest"] = "drop_newest"
    """drop_newest keeps queued frames and drops the arriving one; drop_oldest overwrites the oldest
    queued frame that inference has not claimed yet. Either way the dropped frame gets the fail-safe
    verdict and a log record."""
    journal_size: Annotated[int, Field(ge=16, le=1_000_000)] = 4096


class PreprocessSection(_Section):
    """Frame to tensor: ROI crop, resize, normalise, channel layout. Built once, applied per frame."""

    roi: tuple[int, int, int, int] | None = None
    """x, y, width, height in frame pixels; None is the whole frame."""
    resize: tuple[int, int] | None = None
    """width, height of the model input; None keeps the ROI size."""
    interpolation: Literal["area", "nearest", "bilinear"] = "area"
    color: Literal["gray", "gray3", "rgb", "bgr"] = "gray"
    """Model input channels: 'gray' one (Mono8 camera); 'gray3' the gray value in three channels, for
    3-channel models on a Mono8 camera; 'rgb'/'bgr' three, in that order (colour camera)."""
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    dtype: Literal["float32", "float16"] = "float32"
    kernel: Literal["auto", "compiled", "numpy"] = "auto"
    """How the CPU runs it: 'compiled' one numba-compiled loop per frame (float32 inputs; float16
    ones take the numpy path), 'numpy' a dozen vectorised numpy calls, 'auto' compiled where numba
    works here, else numpy with a warning. Both give the same tensor, bit for bit; the compiled loop
    is 2-3x faster where the caches are cold (a busy line-side CPU)."""

    @field_validator("roi")
    @classmethod
    def _roi_positive(cls, v: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if v is not None and (v[0] < 0 or v[1] < 0 or v[2] < 1 or v[3] < 1):
            raise ValueError(f"roi must be [x >= 0, y >= 0, width >= 1, height >= 1], got {list(v)}")
        return v

    @field_validator("resize")
    @classmethod
    def _resize_positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and (v[0] < 1 or v[1] < 1):
            raise ValueError(f"resize must be [width >= 1, height >= 1], got {list(v)}")
        return v

    @field_validator("std")
    @classmethod
    def _std_nonzero(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(s == 0 for s in v):
            raise ValueError("std must not contain 0")
        return v

    @model_validator(mode="after")
    def _per_channel_lengths(self) -> PreprocessSection:
        n = self.channels
        for key in ("mean", "std"):
            if len(getattr(self, key)) not in (1, n):
                values = "1 value" if n == 1 else f"1 or {n} values"
                raise ValueError(f"{key} needs {values} for color={self.color!r}, got {len(getattr(self, key))}")
        return self

    @property
    def channels(self) -> int:
        """Channels of the model input."""
        return 1 if self.color == "gray" else 3


class PostprocessSection(_Section):
    """Classification output to verdict: reject when any listed class reaches its threshold."""

    classes: tuple[str, ...]
    scores: Literal["probabilities", "logits"] = "probabilities"
    reject_thresholds: dict[str, Annotated[float, Field(gt=0, le=1)]]

    @model_validator(mode="after")
    def _thresholds_name_classes(self) -> PostprocessSection:
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be at least 2 unique names, got {list(self.classes)}")
        unknown = sorted(set(self.reject_thresholds) - set(self.classes))
        if unknown:
            raise ValueError(f"reject_thresholds names unknown classes {unknown}; classes are {list(self.classes)}")
        if not self.reject_thresholds:
            raise ValueError("reject_thresholds must name at least one class")
        return self


class ModelSection(_Section):
    """The inspection model: which backend runs which file, and how frames become its input."""

    id: Annotated[str, Field(min_length=1, max_length=128)]
    backend: Literal["onnxruntime", "tensorrt"] = "onnxruntime"
    path: Path
    input_name: str | None = None
    output_name: str | None = None
    threads: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"
    """onnxruntime: intra-op threads. "auto": the CPUs this worker may use, less those the acquisition
    and PLC workers need (one on up to 4 CPUs, else two); on up to 4 CPUs a heavy model (2 ms or more
    per run on one thread, timed at load) gets them all; see linegate/engine/threads.py."""
    spinning: Literal["auto", "on", "off"] = "auto"
    """onnxruntime: pool threads busy-wait between runs (faster runs alone, burnt cores). "auto": on only
    for a pool of several threads on at most half the CPUs (never with threads = "auto": inside the
    pipeline a spinning pool took the acquisition worker's CPU, see linegate/engine/threads.py)."""
    warmup_runs: Annotated[int, Field(ge=0, le=10_000)] = 50
    max_batch: Annotated[int, Field(ge=1, le=64)] = 1
    """Under a backlog (frames arriving faster than the model runs), decide up to this many waiting
    frames in one engine run, as many as the oldest one's deadline allows (run times per batch size
    are measured at warm-up). Never waits for frames to gather: at a sustainable rate every run is
    one frame. Needs a model with a dynamic batch dimension (onnxruntime) or an optimisation profile
    whose batch range holds 1..max_batch (tensorrt, ``linegate build-engine --batch``); 1 (the
    default) runs one frame at a time. At most half of ``ring.slots`` and, in handshake mode, below
    ``plc.handshake.buffer``; not with ``preprocess_on = "gpu"``, ``[[stages]]`` or
    ``deadline.backlog = "newest_first"``. TensorRT then runs without a CUDA graph (its input shape
    changes), single frames included: measure both settings on the target."""
    batch_by: Literal["dimension", "sessions"] = "dimension"
    """How ``max_batch`` > 1 runs a batch. "dimension": one engine run over the model's batch
    dimension (it must be dynamic; for TensorRT a profile whose batch range holds 1..max_batch).
    "sessions" (onnxruntime): ``max_batch`` one-frame sessions run side by side, each on
    ``threads // max_batch`` intra-op threads (at least 1), for any model; a single frame still
    runs on one session with all ``threads``. Measured, not assumed: see
    linegate/engine/side_by_side.py (faster alone on 16 cores at 14 threads, slower at 4, no gain
    inside the pipeline on 2 cores); ``linegate bench`` runs both under overload."""
    parallel: Annotated[int, Field(ge=1, le=16)] | Literal["auto"] = "auto"
    """onnxruntime, under a backlog: frames decided at once, each on a one-frame session of its own
    (``threads // parallel`` intra-op threads, at least 1) on a thread of its own. A session that
    finishes takes the next waiting frame without waiting for the others, and each frame's verdict
    is handed off as soon as its own run ends. A frame alone (nothing else waiting or running) still
    runs on the one session with every thread, so a sustainable rate keeps its latency. Why: one run
    spread over every core waits at each operator for its slowest thread, and a thread another
    process preempts stalls them all; sessions of their own have nothing to wait for. "auto": 2 for
    a model whose run takes 2 ms or more (timed at load) on 2 or more threads, else 1; and 1 wherever
    a number would be refused (``max_batch`` > 1, tensorrt, fewer than 4 ring slots, a handshake
    buffer of 2 or less). A number: at most half of ``ring.slots`` and, in handshake mode, below
    ``plc.handshake.buffer`` (with ``[[cameras]]`` each camera's ring and buffer: the frames
    running at once may all be one camera's). With ``[[cameras]]`` the sessions take the waiting
    frames of every camera, oldest first. With ``[[stages]]`` the first model runs on the sessions
    and a further stage's model one frame at a time: a frame due for it runs it on the loop's
    thread as its session's run ends. Each session holds its own copy of the
    model's weights (ResNet-18: 45 MB each, beside the main session's). Measured: ``linegate bench``
    runs the other setting under overload, ``tests/bench/bench_parallel_floor.py`` the engine alone."""
    preprocess_on: Literal["auto", "cpu", "gpu"] = "auto"
    """Where frames become the model input: "gpu" (tensorrt only) copies the ring slot to the device
    and runs the preprocessing kernel there, waiting for the model's result no longer than the
    frame's deadline; "cpu" preprocesses with numpy into the engine's pinned input. "auto": gpu for
    tensorrt, cpu for onnxruntime."""
    engine_key: Literal["required", "optional"] = "required"
    """tensorrt: the sidecar key ``ENGINE.key.json`` (written by ``linegate build-engine``) is checked
    against this machine's TensorRT, GPU and the engine's sha256 before loading; "optional" also
    loads an engine that has none (logged), a key that is there is always checked."""
    cuda_graph: Literal["auto", "on", "off"] = "auto"
    """tensorrt: run each frame's copy in, engine run and copy out as one captured CUDA graph (one
    launch instead of many). "auto": on for static input shapes (no dynamic dimension, or a single
    optimisation profile with min == max), else off, and off with a log record where the engine
    cannot be captured; "on" refuses dynamic shapes and engines that cannot be captured."""
    preprocess: PreprocessSection = PreprocessSection()
    postprocess: PostprocessSection

    @model_validator(mode="after")
    def _gpu_needs_tensorrt(self) -> ModelSection:
        if self.preprocess_on == "gpu" and self.backend != "tensorrt":
            raise ValueError("preprocess_on = 'gpu' feeds a TensorRT engine on the GPU: it needs backend = 'tensorrt'")
        if self.max_batch > 1 and self.cuda_graph == "on":
            raise ValueError(
                f"max_batch = {self.max_batch} runs batches of several sizes, which a CUDA graph (fixed shapes) "
                "cannot replay: set cuda_graph = 'auto' (no graph with max_batch > 1) or max_batch = 1"
            )
        if self.batch_by == "sessions" and self.backend != "onnxruntime":
            raise ValueError(
                f"batch_by = 'sessions' runs one-frame onnxruntime sessions side by side; backend = {self.backend!r} "
                "batches over the model's batch dimension: set batch_by = 'dimension'"
            )
        if self.parallel_asked > 1 and self.backend != "onnxruntime":
            raise ValueError(
                f"parallel = {self.parallel} runs one-frame onnxruntime sessions at once; backend = "
                f"{self.backend!r} has none: set parallel = 1"
            )
        if self.parallel_asked > 1 and self.max_batch > 1:
            raise ValueError(
                f"parallel = {self.parallel} and max_batch = {self.max_batch} are two ways to decide a backlog: "
                "set one of them to 1"
            )
        if self.max_batch > 1 and self.gpu_preprocess:
            raise ValueError(
                "max_batch > 1 batches frames preprocessed on the CPU: set preprocess_on = 'cpu' (the GPU frame "
                "path runs one frame at a time) or max_batch = 1"
            )
        return self

    @property
    def parallel_asked(self) -> int:
        """``parallel`` where set as a number, else 1 ("auto" is decided at load)."""
        return self.parallel if isinstance(self.parallel, int) else 1

    @property
    def batch_sessions(self) -> bool:
        """A batch runs as side-by-side one-frame sessions (see ``batch_by``)."""
        return self.max_batch > 1 and self.batch_by == "sessions"

    @property
    def gpu_preprocess(self) -> bool:
        """Frames are preprocessed on the GPU (see ``preprocess_on``)."""
        return self.preprocess_on == "gpu" or (self.preprocess_on == "auto" and self.backend == "tensorrt")

    @field_validator("path", mode="before")
    @classmethod
    def _path_exists(cls, value: str | Path, info: ValidationInfo) -> Path:
        path = _resolve(value, info)
        if not path.is_file():
            raise ValueError(f"model file not found: {path}")
        return path


class DeadlineSection(_Section):
    """Each frame's deadline is its acquisition time plus the budget."""

    budget_ms: Milliseconds = 50.0
    fail_safe: Literal["reject", "pass"] = "reject"
    backlog: Literal["oldest_first", "newest_first"] = "oldest_first"
    """Which waiting frame the loop decides next when frames queue up (the engine slower than the
    camera). "oldest_first": in order, each while it can still make its deadline. "newest_first":
    the newest; a waiting frame that could no longer finish in time after it gets the fail-safe
    verdict at once, so under overload the model decides as many frames as it can run, each within
    its budget (verdicts then reach the PLC out of part order: each carries its part id)."""


_HOST_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def _check_host(value: str) -> str:
    """An IPv4/IPv6 address or a DNS name; anything else is refused with what a host looks like."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    expected = "expected an IPv4 address (192.168.0.20), an IPv6 address or a host name (plc-line3.local)"
    if ":" in value or "/" in value:
        raise ValueError(f"{expected}; no scheme or port here (the port is its own key)")
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"{expected}: letters, digits and '-' between dots, no spaces")
    if all(label.isdigit() for label in labels):
        raise ValueError(f"{expected}; {value!r} is not a valid IPv4 address")
    return value


Host = Annotated[str, AfterValidator(_check_host)]
"""An IPv4/IPv6 address or a DNS name (no spaces, no scheme, no port)."""
Coil = Annotated[int, Field(ge=0, le=65535)]


class ModbusSection(_Section):
    """Modbus TCP link (pymodbus client). Addresses are 0-based protocol addresses."""

    host: Host
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    device_id: Annotated[int, Field(ge=0, le=255)] = 1
    timeout_ms: Milliseconds = 20.0
    """Per request. A reply later than this makes the write's outcome unknown: it is then read back."""
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    """Attempts after the first per reject, within its deadline (never a blind re-send)."""
    reject_coil: Coil | None = None
    """pulse mode: the coil pulsed once per reject."""
    fault_coil: Coil | None = None
    """pulse mode: ON while linegate is not inspecting (starting, camera down, a worker restarting,
    stopped): the PLC can then stop the conveyor or divert every part."""
    part_id_register: Annotated[int, Field(ge=0, le=65534)] | None = None
    """pulse mode: if set, the part id (32 bit, high word first) is written here before each pulse."""
    register_base: Annotated[int, Field(ge=0, le=65535 - 31)] = 0
    """handshake mode: holding register of interface word 0 (see docs/plc-interface.md)."""


class ModbusOverrides(_Section):
    """One camera's addresses on the Modbus link (``[cameras.plc.modbus]``); ``host`` and ``port``
    when its ejector is on another PLC than ``[plc.modbus]``'s."""

    host: Host | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    reject_coil: Coil | None = None
    fault_coil: Coil | None = None
    part_id_register: Annotated[int, Field(ge=0, le=65534)] | None = None
    register_base: Annotated[int, Field(ge=0, le=65535 - 31)] | None = None


class S7Overrides(_Section):
    """One camera's addresses in the S7 data blocks (``[cameras.plc.s7]``); ``host`` and ``port``
    when its ejector is on another PLC than ``[plc.s7]``'s."""

    host: Host | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    db: Annotated[int, Field(ge=1, le=65535)] | None = None
    byte_base: Annotated[int, Field(ge=0, le=65535 - 64)] | None = None
    reject_byte: Annotated[int, Field(ge=0, le=65535)] | None = None
    fault_byte: Annotated[int, Field(ge=0, le=65535)] | None = None


class TrackingOverrides(_Section):
    """One camera's distance to its ejector (``[cameras.plc.tracking]``)."""

    ejector_counts: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    tolerance_counts: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None


class CameraPlcOverrides(_Section):
    """The keys of ``[plc]`` that differ for one camera: its own reject and fault outputs or
    handshake block, and when its parts reach its ejector. Merged over ``[plc]``."""

    fire_delay_ms: Annotated[float, Field(ge=0, le=60_000)] | None = None
    modbus: ModbusOverrides = ModbusOverrides()
    s7: S7Overrides = S7Overrides()
    tracking: TrackingOverrides = TrackingOverrides()


class CameraEntry(_Section):
    """One camera of several (``[[cameras]]``): its name, its device, and what differs from
    ``[camera]`` (which holds what every camera shares: one model decides them all, so the
    geometry is the same) and from ``[plc]``."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,15}$")]
    """Names the camera in its frames' records (``camera``), its faults and its shared memory."""
    device: DeviceSelector
    exposure_us: Annotated[float, Field(gt=0)] | None = None
    gain_db: float | None = None
    plc: CameraPlcOverrides = CameraPlcOverrides()


class S7Section(_Section):
    """Siemens S7 link (python-snap7, ISO-on-TCP). Needs PUT/GET and a non-optimized DB on S7-1200/1500."""

    host: Host
    port: Annotated[int, Field(ge=1, le=65535)] = 102
    rack: Annotated[int, Field(ge=0, le=7)] = 0
    slot: Annotated[int, Field(ge=0, le=31)] = 1
    timeout_ms: Milliseconds = 50.0
    """Per request (and per connect). A reply later than this makes a write's outcome unknown."""
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    db: Annotated[int, Field(ge=1, le=65535)] = 100
    """The data block linegate reads and writes (whole bytes and words only: no bit writes)."""
    byte_base: Annotated[int, Field(ge=0, le=65535 - 64)] = 0
    """handshake mode: byte offset of interface word 0 in ``db`` (each word is 2 bytes, big-endian)."""
    reject_byte: Annotated[int, Field(ge=0, le=65535)] | None = None
    """pulse mode: this byte of ``db`` is 1 during a reject pulse, else 0."""
    fault_byte: Annotated[int, Field(ge=0, le=65535)] | None = None
    """pulse mode: this byte of ``db`` is 1 while linegate is not inspecting."""


class HandshakeSection(_Section):
    """handshake mode: linegate writes each reject as a result with a sequence number, the PLC
    acknowledges it and times the ejector itself."""

    alive_ms: Annotated[float, Field(ge=10, le=10_000)] = 100.0
    """The vision alive counter (and the whole status block) is written this often."""
    ack_timeout_ms: Milliseconds = 100.0
    """A result not acknowledged this long after it was written is written again (same sequence
    number, so the PLC drops the duplicate), until its deadline; then it is reported undelivered."""
    poll_ms: Annotated[float, Field(ge=0.5, le=1000)] = 2.0
    """While a result waits for its acknowledgement the PLC's block is read this often."""
    plc_alive_timeout_ms: Annotated[float, Field(ge=50, le=60_000)] = 1_000.0
    """The PLC alive counter not changing for this long is a fault (there is no "off": a PLC that
    stopped its program must be seen)."""
    results: Literal["rejects", "all"] = "rejects"
    """"rejects": a result for each reject. "all": a result for every frame, pass ones too, so the PLC
    can release each part on a positive pass (and divert any part without one). Each pass result is
    acknowledged like a reject, or reported (``result_undelivered``, a warning: no part to pull)."""
    buffer: Annotated[int, Field(ge=1, le=64)] = 8
    """Results held until acknowledged: the one in the vision block and those queued behind it. A
    reject arriving when this many wait is reported undelivered (``results_buffer_overrun``) and the
    vision block's overrun bit is set until the PLC clears it."""


class TrackingSection(_Section):
    """Where the ejector is: the reject is due when the imaged part reaches it."""

    by: Literal["time", "encoder"] = "time"
    """"time": due at acquisition + ``plc.fire_delay_ms`` (a belt at constant speed). "encoder"
    (pulse mode): due when the PLC's encoder count (interface words 20-21) has advanced
    ``ejector_counts`` since the frame was acquired."""
    ejector_counts: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    """by = "encoder": encoder counts from the camera's field of view to the ejector."""
    tolerance_counts: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    """by = "encoder": a reject is still fired this many counts past its position, never later. It
    must cover the belt's travel during one and a half encoder reads (a reading answered in the same
    step is fired on, not read again) plus one write, during one PLC scan (a PLC serves the count of
    its last scan), and the part's placement error (up to ``cps * max_read_ms / 2`` at a steady
    speed)."""
    poll_ms: Annotated[float, Field(ge=0.5, le=100)] = 2.0
    """by = "encoder": the encoder is read this often, as soon as the next reject should be due at
    the belt's recent speed, and right before each pulse (unless the last reading was answered
    less than half its round trip ago: asking again would only send the pulse that much later)."""
    max_read_ms: Annotated[float, Field(gt=0, le=100)] = 10.0
    """by = "encoder": a reading whose request-to-reply time is longer places no part (it still
    tells where the belt is now). A reading's moment is known to half that time, so a part's
    position to ``cps * max_read_ms / 2`` counts. A PLC answering once per scan takes up to a scan
    cycle: keep this above its read round trip (``linegate_plc_encoder_slow_reads_total`` shows
    readings over it)."""


class PlcSection(_Section):
    """PLC link: protocol, output mode, reject timing, queueing and reconnect policy."""

    protocol: Literal["modbus", "s7"] = "modbus"
    mode: Literal["pulse", "handshake"] = "pulse"
    """pulse: linegate pulses a reject output (coil or DB byte) when the part reaches the ejector.
    handshake (recommended): linegate writes a result block with a sequence number, the PLC
    acknowledges it and fires the ejector itself (see docs/plc-interface.md)."""
    modbus: ModbusSection | None = None
    s7: S7Section | None = None
    handshake: HandshakeSection = HandshakeSection()
    tracking: TrackingSection = TrackingSection()
    pulse_ms: Milliseconds = 10.0
    """pulse mode: reject output ON time. Keep it longer than two PLC scans."""
    fire_delay_ms: Annotated[float, Field(ge=0, le=60_000)] = 0.0
    """tracking.by = "time": camera-to-ejector travel time; the reject is due at acquisition + this."""
    max_late_ms: Milliseconds = 500.0
    """A reject that cannot reach the PLC this long after its due time would hit the wrong part: it is
    reported undelivered instead. No delivered reject is later than this."""
    queue_size: Annotated[int, Field(ge=1, le=100_000)] = 1024
    drain_timeout_ms: Milliseconds = 2_000.0
    """On stop, how long pending rejects may still be delivered before they are reported."""
    reconnect_min_ms: Milliseconds = 20.0
    reconnect_max_ms: Milliseconds = 200.0
    """Reconnect back-off cap; a cheap TCP probe runs in between so a PLC that is back is used at once."""
    part_ids: Literal["linegate", "plc"] = "linegate"
    """"linegate": part ids count 1, 2, ... from each start. "plc" (handshake mode): they continue the
    PLC's own numbering: the camera waits for the PLC's ``plc_part_id`` (non-zero) at start, the first
    frame gets it and each frame after that the next id (for lines that image each part once, e.g. a
    triggered camera). A PLC whose id later runs ahead or behind is logged (plc_part_id_drift)."""

    @model_validator(mode="after")
    def _consistent(self) -> PlcSection:
        _check_backoff(self.reconnect_min_ms, self.reconnect_max_ms)
        link = self.link
        if link is None:
            raise ValueError(f"protocol = {self.protocol!r} needs a [plc.{self.protocol}] section")
        if self.mode == "pulse":
            output = "reject_coil" if self.protocol == "modbus" else "reject_byte"
            if getattr(link, output) is None:
                raise ValueError(f"mode = 'pulse' needs plc.{self.protocol}.{output}")
        if self.reconnect_max_ms >= self.max_late_ms:
            raise ValueError(
                f"reconnect_max_ms ({self.reconnect_max_ms}) must be below max_late_ms ({self.max_late_ms}): "
                "a PLC that is back must be used while held rejects can still be fired"
            )
        if self.handshake.results == "all" and self.mode != "handshake":
            raise ValueError("handshake.results = 'all' sends every verdict as a result: it needs mode = 'handshake'")
        if self.part_ids == "plc" and self.mode != "handshake":
            raise ValueError("part_ids = 'plc' reads the PLC block's plc_part_id: it needs mode = 'handshake'")
        if self.tracking.by == "encoder" and self.mode != "pulse":
            raise ValueError(
                "tracking.by = 'encoder' times linegate's own pulses: it needs mode = 'pulse' (in handshake mode "
                "the PLC tracks the part to its ejector with its own encoder)"
            )
        return self

    @property
    def link(self) -> ModbusSection | S7Section | None:
        """The section of the configured protocol."""
        return self.modbus if self.protocol == "modbus" else self.s7

RtPriority = Annotated[int, Field(ge=0, le=99)]


class SchedulingSection(_Section):
    """Linux real-time priority (SCHED_FIFO, 1..99; 0 = normal scheduler) and CPU affinity per worker.
    The inference worker's priority goes to its loop thread only, set once the engine's threads
    have started (they keep the normal scheduler; its CPUs apply to them too)."""

    infer_rt_priority: RtPriority = 0
    acquire_rt_priority: RtPriority = 0
    plc_rt_priority: RtPriority = 0
    infer_cpus: tuple[Annotated[int, Field(ge=0)], ...] = ()
    acquire_cpus: tuple[Annotated[int, Field(ge=0)], ...] = ()
    plc_cpus: tuple[Annotated[int, Field(ge=0)], ...] = ()
    infer_poll_max_us: Annotated[int, Field(ge=0, le=100_000)] = 1_000
    """The inference loop learns the camera's frame period and polls for the next frame through the
    window in which it is expected, instead of sleeping until the kernel wakes it (a wake-up costs
    0.1-0.3 ms). This caps that window, per frame; a trigger too irregular to fit gets no polling.
    0: always sleep until woken (with ``infer_keep_warm`` the loop still wakes once before each
    frame is due, for one warm pass)."""
    plc_poll_max_us: Annotated[int, Field(ge=0, le=100_000)] = 3_000
    """While the inference loop decides a frame, the PLC worker polls for its verdict instead of
    sleeping until the kernel wakes it (0.1-0.3 ms on each reject's way to the PLC), from shortly
    before the verdict is due (the model path's p50 at warm-up) for at most this long per wait.
    Not while frames wait behind it (an overload: the polling would take CPU from the engine).
    0: always sleep until woken."""
    infer_keep_warm: bool = True
    """While it polls, the loop runs its per-frame path on a blank frame every 0.3 ms; where frames
    come too irregularly to poll, it wakes once before the next frame is due for one such pass.
    Only for a path of at most 0.5 ms, and only where the pass ends before the frame is expected:
    on a machine shared with other work, caches left alone for milliseconds are lost, and a cold
    frame took 2-3x as long to preprocess and infer (linegate/pipeline/frame_wait.py)."""


class SupervisorSection(_Section):
    """Worker health, restarts and stop timing."""

    heartbeat_timeout_ms: Annotated[float, Field(ge=100, le=600_000)] = 2_000.0
    """A worker whose loop has not turned for this long is stalled: the systemd watchdog pings stop
    and the worker is killed and restarted."""
    restart_limit: Annotated[int, Field(ge=0, le=1000)] = 5
    """At most this many worker restarts within ``restart_window_ms``; one more and linegate stops
    and exits non-zero, leaving the next step to systemd. 0 = never restart a worker."""
    restart_window_ms: Annotated[float, Field(gt=0, le=86_400_000)] = 60_000.0
    start_timeout_ms: Annotated[float, Field(gt=0, le=3_600_000)] = 120_000.0
    """How long a starting inference worker may take to load and warm its engine."""
    stop_timeout_ms: Annotated[float, Field(gt=0, le=600_000)] = 20_000.0
    """A graceful stop that takes longer is cut short (workers killed). Keep it below the unit's
    TimeoutStopSec=."""


class LoggingSection(_Section):
    """Per-frame JSON records to stdout and optionally a file."""

    level: Literal["debug", "info"] = "info"
    """Every frame's record and every reject's outcome are ``info`` records: a higher level would
    drop them (the one record per frame the final summary reconciles), so none is offered."""
    file: Path | None = None
    queue_size: Annotated[int, Field(ge=16, le=10_000_000)] = 65_536

    @field_validator("file", mode="before")
    @classmethod
    def _file_path(cls, value: str | Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)


class MetricsSection(_Section):
    """Prometheus metrics over HTTP (``GET /metrics``), served by the supervisor from the shared
    counters at scrape time: nothing is done per frame for them. A port that cannot be bound is
    logged (``metrics_unavailable``) and inspection goes on. Changing this section needs a restart."""

    enabled: bool = True
    host: Host = "127.0.0.1"
    """Address to listen on. The endpoint has no authentication: any address other than loopback
    exposes it to that network, so it is never a default (set e.g. "0.0.0.0" here on purpose)."""
    port: Annotated[int, Field(ge=1, le=65535)] = 9108


class RecipeSection(_Section):
    """The model (and optionally the deadline) for one recipe number the PLC selects (handshake mode)."""

    model: ModelSection
    deadline: DeadlineSection | None = None
    """None keeps the top-level ``[deadline]``."""


RecipeNumber = Annotated[int, Field(ge=0, le=65535)]


class StageSection(_Section):
    """A further model in series: it runs only on the frames the stage before it labelled with one
    of ``when``, on the same frame, and its verdict replaces that stage's. The frame's deadline
    covers every stage."""

    when: Annotated[list[str], Field(min_length=1)]
    """Labels of the previous stage that send the frame on to this one (e.g. ["suspect"])."""
    model: ModelSection


def _check_geometry(where: str, pre: PreprocessSection, camera: CameraSection) -> None:
    if pre.roi is not None:
        x, y, w, h = pre.roi
        if x + w > camera.width or y + h > camera.height:
            raise ValueError(
                f"{where}.preprocess.roi {list(pre.roi)} exceeds the camera frame {camera.width}x{camera.height}"
            )
    if pre.color in ("rgb", "bgr") and camera.channels == 1:
        raise ValueError(
            f"{where}.preprocess.color={pre.color!r} needs a colour pixel_format, camera gives Mono8 "
            "(for a 3-channel model on a Mono8 camera set color = 'gray3')"
        )


class ArchiveSection(_ArchiveSettings):
    """``[archive]``: reject images (and sampled passes) written off the hot path
    (:mod:`linegate.archive`); a relative ``directory`` is relative to the configuration file."""

    @field_validator("directory", mode="before")
    @classmethod
    def _directory_path(cls, value: str | Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)


def _check_batching(cfg: Config) -> None:
    """``max_batch`` > 1 only on a first model whose frames are decided oldest first, with no stages."""
    firsts = [("model", cfg.model, cfg.deadline)] + [
        (f"recipes.{n}.model", r.model, r.deadline or cfg.deadline) for n, r in cfg.recipes.items()
    ]
    for key, model, deadline in firsts:
        if model.max_batch > 1 and 2 * model.max_batch > cfg.ring.slots:
            raise ValueError(f"{key}.max_batch = {model.max_batch}: a batch holds its ring slots until each frame's "
                             f"verdict is handed off; it may take at most half of ring.slots = {cfg.ring.slots} "
                             "(raise ring.slots or lower max_batch)")
        if model.max_batch > 1 and cfg.plc.mode == "handshake" and model.max_batch >= cfg.plc.handshake.buffer:
            raise ValueError(f"{key}.max_batch = {model.max_batch}: a batch's verdicts reach the PLC worker at once "
                             f"and must fit plc.handshake.buffer = {cfg.plc.handshake.buffer} beside the result "
                             "the PLC has not acknowledged yet (raise the buffer or lower max_batch)")
        if model.max_batch > 1 and cfg.stages:
            raise ValueError(f"{key}.max_batch = {model.max_batch}: batching is not supported with [[stages]] "
                             "(models in series); set it to 1")
        if model.parallel_asked > 1:
            _check_parallel(cfg, key, model)
        if model.max_batch > 1 and deadline.backlog == "newest_first":
            raise ValueError(f"{key}.max_batch = {model.max_batch}: batching decides the oldest waiting frames; "
                             "it needs deadline.backlog = 'oldest_first'")
    for i, stage in enumerate(cfg.stages):
        if stage.model.parallel_asked > 1:
            raise ValueError(f"stages.{i}.model.parallel = {stage.model.parallel}: a further stage runs one "
                             "frame at a time; set it to 1")
        if stage.model.max_batch > 1:
            raise ValueError(f"stages.{i}.model.max_batch = {stage.model.max_batch}: a further stage runs one "
                             "frame at a time; set it to 1")


def _parallel_refusal(cfg: Config, key: str, n: int) -> str:
    """Why ``parallel = n`` cannot run in *cfg* (empty: it can): what its frames hold and where their
    verdicts go must allow that many at once."""
    if 2 * n > cfg.ring.slots:
        return (f"{key}.parallel = {n}: each frame holds its ring slot until its verdict is handed off; it may "
                f"take at most half of ring.slots = {cfg.ring.slots} (raise ring.slots or lower parallel)")
    if cfg.plc.mode == "handshake" and n >= cfg.plc.handshake.buffer:
        return (f"{key}.parallel = {n}: that many verdicts may reach the PLC worker at once and must fit "
                f"plc.handshake.buffer = {cfg.plc.handshake.buffer} beside the result the PLC has not acknowledged "
                "yet (raise the buffer or lower parallel)")
    return ""


def _check_parallel(cfg: Config, key: str, model: ModelSection) -> None:
    """``parallel`` set to a number > 1 where it cannot run: refused, naming the key."""
    refusal = _parallel_refusal(cfg, key, model.parallel_asked)
    if refusal:
        raise ValueError(refusal)


def runnable_model(cfg: Config, model: ModelSection, stage: bool = False) -> ModelSection:
    """*model* (``cfg.model``, a recipe's, or with *stage* a further stage's) as its engine is to
    load it: ``parallel = "auto"`` set to 1 where 2 sessions could not run (see
    ``ModelSection.parallel``; a further stage runs one frame at a time); otherwise unchanged."""
    if model.parallel != "auto":
        return model
    runnable = model.backend == "onnxruntime" and model.max_batch == 1 and not stage
    if runnable and not _parallel_refusal(cfg, "model", 2):
        return model
    return model.model_copy(update={"parallel": 1})


def _check_fetch_timeout(camera: CameraSection, supervisor: SupervisorSection) -> None:
    """A fetch with no frame must end well within the heartbeat timeout, or a stopped line gets the
    acquisition worker killed as stalled (and, repeated, linegate stopped)."""
    longest, limit = longest_fetch_ms(camera.fetch_timeout_ms), supervisor.heartbeat_timeout_ms
    if longest > limit / 2:
        raise ValueError(
            f"camera.fetch_timeout_ms = {camera.fetch_timeout_ms}: a fetch with no frame lasts up to {longest} ms, "
            f"more than half of supervisor.heartbeat_timeout_ms = {limit:g}: whenever the line stops, the "
            "acquisition worker would be killed as stalled; lower the one or raise the other"
        )


class Config(_Section):
    """The whole linegate configuration."""

    instance: InstanceSection = InstanceSection()
    camera: CameraSection
    ring: RingSection = RingSection()
    model: ModelSection
    deadline: DeadlineSection = DeadlineSection()
    plc: PlcSection
    scheduling: SchedulingSection = SchedulingSection()
    supervisor: SupervisorSection = SupervisorSection()
    logging: LoggingSection = LoggingSection()
    metrics: MetricsSection = MetricsSection()
    archive: ArchiveSection = ArchiveSection()
    recipes: dict[RecipeNumber, RecipeSection] = {}
    """Recipe number (the PLC's ``recipe`` word, handshake mode) -> the model for that product. The
    top-level ``[model]`` runs until the PLC names a recipe; a recipe not listed here is a fault."""
    stages: list[StageSection] = []
    """``[[stages]]``: models in series after ``[model]`` (a recipe replaces ``[model]`` only)."""
    cameras: list[CameraEntry] = []
    """``[[cameras]]``: several cameras, one acquisition worker, ring and PLC worker each, one
    inference worker deciding all their frames (:mod:`linegate.config.lanes`). Empty: ``[camera]``."""

    @model_validator(mode="after")
    def _geometry_fits(self) -> Config:
        _check_geometry("model", self.model.preprocess, self.camera)
        for number, recipe in self.recipes.items():
            _check_geometry(f"recipes.{number}.model", recipe.model.preprocess, self.camera)
        previous = self.model
        for i, stage in enumerate(self.stages):
            _check_geometry(f"stages.{i}.model", stage.model.preprocess, self.camera)
            unknown = sorted(set(stage.when) - set(previous.postprocess.classes))
            if unknown:
                raise ValueError(
                    f"stages.{i}.when names {unknown}, not classes of the stage before it "
                    f"({previous.id}: {previous.postprocess.classes})"
                )
            previous = stage.model
        _check_batching(self)
        _check_fetch_timeout(self.camera, self.supervisor)
        if self.recipes and self.plc.mode != "handshake":
            raise ValueError("recipes are selected by the PLC's recipe word: they need plc.mode = 'handshake'")
        from linegate.config.lanes import check_cameras  # it builds on this module

        check_cameras(self)
        return self
