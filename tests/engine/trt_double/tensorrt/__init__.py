"""TEST DOUBLE of NVIDIA TensorRT 10's Python API -- NOT TensorRT. Only for linegate's tests.

TensorRT cannot be installed on this project's development, CI or GPU machines, so the tests put the
folder above this package on ``sys.path`` (``tests/engine/trt_double/__init__.py``) where the real
``tensorrt`` is not importable. It implements exactly the subset of the API that linegate uses:

- Builder side (runs on the CPU, no GPU needed): ``Builder``, ``INetworkDefinition``, ``OnnxParser``,
  ``IBuilderConfig`` (flags, memory pool limit, optimisation profiles, timing cache, progress
  monitor), ``IOptimizationProfile``, ``ITimingCache``, ``IProgressMonitor``. It checks what TensorRT
  checks for the cases linegate meets (dynamic inputs need a profile in every profile, shapes within
  min <= opt <= max, timing caches of another version) and serializes an "engine": a small header
  (JSON: version, flags, profiles, IO tensors) followed by the ONNX model's bytes.
- Runtime side: ``Runtime.deserialize_cuda_engine`` refuses anything else (or another double
  version) with an error through the logger and ``None``, as TensorRT refuses a foreign engine.
  ``IExecutionContext.execute_async_v3`` runs the ONNX model with onnxruntime on the CPU between the
  bound DEVICE buffers, copying with cuda-python on the given stream through pinned staging buffers:
  so linegate's real binding, shape and copy code runs on a real GPU. Unlike TensorRT it waits for
  the stream (the input copy) before it runs; precision flags do not change its arithmetic (always
  the ONNX model's types).
- CUDA graphs: called while its stream is capturing, ``execute_async_v3`` enqueues copy out, a HOST
  FUNCTION NODE that runs the model (``cuLaunchHostFunc`` from libcuda through ctypes: cuda-python's
  own wrapper frees its callback data after the first call, NVIDIA/cuda-python#790) and copy back,
  so every replay of the graph runs the model on the buffers' contents at that time. As TensorRT
  advises, capture needs one plain call first with the same shapes and addresses (the double's
  staging buffers are allocated there; capturing without it fails). ``IExecutionContext.capturable
  = False`` makes it behave like an engine that cannot be captured: a synchronising call that
  invalidates the capture, then failure.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import struct
import sys
import weakref
from enum import IntEnum
from typing import Any

import numpy as np

IS_LINEGATE_TEST_DOUBLE = True
__version__ = "10.3.0+linegate.double"

_ENGINE_MAGIC = b"LGTRTDBL"
_CACHE_MAGIC = b"LGTRTDBL-TIMING\n"


# --- enums ----------------------------------------------------------------------------------------


class _Severity(IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class DataType(IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    BF16 = 7
    INT64 = 8


class TensorIOMode(IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class TensorFormat(IntEnum):
    LINEAR = 0
    CHW4 = 2


class BuilderFlag(IntEnum):
    FP16 = 0
    INT8 = 1


class MemoryPoolType(IntEnum):
    WORKSPACE = 0


class LayerType(IntEnum):
    CONVOLUTION = 0
    ACTIVATION = 2
    POOLING = 3
    ELEMENTWISE = 6
    SOFTMAX = 8
    SHUFFLE = 14
    REDUCE = 16
    MATRIX_MULTIPLY = 18
    CONSTANT = 20
    QUANTIZE = 34
    DEQUANTIZE = 35


_LAYER_OF_OP = {
    "Conv": LayerType.CONVOLUTION, "Relu": LayerType.ACTIVATION, "Sigmoid": LayerType.ACTIVATION,
    "MaxPool": LayerType.POOLING, "AveragePool": LayerType.POOLING, "GlobalAveragePool": LayerType.REDUCE,
    "ReduceMean": LayerType.REDUCE, "Softmax": LayerType.SOFTMAX, "Flatten": LayerType.SHUFFLE,
    "Reshape": LayerType.SHUFFLE, "Transpose": LayerType.SHUFFLE, "Gemm": LayerType.MATRIX_MULTIPLY,
    "MatMul": LayerType.MATRIX_MULTIPLY, "Constant": LayerType.CONSTANT,
    "QuantizeLinear": LayerType.QUANTIZE, "DequantizeLinear": LayerType.DEQUANTIZE,
}  # fmt: skip
_DTYPE_OF_ONNX = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 2: DataType.UINT8, 6: DataType.INT32,
                  7: DataType.INT64, 9: DataType.BOOL, 16: DataType.BF16}  # fmt: skip
_NUMPY_OF = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
             DataType.UINT8: np.uint8, DataType.INT32: np.int32, DataType.INT64: np.int64,
             DataType.BOOL: np.bool_}  # fmt: skip


def nptype(dtype: DataType) -> type:
    """The numpy scalar type of a TensorRT data type (TypeError for one numpy lacks, as TensorRT)."""
    try:
        return _NUMPY_OF[DataType(dtype)]
    except KeyError:
        raise TypeError(f"could not resolve TensorRT datatype to an equivalent numpy datatype: {dtype}") from None


class Dims(tuple):  # type: ignore[type-arg]
    """A tensor's dimensions; -1 marks a dynamic one."""


