"""CUDA memory, streams, events, copies and run-time compiled kernels through cuda-python (the only
module importing it).

Everything is allocated once at load; per frame the engine only enqueues copies and waits. Host
memory linegate already owns (a shared-memory ring slot) can be registered as pinned memory, so the
host-to-device copy is a DMA straight from the slot; on Jetson, where CPU and GPU share memory, a
mapped registration gives a device pointer that kernels read in place.

Kernels are compiled from source with NVRTC and launched through the driver API (cuModuleLoadData,
cuLaunchKernel): that path is the same in cuda-python 12.x and 13.x, and the driver API works in the
runtime's primary context, so runtime streams and buffers and driver launches mix freely.

Work that repeats on the same buffers (a TensorRT run with its copies) can be captured once as a
CUDA graph (:class:`Graph`) and replayed with one launch per frame.

On JetPack 6 (CUDA 12.6 driver) use cuda-python 12.x: the 13.x bindings need a CUDA 13 driver.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.errors import EngineError
from linegate.timing.clock import Clock, MonotonicClock
from linegate.timing.polling import SLEEP_S, SPIN_NS, wait_until

try:  # cuda-python >= 12.6 / 13
    from cuda.bindings import driver, nvrtc
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - older cuda-python layout
    from cuda import cuda as driver
    from cuda import cudart, nvrtc

_SUCCESS = int(cudart.cudaError_t.cudaSuccess)
_NOT_READY = int(cudart.cudaError_t.cudaErrorNotReady)
_CU_SUCCESS = int(driver.CUresult.CUDA_SUCCESS)
_NVRTC_SUCCESS = int(nvrtc.nvrtcResult.NVRTC_SUCCESS)


def _name(err: Any) -> str:
    return str(getattr(err, "name", err))


def check(result: Any, call: str) -> Any:
    """Unpack cudart's ``(err, *values)``; raise EngineError naming *call* and the CUDA error.

    Returns None for a call that gives only an error code, the value for one value, else a tuple.
    """
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != _SUCCESS:
        _, name = cudart.cudaGetErrorName(err)
        raise EngineError(f"{call} failed: {name.decode() if isinstance(name, bytes) else name}")
    return _values(values)


def check_driver(result: Any, call: str) -> Any:
    """:func:`check` for the driver API's ``(CUresult, *values)``."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != _CU_SUCCESS:
        raise EngineError(f"{call} failed: {_name(err)}")
    return _values(values)


def _check_nvrtc(result: Any, call: str, log: str = "") -> Any:
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != _NVRTC_SUCCESS:
        raise EngineError(f"{call} failed: {_name(err)}" + (f"\n{log}" if log else ""))
    return _values(values)


def _values(values: list[Any]) -> Any:
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_count() -> int:
    """Number of CUDA devices; 0 when there is no driver or no device."""
    err, count = cudart.cudaGetDeviceCount()
    return int(count) if int(err) == _SUCCESS else 0


def compute_capability(device: int | None = None) -> tuple[int, int]:
    """(major, minor) of *device* (the current one by default)."""
    dev = int(check(cudart.cudaGetDevice(), "cudaGetDevice")) if device is None else device
    attr = cudart.cudaDeviceAttr
    major = check(cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, dev), "cudaDeviceGetAttribute")
    minor = check(cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, dev), "cudaDeviceGetAttribute")
    return int(major), int(minor)


