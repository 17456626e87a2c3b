"""cuda-python memory, streams, copies, events and bounded waits (``gpu`` tests are skipped where there is no GPU)."""

from __future__ import annotations

import mmap
import multiprocessing as mp
import time

import numpy as np
import pytest

cm = pytest.importorskip(
    "linegate.engine.cuda_memory", reason="cuda-python is not installed here (pip install 'linegate[gpu]')"
)
from linegate.errors import EngineError  # noqa: E402
from linegate.ring import FrameRing, RingConsumer, RingGeometry, RingProducer  # noqa: E402
from tests.conftest import unique_instance  # noqa: E402

POISON = 0xA5


def round_trip(src_ptr: int, nbytes: int) -> bytes:
    """Copy *nbytes* at host address *src_ptr* to the device and back into a poisoned pinned buffer."""
    stream = cm.Stream()
    dev = cm.DeviceBuffer(nbytes)
    back = cm.PinnedBuffer(nbytes)
    try:
        back.array((nbytes,), np.uint8)[:] = POISON
        cm.copy_h2d_async(dev.ptr, src_ptr, nbytes, stream)
        cm.copy_d2h_async(back.ptr, dev.ptr, nbytes, stream)
        stream.synchronize()
        return bytes(back.array((nbytes,), np.uint8).tobytes())
    finally:
        back.close()
        dev.close()
        stream.close()


def random_bytes(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)


@pytest.mark.gpu
def test_pinned_round_trip_is_byte_identical() -> None:
    """Pinned host -> device -> pinned host returns exactly the bytes sent."""
    n = (1 << 20) + 13  # not a multiple of anything convenient
    src = cm.PinnedBuffer(n)
    try:
        data = src.array((n,), np.uint8)
        data[:] = random_bytes(n, 1)
        assert round_trip(src.ptr, n) == data.tobytes()
    finally:
        src.close()


@pytest.mark.gpu
def test_registered_ring_slot_copies_to_the_gpu() -> None:
    """A frame-ring slot in /dev/shm, registered as pinned in the consumer, is copied to the device intact."""
    geometry = RingGeometry(480, 640, 1, "Mono8")
    ring = FrameRing.create(mp.get_context("spawn"), instance=unique_instance(), geometry=geometry, slots=2,
                            journal_size=16, when_full="drop_newest")  # fmt: skip
    producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
    try:
        _, slot = producer.reserve(1, 1, 1)
        assert slot is not None
        frame = random_bytes(geometry.frame_bytes, 2).reshape(geometry.shape)
        producer.pixels(slot)[...] = frame
        address = consumer.slot_address(slot)
        assert address % mmap.PAGESIZE == 0
        reg = cm.HostRegistration(address, ring.handle.layout.slot_stride)
        try:
            assert round_trip(address, geometry.frame_bytes) == frame.tobytes()
        finally:
            reg.close()
    finally:
        producer.close()
        consumer.close()
        ring.close()


@pytest.mark.gpu
def test_anonymous_mmap_registration_round_trips() -> None:
    """Page-aligned anonymous mmap memory registered (not mapped) round-trips through the device."""
    n = 64 * mmap.PAGESIZE
    host = mmap.mmap(-1, n)
    view = np.frombuffer(host, dtype=np.uint8)
    try:
        view[:] = random_bytes(n, 3)
        reg = cm.HostRegistration(view.__array_interface__["data"][0], n)
        try:
            assert reg.device_ptr is None
            assert round_trip(reg.address, n) == view.tobytes()
        finally:
            reg.close()
    finally:
        del view
        host.close()


@pytest.mark.gpu
def test_mapped_registration_is_readable_from_the_device() -> None:
    """A mapped registration's device pointer reads the host bytes in place (as on Jetson)."""
    n = 4 * mmap.PAGESIZE
    host = mmap.mmap(-1, n)
    view = np.frombuffer(host, dtype=np.uint8)
    view[:] = random_bytes(n, 4)
    reg = cm.HostRegistration(view.__array_interface__["data"][0], n, mapped=True)
    stream, dev, back = cm.Stream(), cm.DeviceBuffer(n), cm.PinnedBuffer(n)
    try:
        assert reg.device_ptr is not None
        back.array((n,), np.uint8)[:] = POISON
        cm.copy_d2d_async(dev.ptr, reg.device_ptr, n, stream)  # the GPU reads the mapped host memory
        cm.copy_d2h_async(back.ptr, dev.ptr, n, stream)
        stream.synchronize()
        assert back.array((n,), np.uint8).tobytes() == view.tobytes()
        view[:7] = 0  # written on the host after registration: seen through the mapping too
        cm.copy_d2d_async(dev.ptr, reg.device_ptr, n, stream)
        cm.copy_d2h_async(back.ptr, dev.ptr, n, stream)
        stream.synchronize()
        assert back.array((n,), np.uint8).tobytes() == view.tobytes()
    finally:
        for b in (back, dev, reg):
            b.close()
        stream.close()
        del view
        host.close()