# --- logging and progress -------------------------------------------------------------------------


class ILogger:
    """Base of loggers given to Builder, OnnxParser and Runtime; subclasses implement log()."""

    Severity = _Severity

    def __init__(self) -> None:
        pass

    def log(self, severity: _Severity, msg: str) -> None:
        raise NotImplementedError


class Logger(ILogger):
    """TensorRT's stock logger: prints messages at or above *min_severity* to stderr."""

    INTERNAL_ERROR = _Severity.INTERNAL_ERROR
    ERROR = _Severity.ERROR
    WARNING = _Severity.WARNING
    INFO = _Severity.INFO
    VERBOSE = _Severity.VERBOSE

    def __init__(self, min_severity: _Severity = _Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity: _Severity, msg: str) -> None:
        if severity <= self.min_severity:
            print(f"[TRT double] {_Severity(severity).name}: {msg}", file=sys.stderr)


class IProgressMonitor:
    """Base of build progress monitors; step_complete() returning False cancels the build."""

    def __init__(self) -> None:
        pass

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        raise NotImplementedError

    def step_complete(self, phase_name: str, step: int) -> bool:
        raise NotImplementedError

    def phase_finish(self, phase_name: str) -> None:
        raise NotImplementedError


class IHostMemory(bytes):
    """Serialized data (an engine, a timing cache); supports the buffer protocol like TensorRT's."""

    @property
    def nbytes(self) -> int:
        return len(self)


# --- network and parser ---------------------------------------------------------------------------


class ITensor:
    def __init__(self, name: str, shape: Dims, dtype: DataType) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class ILayer:
    def __init__(self, name: str, type: LayerType) -> None:
        self.name, self.type = name, type


class INetworkDefinition:
    """The network an OnnxParser fills: inputs, outputs, layers (one per ONNX node)."""

    def __init__(self, flags: int) -> None:
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self._layers: list[ILayer] = []
        self._onnx: bytes | None = None

    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))
    num_layers = property(lambda self: len(self._layers))

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]

    def get_layer(self, index: int) -> ILayer:
        return self._layers[index]

    def _fill(self, model: Any, data: bytes) -> None:
        initializers = {i.name for i in model.graph.initializer}
        self._inputs = [_tensor(v) for v in model.graph.input if v.name not in initializers]
        self._outputs = [_tensor(v) for v in model.graph.output]
        self._layers = [ILayer(n.name or f"node_{i}", _LAYER_OF_OP.get(n.op_type, LayerType.ELEMENTWISE))
                        for i, n in enumerate(model.graph.node)]  # fmt: skip
        self._onnx = data


def _tensor(value_info: Any) -> ITensor:
    t = value_info.type.tensor_type
    dims = Dims(int(d.dim_value) if d.HasField("dim_value") else -1 for d in t.shape.dim)
    return ITensor(value_info.name, dims, _DTYPE_OF_ONNX.get(t.elem_type, DataType.FLOAT))


