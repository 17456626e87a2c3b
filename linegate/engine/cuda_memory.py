"""CUDA memory, streams and copies through cuda-python (the only module importing it).

Everything is allocated once at load; per frame the engine only enqueues copies and waits. Host
memory linegate already owns (a shared-memory ring slot) can be registered as pinned memory, so the
host-to-device copy is a DMA straight from the slot; on Jetson, where CPU and GPU share memory, a
mapped registration gives a device pointer that kernels read in place.

On JetPack 6 (CUDA 12.6 driver) use cuda-python 12.x: the 13.x bindings need a CUDA 13 driver.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.errors import EngineError

try:  # cuda-python >= 12.6 / 13
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - older cuda-python layout
    from cuda import cudart


def check(result: Any, call: str) -> Any:
    """Unpack cudart's ``(err, *values)``; raise EngineError naming *call* and the CUDA error.

    Returns None for a call that gives only an error code, the value for one value, else a tuple.
    """
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != int(cudart.cudaError_t.cudaSuccess):
        _, name = cudart.cudaGetErrorName(err)
        raise EngineError(f"{call} failed: {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_count() -> int:
    """Number of CUDA devices; 0 when there is no driver or no device."""
    err, count = cudart.cudaGetDeviceCount()
    return int(count) if int(err) == int(cudart.cudaError_t.cudaSuccess) else 0


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
    """A CUDA event with timing, for measuring device work between two records on a stream."""

    def __init__(self) -> None:
        self.handle: Any = check(cudart.cudaEventCreate(), "cudaEventCreate")

    def record(self, stream: Stream) -> None:
        check(cudart.cudaEventRecord(self.handle, stream.handle), "cudaEventRecord")

    def synchronize(self) -> None:
        check(cudart.cudaEventSynchronize(self.handle), "cudaEventSynchronize")

    def elapsed_ms(self, start: Event) -> float:
        """Milliseconds from *start* to this event (both recorded and this one complete)."""
        return float(check(cudart.cudaEventElapsedTime(start.handle, self.handle), "cudaEventElapsedTime"))

    def close(self) -> None:
        if self.handle is not None:
            check(cudart.cudaEventDestroy(self.handle), "cudaEventDestroy")
            self.handle = None


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
