"""cuda-python memory, streams and copies on a real GPU (skipped where there is none)."""

from __future__ import annotations

import mmap
import multiprocessing as mp

import numpy as np
import pytest

cuda_memory = pytest.importorskip("linegate.engine.cuda_memory", reason="cuda-python is not installed here")
if cuda_memory.device_count() == 0:
    pytest.skip("no CUDA device on this machine (run on the GPU machine)", allow_module_level=True)

from linegate.errors import EngineError  # noqa: E402
from linegate.ring import FrameRing, RingConsumer, RingGeometry, RingProducer  # noqa: E402
from tests.conftest import unique_instance  # noqa: E402

cm = cuda_memory


def round_trip(src_ptr: int, nbytes: int, via_registered: bool = False) -> bytes:
    stream = cm.Stream()
    dev = cm.DeviceBuffer(nbytes)
    back = cm.PinnedBuffer(nbytes)
    cm.copy_h2d_async(dev.ptr, src_ptr, nbytes, stream)
    cm.copy_d2h_async(back.ptr, dev.ptr, nbytes, stream)
    stream.synchronize()
    out = back.array((nbytes,), np.uint8).tobytes()
    for b in (back, dev):
        b.close()
    stream.close()
    return out


def test_pinned_round_trip_is_byte_identical() -> None:
    """Host (pinned) -> device -> host returns exactly the bytes sent."""
    src = cm.PinnedBuffer(1 << 20)
    data = src.array((1 << 20,), np.uint8)
    data[:] = np.random.default_rng(1).integers(0, 256, data.size, dtype=np.uint8)
    assert round_trip(src.ptr, src.nbytes) == data.tobytes()
    src.close()


def test_registered_ring_slot_copies_to_the_gpu() -> None:
    """A frame-ring slot in /dev/shm, registered as pinned, is copied to the device intact."""
    geometry = RingGeometry(480, 640, 1, "Mono8")
    ring = FrameRing.create(mp.get_context("spawn"), instance=unique_instance(), geometry=geometry, slots=2,
                            journal_size=16, when_full="drop_newest")  # fmt: skip
    producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
    _, slot = producer.reserve(1, 1, 1)
    assert slot is not None
    frame = np.random.default_rng(2).integers(0, 256, geometry.shape, dtype=np.uint8)
    producer.pixels(slot)[...] = frame
    reg = cm.HostRegistration(consumer.slot_address(slot), ring.handle.layout.slot_stride)
    try:
        assert round_trip(consumer.slot_address(slot), geometry.frame_bytes) == frame.tobytes()
    finally:
        reg.close()
        producer.close()
        consumer.close()
        ring.close()


def test_mapped_registration_is_readable_from_the_device() -> None:
    """A mapped registration's device pointer reads the host bytes in place (as on Jetson)."""
    n = 4 * mmap.PAGESIZE
    host = mmap.mmap(-1, n)
    view = np.frombuffer(host, dtype=np.uint8)
    view[:] = np.arange(n, dtype=np.uint64).astype(np.uint8)
    address = view.__array_interface__["data"][0]
    reg = cm.HostRegistration(address, n, mapped=True)
    assert reg.device_ptr is not None
    stream = cm.Stream()
    dev = cm.DeviceBuffer(n)
    back = cm.PinnedBuffer(n)
    cm.copy_d2d_async(dev.ptr, reg.device_ptr, n, stream)
    cm.copy_d2h_async(back.ptr, dev.ptr, n, stream)
    stream.synchronize()
    assert back.array((n,), np.uint8).tobytes() == view.tobytes()
    for b in (back, dev, reg):
        b.close()
    stream.close()
    del view
    host.close()


def test_cuda_errors_name_the_call() -> None:
    """A failing CUDA call raises EngineError naming the call and the CUDA error."""
    with pytest.raises(EngineError, match=r"cudaMalloc\(1152921504606846976\) failed: cudaErrorMemoryAllocation"):
        cm.DeviceBuffer(1 << 60)


def test_pinned_view_must_fit() -> None:
    """A numpy view larger than the pinned buffer is refused."""
    buf = cm.PinnedBuffer(64)
    with pytest.raises(EngineError, match="does not fit"):
        buf.array((65,), np.uint8)
    buf.close()