class ParserError:
    def __init__(self, desc: str, node_operator: str = "") -> None:
        self._desc, self._op = desc, node_operator

    def desc(self) -> str:
        return self._desc

    def code(self) -> int:
        return 1

    def node(self) -> int:
        return -1

    def node_name(self) -> str:
        return ""

    def node_operator(self) -> str:
        return self._op

    def __str__(self) -> str:
        return f"In node -1 with name:  and operator: {self._op} (parse): INVALID_GRAPH: {self._desc}"


class OnnxParser:
    """Parses an ONNX model into a network; errors are kept for get_error()."""

    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self._network, self._logger = network, logger
        self._errors: list[ParserError] = []

    num_errors = property(lambda self: len(self._errors))

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]

    def clear_errors(self) -> None:
        self._errors.clear()

    def parse_from_file(self, model: str) -> bool:
        import onnx

        try:
            proto = onnx.load(model)  # external data, if any, is read from beside the file
        except Exception as exc:
            return self._fail(f"cannot read {model}: {exc}")
        return self._accept(proto)

    def parse(self, model: bytes, path: str | None = None) -> bool:
        import onnx

        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as exc:
            return self._fail(f"not an ONNX model: {exc}")
        return self._accept(proto)

    def _accept(self, proto: Any) -> bool:
        import onnx
        import onnxruntime as ort

        try:
            onnx.checker.check_model(proto)
            data = proto.SerializeToString()
            ort.InferenceSession(data, providers=["CPUExecutionProvider"])  # unsupported operators fail here
        except Exception as exc:
            return self._fail(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        self._network._fill(proto, data)
        return True

    def _fail(self, desc: str) -> bool:
        self._errors.append(ParserError(desc))
        self._logger.log(_Severity.ERROR, f"ModelImporter: {desc}")
        return False


# --- builder --------------------------------------------------------------------------------------


class IOptimizationProfile:
    """min/opt/max shapes for dynamic inputs."""

    def __init__(self) -> None:
        self._shapes: dict[str, tuple[Dims, Dims, Dims]] = {}
        self._errors: list[str] = []

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        lo, mid, hi = (Dims(int(d) for d in s) for s in (min, opt, max))
        if not len(lo) == len(mid) == len(hi) or not all(a <= b <= c for a, b, c in zip(lo, mid, hi, strict=False)):
            self._errors.append(f"{input}: expected min <= opt <= max, got {list(lo)}, {list(mid)}, {list(hi)}")
        self._shapes[input] = (lo, mid, hi)

    def get_shape(self, input: str) -> list[Dims]:
        return list(self._shapes[input]) if input in self._shapes else []


class ITimingCache:
    def __init__(self, version: str, entries: dict[str, str]) -> None:
        self._version, self._entries = version, entries

    def serialize(self) -> IHostMemory:
        body = json.dumps({"tensorrt_version": self._version, "entries": self._entries}, sort_keys=True)
        return IHostMemory(_CACHE_MAGIC + body.encode())


class IBuilderConfig:
    def __init__(self, logger: ILogger) -> None:
        self._logger = logger
        self._flags: set[BuilderFlag] = set()
        self._pools: dict[MemoryPoolType, int] = {}
        self._profiles: list[IOptimizationProfile] = []
        self._cache: ITimingCache | None = None
        self.progress_monitor: IProgressMonitor | None = None

    num_optimization_profiles = property(lambda self: len(self._profiles))

    def set_flag(self, flag: BuilderFlag) -> None:
        self._flags.add(BuilderFlag(flag))

    def clear_flag(self, flag: BuilderFlag) -> None:
        self._flags.discard(BuilderFlag(flag))

    def get_flag(self, flag: BuilderFlag) -> bool:
        return BuilderFlag(flag) in self._flags

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self._pools[MemoryPoolType(pool)] = int(pool_size)

    def get_memory_pool_limit(self, pool: MemoryPoolType) -> int:
        return self._pools.get(MemoryPoolType(pool), 1 << 40)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        if profile._errors or not profile._shapes:
            for error in profile._errors or ["the profile sets no shape"]:
                self._logger.log(_Severity.ERROR, f"IBuilderConfig::addOptimizationProfile: {error}")
            return -1
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
        blob = bytes(serialized_timing_cache)
        if not blob:
            return ITimingCache(__version__, {})
        try:
            if not blob.startswith(_CACHE_MAGIC):
                raise ValueError("bad magic")
            data = json.loads(blob[len(_CACHE_MAGIC) :])
            return ITimingCache(str(data["tensorrt_version"]), dict(data["entries"]))
        except (ValueError, KeyError, TypeError):
            self._logger.log(_Severity.ERROR, "createTimingCache: the serialized timing cache is corrupt")
            return None

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if cache._version != __version__ and not ignore_mismatch:
            message = f"setTimingCache: cache from TensorRT {cache._version}, this is {__version__}"
            self._logger.log(_Severity.ERROR, message)
            return False
        self._cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._cache


class Builder:
    """Builds a serialized "engine" of the double from a parsed network."""

    def __init__(self, logger: ILogger) -> None:
        self._logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self._logger)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
        log = self._logger.log
        if network._onnx is None:
            log(_Severity.ERROR, "build_serialized_network: the network has no inputs (nothing parsed)")
            return None
        profiles = _check_profiles(network, config, log)
        if profiles is None:
            return None
        if BuilderFlag.INT8 in config._flags and not any(
            layer.type in (LayerType.QUANTIZE, LayerType.DEQUANTIZE) for layer in network._layers
        ):
            log(_Severity.WARNING, "INT8 without calibration or Q/DQ layers: placeholder scales, accuracy is lost")
        log(_Severity.INFO, f"double build: {len(network._layers)} layers, {max(1, len(profiles))} profile(s)")
        if not _report_progress(config.progress_monitor, max(1, len(profiles))):
            log(_Severity.ERROR, "Build cancelled by the progress monitor")
            return None
        flags = sorted(f.name for f in config._flags)
        if config._cache is not None:
            digest = hashlib.sha256(network._onnx).hexdigest()[:16]
            for i, profile in enumerate(profiles or [[]]):
                config._cache._entries[f"{digest}:{flags}:{profile}"] = f"tactic-{i}"
        header = {
            "tensorrt_version": __version__,
            "flags": flags,
            "workspace": config._pools.get(MemoryPoolType.WORKSPACE),
            "profiles": profiles,
            "io": [{"name": t.name, "mode": mode.name, "dtype": t.dtype.name, "shape": list(t.shape)}
                   for ts, mode in ((network._inputs, TensorIOMode.INPUT), (network._outputs, TensorIOMode.OUTPUT))
                   for t in ts],
        }  # fmt: skip
        blob = json.dumps(header).encode()
        return IHostMemory(_ENGINE_MAGIC + struct.pack("<I", len(blob)) + blob + network._onnx)


