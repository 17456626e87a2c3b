"""CUDA memory, streams and copies through cuda-python (the only module importing it).

Everything is allocated once at load; per frame the engine only enqueues copies and waits. Host
memory linegate already owns (a shared-memory ring slot) can be registered as pinned memory, so the
host-to-device copy is a DMA straight from the slot; on Jetson, where CPU and GPU share memory, a
mapped registration gives a device pointer that kernels read in place.
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
    """Unpack cudart's ``(err, *values)``; raise EngineError naming *call* and the CUDA error."""
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
        dt = np.dtype(dtype)
        if int(np.prod(shape)) * dt.itemsize > self.nbytes:
            raise EngineError(f"a {shape} {dt} view does not fit a {self.nbytes}-byte pinned buffer")
        raw = memoryview((ctypes.c_byte * self.nbytes).from_address(self.ptr)).cast("B")
        view: npt.NDArray[Any] = np.frombuffer(raw, dtype=dt, count=int(np.prod(shape)))
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
    """A non-blocking CUDA stream."""

    def __init__(self) -> None:
        self.handle = check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreate")

    def synchronize(self) -> None:
        check(cudart.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.handle is not None:
            check(cudart.cudaStreamDestroy(self.handle), "cudaStreamDestroy")
            self.handle = None

    @property
    def address(self) -> int:
        """The raw cudaStream_t, as TensorRT's execute_async_v3 wants it."""
        return int(self.handle)


def copy_h2d_async(dst: int, src: int, nbytes: int, stream: Stream) -> None:
    check(
        cudart.cudaMemcpyAsync(dst, src, nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.handle),
        "cudaMemcpyAsync(host to device)",
    )


def copy_d2h_async(dst: int, src: int, nbytes: int, stream: Stream) -> None:
    check(
        cudart.cudaMemcpyAsync(dst, src, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.handle),
        "cudaMemcpyAsync(device to host)",
    )


def copy_d2d_async(dst: int, src: int, nbytes: int, stream: Stream) -> None:
    check(
        cudart.cudaMemcpyAsync(dst, src, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream.handle),
        "cudaMemcpyAsync(device to device)",
    )


class HostRegistration:
    """Existing host memory (e.g. a frame-ring slot) registered as pinned, optionally mapped for the GPU."""

    def __init__(self, address: int, nbytes: int, *, mapped: bool = False) -> None:
        flags = cudart.cudaHostRegisterMapped if mapped else cudart.cudaHostRegisterDefault
        check(cudart.cudaHostRegister(address, nbytes, flags), f"cudaHostRegister({nbytes} bytes)")
        self.address = address
        self.nbytes = nbytes
        self.device_ptr: int | None = None
        if mapped:
            self.device_ptr = int(check(cudart.cudaHostGetDevicePointer(address, 0), "cudaHostGetDevicePointer"))

    def close(self) -> None:
        if self.address:
            check(cudart.cudaHostUnregister(self.address), "cudaHostUnregister")
            self.address = 0