def driver_version() -> tuple[int, int]:
    """The CUDA version the driver supports, e.g. (12, 6)."""
    v = int(check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion"))
    return v // 1000, v % 1000 // 10


def nvrtc_version() -> tuple[int, int]:
    """NVRTC's (major, minor); raises EngineError when libnvrtc cannot be loaded."""
    try:
        result = nvrtc.nvrtcVersion()
    except Exception as exc:  # cuda-python raises its own loader error when libnvrtc is missing
        raise EngineError(f"NVRTC is not available: {exc}") from exc
    major, minor = _check_nvrtc(result, "nvrtcVersion")
    return int(major), int(minor)


class PinnedBuffer:
    """Page-locked host memory from cudaHostAlloc, viewed as numpy."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.ptr = int(check(cudart.cudaHostAlloc(nbytes, cudart.cudaHostAllocDefault), f"cudaHostAlloc({nbytes})"))

    def array(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> npt.NDArray[Any]:
        """A writable numpy view of the first ``prod(shape)`` elements; valid until :meth:`close`."""
        dt = np.dtype(dtype)
        count = int(np.prod(shape))
        if count * dt.itemsize > self.nbytes:
            raise EngineError(f"a {shape} {dt} view does not fit a {self.nbytes}-byte pinned buffer")
        raw = memoryview((ctypes.c_byte * self.nbytes).from_address(self.ptr)).cast("B")
        view: npt.NDArray[Any] = np.frombuffer(raw, dtype=dt, count=count)
        return view.reshape(shape)

    def close(self) -> None:
        if self.ptr:
            check(cudart.cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


class DeviceBuffer:
    """Device memory from cudaMalloc."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.ptr = int(check(cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))

    @classmethod
    def upload(cls, data: npt.NDArray[Any]) -> DeviceBuffer:
        """A new device buffer holding a copy of *data* (synchronous: for tables built at load)."""
        host = np.ascontiguousarray(data)
        buf = cls(max(host.nbytes, 1))
        try:
            kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            check(cudart.cudaMemcpy(buf.ptr, host.ctypes.data, host.nbytes, kind), f"cudaMemcpy({host.nbytes} bytes)")
        except EngineError:
            buf.close()
            raise
        return buf

    def close(self) -> None:
        if self.ptr:
            check(cudart.cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class Stream:
    """A non-blocking CUDA stream (no implicit synchronisation with the legacy default stream)."""

    def __init__(self) -> None:
        self.handle: Any = check(
            cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreateWithFlags"
        )

    def synchronize(self) -> None:
        check(cudart.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.handle is not None:
            check(cudart.cudaStreamDestroy(self.handle), "cudaStreamDestroy")
            self.handle = None

    @property
    def address(self) -> int:
        """The raw cudaStream_t as an integer, as TensorRT's execute_async_v3 wants it."""
        return int(self.handle)


class Event:
    """A CUDA event: marks a point in a stream; timed (for measuring) or not (cheaper, for waiting)."""

    def __init__(self, *, timing: bool = True) -> None:
        flags = cudart.cudaEventDefault if timing else cudart.cudaEventDisableTiming
        self.handle: Any = check(cudart.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags")

    def record(self, stream: Stream) -> None:
        check(cudart.cudaEventRecord(self.handle, stream.handle), "cudaEventRecord")

    def query(self) -> bool:
        """True once all work before the last record has finished, False while it runs; never blocks.

        Raises EngineError on a CUDA error (a fault in that work shows here).
        """
        (err,) = cudart.cudaEventQuery(self.handle)
        if int(err) == _NOT_READY:
            return False
        check((err,), "cudaEventQuery")  # raises on anything but success
        return True

    def wait(
        self, deadline_ns: int, *, clock: Clock | None = None, spin_ns: int = SPIN_NS, sleep_s: float = SLEEP_S
    ) -> bool:
        """Poll until the recorded work is done (True) or *deadline_ns* on *clock* passes (False).

        Unlike :meth:`synchronize` the wait is bounded: a GPU that stalls cannot hold the caller past the deadline.
        """
        return wait_until(self.query, deadline_ns, clock=clock or _MONOTONIC, spin_ns=spin_ns, sleep_s=sleep_s)

    def synchronize(self) -> None:
        check(cudart.cudaEventSynchronize(self.handle), "cudaEventSynchronize")

    def elapsed_ms(self, start: Event) -> float:
        """Milliseconds from *start* to this event (both recorded and this one complete)."""
        return float(check(cudart.cudaEventElapsedTime(start.handle, self.handle), "cudaEventElapsedTime"))

    def close(self) -> None:
        if self.handle is not None:
            check(cudart.cudaEventDestroy(self.handle), "cudaEventDestroy")
            self.handle = None


_MONOTONIC = MonotonicClock()


def _copy(dst: int, src: int, nbytes: int, kind: Any, stream: Stream, what: str) -> None:
    check(cudart.cudaMemcpyAsync(dst, src, nbytes, kind, stream.handle), f"cudaMemcpyAsync({what}, {nbytes} bytes)")


def copy_h2d_async(dst_dev: int, src_host: int, nbytes: int, stream: Stream) -> None:
    """Enqueue a host-to-device copy; asynchronous only when *src_host* is pinned or registered."""
    _copy(dst_dev, src_host, nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream, "host to device")


def copy_d2h_async(dst_host: int, src_dev: int, nbytes: int, stream: Stream) -> None:
    """Enqueue a device-to-host copy into pinned or registered host memory."""
    _copy(dst_host, src_dev, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream, "device to host")


def copy_d2d_async(dst_dev: int, src_dev: int, nbytes: int, stream: Stream) -> None:
    """Enqueue a device-to-device copy (a mapped host pointer counts as a device pointer)."""
    _copy(dst_dev, src_dev, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream, "device to device")


def memset_async(dst_dev: int, value: int, nbytes: int, stream: Stream) -> None:
    """Enqueue filling *nbytes* of device memory with the byte *value*."""
    check(cudart.cudaMemsetAsync(dst_dev, value, nbytes, stream.handle), f"cudaMemsetAsync({nbytes} bytes)")


class HostRegistration:
    """Existing host memory (e.g. a frame-ring slot) registered as pinned, optionally mapped for the GPU.

    *address* and *nbytes* should be page-aligned (ring slots are). The memory must stay mapped
    until :meth:`close`.
    """

    def __init__(self, address: int, nbytes: int, *, mapped: bool = False) -> None:
        flags = cudart.cudaHostRegisterMapped if mapped else cudart.cudaHostRegisterDefault
        check(cudart.cudaHostRegister(address, nbytes, flags), f"cudaHostRegister({nbytes} bytes)")
        self.address = address
        self.nbytes = nbytes
        self.device_ptr: int | None = None
        if mapped:
            try:
                self.device_ptr = int(check(cudart.cudaHostGetDevicePointer(address, 0), "cudaHostGetDevicePointer"))
            except EngineError:
                self.close()
                raise

    def close(self) -> None:
        if self.address:
            check(cudart.cudaHostUnregister(self.address), "cudaHostUnregister")
            self.address = 0
            self.device_ptr = None


class Graph:
    """The work *enqueue* puts on *stream*, captured once into a CUDA graph and instantiated: each
    :meth:`launch` replays all of it with one call.

    The capture is thread-local (``cudaStreamCaptureModeThreadLocal``): other threads may use CUDA
    meanwhile. A replay reads and writes the same addresses the capture saw, so the graph is valid
    only while those buffers (and, for TensorRT, the input shapes) stay as they were. Raises
    EngineError naming the call that failed; the stream leaves capture mode either way.
    """

    def __init__(self, stream: Stream, enqueue: Callable[[Stream], None]) -> None:
        self.graph: Any = None
        self.exec: Any = None
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(cudart.cudaStreamBeginCapture(stream.handle, mode), "cudaStreamBeginCapture")
        try:
            enqueue(stream)
        except Exception as exc:
            self._abandon(stream)
            raise EngineError(f"capturing a CUDA graph failed: {exc}") from exc
        err, graph = cudart.cudaStreamEndCapture(stream.handle)
        if int(err) != _SUCCESS:
            cudart.cudaGetLastError()  # an invalidated capture also sets the last error: clear it
            check((err,), "cudaStreamEndCapture")
        self.graph = graph
        try:
            self.exec = check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        except EngineError:
            self.close()
            raise

    @staticmethod
    def _abandon(stream: Stream) -> None:
        """End a capture whose work failed; drop whatever graph it left."""
        err, graph = cudart.cudaStreamEndCapture(stream.handle)
        if int(err) == _SUCCESS and graph is not None and int(graph):
            cudart.cudaGraphDestroy(graph)
        cudart.cudaGetLastError()

    def launch(self, stream: Stream) -> None:
        """Enqueue one replay of the captured work on *stream*."""
        check(cudart.cudaGraphLaunch(self.exec, stream.handle), "cudaGraphLaunch")

    def close(self) -> None:
        """Destroy the executable graph and the graph (after their launches are done)."""
        if self.exec is not None:
            check(cudart.cudaGraphExecDestroy(self.exec), "cudaGraphExecDestroy")
            self.exec = None
        if self.graph is not None:
            check(cudart.cudaGraphDestroy(self.graph), "cudaGraphDestroy")
            self.graph = None


# --- run-time compiled kernels ---------------------------------------------------------------------


def nvrtc_target(capability: tuple[int, int], supported: Sequence[int]) -> tuple[str, bool]:
    """The NVRTC ``--gpu-architecture`` for a device of *capability*, and whether it gives a CUBIN.

    Machine code for the device itself when NVRTC knows it (no JIT at load, and a CUBIN loads on
    any driver of the same major version, where PTX needs a driver at least as new as NVRTC);
    else PTX for the newest architecture below it, which the driver compiles at load.
    """
    want = capability[0] * 10 + capability[1]
    if want in supported:
        return f"sm_{want}", True
    older = [arch for arch in supported if arch <= want]
    if not older:
        raise EngineError(f"NVRTC cannot compile for compute capability {capability[0]}.{capability[1]}")
    return f"compute_{max(older)}", False


def compile_cuda(source: str, name: str, options: Sequence[str]) -> bytes:
    """Compile CUDA C++ *source* for the current device with NVRTC; returns a CUBIN or PTX image.

    Raises EngineError with NVRTC's log when the source does not compile.
    """
    nvrtc_version()  # a clear error when libnvrtc is missing
    supported = _check_nvrtc(nvrtc.nvrtcGetSupportedArchs(), "nvrtcGetSupportedArchs")
    arch, cubin = nvrtc_target(compute_capability(), [int(a) for a in supported])
    prog = _check_nvrtc(nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []), "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in options)]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        size = _check_nvrtc(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
        log = bytearray(int(size))
        _check_nvrtc(nvrtc.nvrtcGetProgramLog(prog, log), "nvrtcGetProgramLog")
        _check_nvrtc((err,), f"nvrtcCompileProgram({name}, {arch})", log.rstrip(b"\0").decode(errors="replace"))
        get_size, get = (nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN) if cubin else (
            nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX)  # fmt: skip
        image = bytearray(int(_check_nvrtc(get_size(prog), "nvrtcGet image size")))
        _check_nvrtc(get(prog, image), "nvrtcGet image")
        return bytes(image)
    finally:
        _check_nvrtc(nvrtc.nvrtcDestroyProgram(prog), "nvrtcDestroyProgram")


def _ensure_context() -> None:
    """Make the runtime's primary context current on this thread (the driver API needs one)."""
    check(cudart.cudaFree(0), "cudaFree(0)")
    check_driver(driver.cuInit(0), "cuInit")
    if not int(check_driver(driver.cuCtxGetCurrent(), "cuCtxGetCurrent")):
        raise EngineError("no current CUDA context after the runtime initialised")


class Module:
    """A compiled CUBIN or PTX image loaded into the primary context (kept for the process's life)."""

    def __init__(self, image: bytes) -> None:
        _ensure_context()
        data = np.frombuffer(image + b"\0", dtype=np.uint8)  # PTX must end in NUL; a CUBIN ignores it
        self.handle: Any = check_driver(driver.cuModuleLoadData(data.ctypes.data), "cuModuleLoadData")

    def kernel(self, name: str, params: Sequence[str]) -> Kernel:
        """The ``extern "C"`` kernel *name*, taking *params* ('ptr', 'u64', 'i32' or 'f32' each, in order)."""
        fn = check_driver(driver.cuModuleGetFunction(self.handle, name.encode()), f"cuModuleGetFunction({name})")
        return Kernel(fn, name, params)


_SLOT_VIEW = {"ptr": np.uint64, "u64": np.uint64, "i32": np.int32, "f32": np.float32}


class Kernel:
    """A kernel with its parameter block built once: a launch writes only the values that changed.

    Each parameter lives in an 8-byte slot; ``kernelParams`` is an array of pointers to the slots,
    handed to cuLaunchKernel as one address, so a launch costs no Python-side packing.
    """

    def __init__(self, function: Any, name: str, params: Sequence[str]) -> None:
        self._function = function
        self.name = name
        self._types = tuple(params)
        self._slots = np.zeros(len(params), dtype=np.uint64)
        self._views: dict[str, npt.NDArray[Any]] = {t: self._slots.view(v) for t, v in _SLOT_VIEW.items()}
        base = self._slots.ctypes.data
        self._pointers = np.array([base + 8 * i for i in range(len(params))], dtype=np.uint64)
        self._params_address = int(self._pointers.ctypes.data)

    def set(self, index: int, value: float) -> None:
        """Set parameter *index* (a little-endian value sits in the slot's first bytes)."""
        kind = self._types[index]
        if kind in ("ptr", "u64"):
            self._slots[index] = int(value)
        else:
            self._views[kind][2 * index] = value

    def launch(self, grid: tuple[int, int, int], block: tuple[int, int, int], stream: Stream) -> None:
        check_driver(
            driver.cuLaunchKernel(self._function, *grid, *block, 0, stream.handle, self._params_address, 0),
            f"cuLaunchKernel({self.name})",
        )