def _check_profiles(network: INetworkDefinition, config: IBuilderConfig, log: Any) -> list[Any] | None:
    """The profiles as JSON-able lists; None (after an error) if a dynamic input lacks a valid range."""
    dynamic = {t.name: t.shape for t in network._inputs if -1 in t.shape}
    if dynamic and not config._profiles:
        log(_Severity.ERROR, "Network has dynamic or shape inputs, but no optimization profile has been defined.")
        return None
    out = []
    for index, profile in enumerate(config._profiles):
        for name, shape in dynamic.items():
            if name not in profile._shapes:
                log(_Severity.ERROR, f"optimization profile {index} is missing values for input {name}")
                return None
            for dims in profile._shapes[name]:
                if len(dims) != len(shape) or any(s not in (-1, d) for s, d in zip(shape, dims, strict=True)):
                    log(_Severity.ERROR, f"profile {index}: {name} {list(dims)} does not fit {list(shape)}")
                    return None
        out.append({n: [list(d) for d in s] for n, s in profile._shapes.items()})
    return out


def _report_progress(monitor: IProgressMonitor | None, steps: int) -> bool:
    """Walk a top phase of *steps* steps with one nested phase each; False if the monitor cancels."""
    if monitor is None:
        return True
    top = "Building engine"
    monitor.phase_start(top, None, steps)
    try:
        for step in range(steps):
            inner = f"Tactic selection {step}"
            monitor.phase_start(inner, top, 1)
            ok = monitor.step_complete(inner, 0)
            monitor.phase_finish(inner)
            if not ok or not monitor.step_complete(top, step):
                return False
        return True
    finally:
        monitor.phase_finish(top)