@pytest.mark.gpu
def test_event_times_device_work() -> None:
    """Two events around a copy give a positive elapsed time."""
    n = 8 << 20
    stream, src, dev = cm.Stream(), cm.PinnedBuffer(n), cm.DeviceBuffer(n)
    start, end = cm.Event(), cm.Event()
    try:
        start.record(stream)
        cm.copy_h2d_async(dev.ptr, src.ptr, n, stream)
        end.record(stream)
        end.synchronize()
        assert 0.0 < end.elapsed_ms(start) < 1000.0
    finally:
        for x in (start, end, dev, src, stream):
            x.close()


@pytest.mark.gpu
def test_cuda_errors_name_the_call() -> None:
    """A failing CUDA call raises EngineError naming the call and the CUDA error."""
    with pytest.raises(EngineError, match=r"cudaMalloc\(1152921504606846976\) failed: cudaErrorMemoryAllocation"):
        cm.DeviceBuffer(1 << 60)


@pytest.mark.gpu
def test_double_registration_names_the_call() -> None:
    """Registering host memory twice fails with cudaHostRegister and the CUDA error in the message."""
    n = mmap.PAGESIZE
    host = mmap.mmap(-1, n)
    view = np.frombuffer(host, dtype=np.uint8)
    address = view.__array_interface__["data"][0]
    reg = cm.HostRegistration(address, n)
    try:
        with pytest.raises(EngineError, match=rf"cudaHostRegister\({n} bytes\) failed: cudaError\w+"):
            cm.HostRegistration(address, n)
    finally:
        reg.close()
        del view
        host.close()


@pytest.mark.gpu
def test_pinned_view_must_fit() -> None:
    """A numpy view larger than the pinned buffer is refused."""
    buf = cm.PinnedBuffer(64)
    try:
        with pytest.raises(EngineError, match="does not fit"):
            buf.array((65,), np.uint8)
    finally:
        buf.close()


def test_nvrtc_target_prefers_machine_code_for_the_device() -> None:
    """A device NVRTC knows gets a CUBIN; a newer one gets PTX for the newest known arch; an older one fails."""
    assert cm.nvrtc_target((8, 7), [75, 80, 86, 87, 89, 90]) == ("sm_87", True)
    assert cm.nvrtc_target((12, 1), [75, 80, 86, 87, 89, 90]) == ("compute_90", False)
    with pytest.raises(EngineError, match="cannot compile for compute capability 5.0"):
        cm.nvrtc_target((5, 0), [75, 80, 90])


def nvrtc_or_skip() -> None:
    try:
        cm.nvrtc_version()
    except EngineError as exc:
        pytest.skip(f"NVRTC cannot be loaded here: {exc}")


SPIN = r"""
extern "C" __global__ void spin(unsigned long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
}
"""


@pytest.mark.gpu
def test_event_query_and_bounded_wait_on_running_work() -> None:
    """While a 300 ms kernel runs, query is False and a 20 ms wait gives up at its deadline; then both are True."""
    nvrtc_or_skip()
    spin = cm.Module(cm.compile_cuda(SPIN, "spin.cu", ())).kernel("spin", ("u64",))
    stream, done = cm.Stream(), cm.Event(timing=False)
    try:
        spin.set(0, 300_000_000)
        spin.launch((1, 1, 1), (1, 1, 1), stream)
        done.record(stream)
        assert not done.query()
        t0 = time.monotonic_ns()
        assert not done.wait(t0 + 20_000_000)
        assert 20_000_000 <= time.monotonic_ns() - t0 < 250_000_000
        assert done.wait(time.monotonic_ns() + 5_000_000_000)
        assert done.query()
    finally:
        stream.synchronize()
        done.close()
        stream.close()


@pytest.mark.gpu
def test_compile_error_names_the_call_and_shows_the_log() -> None:
    """CUDA source that does not compile raises EngineError with NVRTC's log (file, line, message)."""
    nvrtc_or_skip()
    with pytest.raises(EngineError, match=r"(?s)nvrtcCompileProgram\(bad\.cu, \w+\) failed.*bad\.cu\(1\).*undefined"):
        cm.compile_cuda('extern "C" __global__ void k() { no_such_function(); }', "bad.cu", ())


@pytest.mark.gpu
def test_upload_and_memset_round_trip() -> None:
    """DeviceBuffer.upload copies a host array; memset_async fills device bytes; both read back exactly."""
    data = random_bytes(4099, 5)
    dev = cm.DeviceBuffer.upload(data)
    stream, back = cm.Stream(), cm.PinnedBuffer(data.size)
    try:
        view = back.array((data.size,), np.uint8)
        view[:] = POISON
        cm.copy_d2h_async(back.ptr, dev.ptr, data.size, stream)
        stream.synchronize()
        np.testing.assert_array_equal(view, data)
        cm.memset_async(dev.ptr + 10, 0x3C, 100, stream)
        cm.copy_d2h_async(back.ptr, dev.ptr, data.size, stream)
        stream.synchronize()
        expected = data.copy()
        expected[10:110] = 0x3C
        np.testing.assert_array_equal(view, expected)
    finally:
        back.close()
        dev.close()
        stream.close()