# --- runtime --------------------------------------------------------------------------------------


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self._logger = logger

    def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
        data = bytes(serialized_engine)
        error = None
        if not data.startswith(_ENGINE_MAGIC) or len(data) < len(_ENGINE_MAGIC) + 4:
            error = "Serialization assertion failed: magic tag does not match (not an engine of this TensorRT)"
        else:
            (size,) = struct.unpack_from("<I", data, len(_ENGINE_MAGIC))
            start = len(_ENGINE_MAGIC) + 4
            try:
                header = json.loads(data[start : start + size])
            except ValueError:
                header, error = None, "Serialization assertion failed: corrupt engine header"
            if header is not None and header.get("tensorrt_version") != __version__:
                error = f"version tag does not match: engine {header.get('tensorrt_version')}, runtime {__version__}"
        if error is not None:
            self._logger.log(_Severity.ERROR, f"IRuntime::deserializeCudaEngine: {error}")
            return None
        return ICudaEngine(header, data[start + size :], self._logger)


class ICudaEngine:
    def __init__(self, header: dict[str, Any], onnx_bytes: bytes, logger: ILogger) -> None:
        self._io = header["io"]
        self._by_name = {t["name"]: t for t in self._io}
        self._profiles: list[dict[str, list[list[int]]]] = header["profiles"]
        self._onnx = onnx_bytes
        self._logger = logger
        self._session: Any = None

    num_io_tensors = property(lambda self: len(self._io))
    num_optimization_profiles = property(lambda self: max(1, len(self._profiles)))

    def get_tensor_name(self, index: int) -> str:
        return str(self._io[index]["name"])

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        t = self._by_name.get(name)
        return TensorIOMode[t["mode"]] if t else TensorIOMode.NONE

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType[self._by_name[name]["dtype"]]

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self._by_name[name]["shape"])

    def get_tensor_format(self, name: str) -> TensorFormat:
        return TensorFormat.LINEAR

    def get_tensor_format_desc(self, name: str) -> str:
        return "Row major linear FP32 format (kLINEAR)"

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        shape = self.get_tensor_shape(name)
        if not self._profiles:
            return [shape, shape, shape]
        ranges = self._profiles[profile_index].get(name)
        return [Dims(r) for r in ranges] if ranges else [shape, shape, shape]

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._session is None:
            import onnxruntime as ort

            self._session = ort.InferenceSession(self._onnx, providers=["CPUExecutionProvider"])
        outputs = [t["name"] for t in self._io if t["mode"] == "OUTPUT"]
        return [np.asarray(a) for a in self._session.run(outputs, feeds)]


_HOST_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_libcuda: Any = None


def _launch_host_func(stream_handle: int, fn: Any) -> int:
    """``cuLaunchHostFunc(stream, fn, NULL)`` straight from libcuda; the CUresult (0: success).

    *fn* (a ``_HOST_FN``) must stay alive as long as any graph holding the node may be launched.
    """
    global _libcuda
    if _libcuda is None:
        lib = ctypes.CDLL("libcuda.so.1")
        lib.cuLaunchHostFunc.argtypes = [ctypes.c_void_p, _HOST_FN, ctypes.c_void_p]
        lib.cuLaunchHostFunc.restype = ctypes.c_int
        _libcuda = lib
    return int(_libcuda.cuLaunchHostFunc(ctypes.c_void_p(stream_handle), fn, None))


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:  # older cuda-python layout
        from cuda import cudart
    return cudart


def _check(result: Any, call: str) -> Any:
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"{call}: {err}")
    return rest[0] if rest else None


def _free_pinned(staging: dict[str, tuple[int, int]]) -> None:
    cudart = _cudart()
    for ptr, _ in staging.values():
        cudart.cudaFreeHost(ptr)
    staging.clear()


class IExecutionContext:
    """Input shapes, tensor addresses and the active profile of one engine; runs it between device buffers."""

    capturable = True
    """False: behave like an engine TensorRT cannot capture into a CUDA graph (tests of the fall-back)."""

    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self._profile = 0
        self._shapes = {t["name"]: Dims(t["shape"]) for t in engine._io if t["mode"] == "INPUT"}
        self._addresses: dict[str, int] = {}
        self._output_shapes: dict[tuple[Any, ...], list[Dims]] = {}
        self._staging: dict[str, tuple[int, int]] = {}  # tensor -> (pinned host address, bytes)
        self._staged: tuple[Any, ...] | None = None  # the shapes and addresses of the last plain run
        self._out_nbytes: dict[str, int] = {}
        self._host_fn = _HOST_FN(self._host_node)  # kept alive with the context: graphs call it
        self.host_runs = 0
        """Model runs in host function nodes (graph replays), for tests."""
        weakref.finalize(self, _free_pinned, self._staging).atexit = False

    @property
    def active_optimization_profile(self) -> int:
        return self._profile

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        if not 0 <= profile_index < self.engine.num_optimization_profiles:
            self._error(f"setOptimizationProfileAsync: profile {profile_index} does not exist")
            return False
        self._profile = profile_index
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            self._error(f"setInputShape: {name} is not an input tensor")
            return False
        dims = Dims(int(d) for d in shape)
        lo, _opt, hi = self.engine.get_tensor_profile_shape(name, self._profile)
        if len(dims) != len(lo) or not all(a <= d <= b for a, d, b in zip(lo, dims, hi, strict=True)):
            self._error(f"setInputShape: {name} {list(dims)} is outside profile {self._profile} {list(lo)}..{list(hi)}")
            return False
        self._shapes[name] = dims
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        if name in self._shapes:
            return self._shapes[name]
        shape = self.engine.get_tensor_shape(name)
        if -1 not in shape:
            return shape
        if any(-1 in s for s in self._shapes.values()):
            return shape  # outputs are unknown until every input shape is set
        key = tuple(sorted(self._shapes.items()))
        if key not in self._output_shapes:
            feeds = {n: np.zeros(s, dtype=nptype(self.engine.get_tensor_dtype(n))) for n, s in self._shapes.items()}
            self._output_shapes[key] = [Dims(a.shape) for a in self.engine._run(feeds)]
        names = [t["name"] for t in self.engine._io if t["mode"] == "OUTPUT"]
        return self._output_shapes[key][names.index(name)]

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if self.engine.get_tensor_mode(name) == TensorIOMode.NONE:
            self._error(f"setTensorAddress: no tensor named {name}")
            return False
        self._addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        """Copy inputs device -> host, run onnxruntime, copy outputs host -> device, all on *stream_handle*.

        While the stream is capturing, the run is enqueued as a host function node between the copies.
        """
        cudart = _cudart()
        names = [t["name"] for t in self.engine._io]
        missing = [n for n in names if n not in self._addresses]
        if missing:
            self._error(f"enqueueV3: no address set for {missing}")
            return False
        unset = [n for n, s in self._shapes.items() if -1 in s]
        if unset:
            self._error(f"enqueueV3: input shapes not specified for {unset}")
            return False
        try:
            status = _check(cudart.cudaStreamIsCapturing(stream_handle), "cudaStreamIsCapturing")
            if int(status) == int(cudart.cudaStreamCaptureStatus.cudaStreamCaptureStatusActive):
                return self._enqueue_captured(cudart, stream_handle)
            self._run_now(cudart, stream_handle)
        except Exception as exc:
            self._error(f"enqueueV3: {exc}")
            return False
        return True

    def _outputs(self) -> list[dict[str, Any]]:
        return [t for t in self.engine._io if t["mode"] == "OUTPUT"]

    def _stage(self, cudart: Any, name: str, nbytes: int) -> int:
        """The pinned staging buffer of tensor *name*, (re)allocated to hold *nbytes*."""
        ptr, size = self._staging.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(cudart.cudaFreeHost(ptr), "cudaFreeHost")
                del self._staging[name]
            ptr = int(_check(cudart.cudaHostAlloc(max(nbytes, 1), 0), "cudaHostAlloc"))
            self._staging[name] = (ptr, max(nbytes, 1))
        return ptr

    def _view(self, name: str, shape: Any, dtype: Any) -> np.ndarray:
        ptr, size = self._staging[name]
        dt = np.dtype(dtype)
        count = int(np.prod(shape))
        raw = memoryview((ctypes.c_byte * size).from_address(ptr)).cast("B")
        return np.frombuffer(raw, dtype=dt, count=count).reshape(shape)

    def _state(self) -> tuple[Any, ...]:
        return tuple(sorted(self._shapes.items())), tuple(sorted(self._addresses.items()))

    def _in_nbytes(self, name: str) -> int:
        return int(np.prod(self._shapes[name])) * np.dtype(nptype(self.engine.get_tensor_dtype(name))).itemsize

    def _copy_inputs(self, cudart: Any, stream_handle: int) -> None:
        for name in self._shapes:
            _check(cudart.cudaMemcpyAsync(self._staging[name][0], self._addresses[name], self._in_nbytes(name),
                                          cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream_handle),
                   "cudaMemcpyAsync(D2H)")  # fmt: skip

    def _copy_outputs(self, cudart: Any, stream_handle: int) -> None:
        for t in self._outputs():
            name = t["name"]
            _check(cudart.cudaMemcpyAsync(self._addresses[name], self._staging[name][0], self._out_nbytes[name],
                                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream_handle),
                   "cudaMemcpyAsync(H2D)")  # fmt: skip

    def _run_now(self, cudart: Any, stream_handle: int) -> None:
        """The plain call: stage, copy in, wait, run, copy back (asynchronously, from pinned staging)."""
        for name in self._shapes:
            self._stage(cudart, name, self._in_nbytes(name))
        self._copy_inputs(cudart, stream_handle)
        _check(cudart.cudaStreamSynchronize(stream_handle), "cudaStreamSynchronize")  # also the last copy back
        feeds = {n: self._view(n, s, nptype(self.engine.get_tensor_dtype(n))).copy() for n, s in self._shapes.items()}
        results = self.engine._run(feeds)
        for t, value in zip(self._outputs(), results, strict=True):
            out = np.ascontiguousarray(value, dtype=nptype(DataType[t["dtype"]]))
            self._stage(cudart, t["name"], out.nbytes)
            self._out_nbytes[t["name"]] = out.nbytes
            self._view(t["name"], out.shape, out.dtype)[...] = out
        self._staged = self._state()
        self._copy_outputs(cudart, stream_handle)

    def _enqueue_captured(self, cudart: Any, stream_handle: int) -> bool:
        if not self.capturable:
            # What a non-capturable engine does: a synchronising call, which invalidates the capture.
            (err,) = cudart.cudaStreamSynchronize(stream_handle)
            self._error(f"enqueueV3: this engine cannot be captured into a CUDA graph ({err})")
            return False
        if self._staged != self._state():
            self._error("enqueueV3: captured before a plain call with these shapes and addresses "
                        "(call execute_async_v3 once before capturing)")  # fmt: skip
            return False
        self._copy_inputs(cudart, stream_handle)
        _check(_launch_host_func(stream_handle, self._host_fn), "cuLaunchHostFunc")
        self._copy_outputs(cudart, stream_handle)
        return True

    def _host_node(self, _user_data: Any) -> None:
        """The model run of a graph replay, on CUDA's callback thread: staging in -> staging out.

        No CUDA call is allowed here. A failure is logged and the outputs are set to NaN bytes.
        """
        try:
            feeds = {n: self._view(n, s, nptype(self.engine.get_tensor_dtype(n))).copy()
                     for n, s in self._shapes.items()}  # fmt: skip
            results = self.engine._run(feeds)
            for t, value in zip(self._outputs(), results, strict=True):
                out = np.ascontiguousarray(value, dtype=nptype(DataType[t["dtype"]]))
                if out.nbytes != self._out_nbytes[t["name"]]:
                    raise RuntimeError(f"{t['name']} has {out.nbytes} bytes, the graph copies another size")
                self._view(t["name"], out.shape, out.dtype)[...] = out
            self.host_runs += 1
        except Exception as exc:
            self._error(f"enqueueV3 host node: {exc}")
            for t in self._outputs():
                self._view(t["name"], (self._out_nbytes[t["name"]],), np.uint8)[...] = 0xFF

    def _error(self, message: str) -> None:
        self.engine._logger.log(_Severity.ERROR, message)
