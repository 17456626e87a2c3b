"""GPU preprocessing against the numpy path, through the real frame path (skipped without cuda-python, NVRTC or a GPU).

Frames are random and written into a shared-memory frame ring whose slots are registered as pinned
memory, as in the inference worker; the kernel's output lands in a poisoned device buffer with a
guard region behind it. Tolerance: none. The kernel performs numpy's float32 operations in numpy's
order on the plan's own tables, with explicitly rounded intrinsics (no FMA contraction) and a single
round-to-nearest-even conversion to float16, so fp32 and fp16 outputs are compared bit for bit; a
one-ulp difference would mean the two paths compute different functions.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

cm = pytest.importorskip(
    "linegate.engine.cuda_memory", reason="cuda-python is not installed here (pip install 'linegate[gpu]')"
)
try:
    cm.nvrtc_version()
except Exception as exc:  # any loader failure means the same thing here
    pytest.skip(f"NVRTC (libnvrtc) cannot be loaded here: {exc}", allow_module_level=True)

from linegate.config.schema import PreprocessSection  # noqa: E402
from linegate.engine import gpu_preprocess as gp  # noqa: E402
from linegate.errors import EngineError  # noqa: E402
from linegate.ring import FrameRing, RingConsumer, RingGeometry, RingProducer  # noqa: E402
from linegate.vision.preprocess import Plan, Preprocessor, plan_preprocess  # noqa: E402
from tests.conftest import unique_instance  # noqa: E402

pytestmark = pytest.mark.gpu  # skipped, saying why, where there is no CUDA device (tests/engine/conftest.py)

CHANNELS = {"Mono8": 1, "RGB8": 3, "BGR8": 3, "RGBa8": 4, "BGRa8": 4}
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
GUARD = 256  # bytes after the model input that the kernel must leave alone
SECOND = 1_000_000_000

# (frame height, width), pixel format, preprocess settings
NAMED_CASES: dict[str, tuple[tuple[int, int], str, dict[str, Any]]] = {
    "1280x1024 gray3 bilinear 224 fp16 NCHW imagenet": (
        (1024, 1280), "Mono8",
        {"resize": (224, 224), "interpolation": "bilinear", "color": "gray3", "dtype": "float16", **IMAGENET},
    ),
    "1280x1024 gray3 area roi 224 fp16 NHWC": (
        (1024, 1280), "Mono8",
        {"roi": (80, 64, 1120, 896), "resize": (224, 224), "color": "gray3", "layout": "NHWC", "dtype": "float16",
         **IMAGENET},
    ),
    "1280x1024 gray area 160x128 fp32": ((1024, 1280), "Mono8", {"resize": (160, 128)}),
    "1280x1024 gray area 1x1 (sum above 2^24) fp32": ((1024, 1280), "Mono8", {"resize": (1, 1), "mean": (0.5,)}),
    "1280x1024 gray nearest roi 100x77 fp16": (
        (1024, 1280), "Mono8",
        {"roi": (3, 5, 1000, 700), "resize": (100, 77), "interpolation": "nearest", "dtype": "float16"},
    ),
    "640x480 gray area 160x120 fp32 (demo)": ((480, 640), "Mono8", {"resize": (160, 120)}),
    "640x480 gray3 area 10x10 blocks of 64x48 (uint32 sums)": (
        (480, 640), "Mono8", {"resize": (10, 10), "color": "gray3", **IMAGENET},
    ),
    "640x480 gray3 nearest 224 fp32 NHWC": (
        (480, 640), "Mono8", {"resize": (224, 224), "interpolation": "nearest", "color": "gray3", "layout": "NHWC"},
    ),
    "640x480 gray bilinear roi upsampled fp16": (
        (480, 640), "Mono8",
        {"roi": (10, 20, 50, 40), "resize": (120, 90), "interpolation": "bilinear", "dtype": "float16",
         "mean": (0.45,), "std": (0.226,), "scale": 1.0 / 255.0},
    ),
    "640x480 gray3 bilinear roi crop only fp32": (
        (480, 640), "Mono8", {"roi": (31, 17, 301, 203), "interpolation": "bilinear", "color": "gray3"},
    ),
    "640x480 RGB8 rgb bilinear 224 fp16 NCHW imagenet": (
        (480, 640), "RGB8",
        {"resize": (224, 224), "interpolation": "bilinear", "color": "rgb", "dtype": "float16", **IMAGENET},
    ),
    "640x480 RGB8 bgr area 320x240 fp32 NHWC": (
        (480, 640), "RGB8", {"resize": (320, 240), "color": "bgr", "layout": "NHWC", **IMAGENET},
    ),
    "640x480 BGR8 rgb nearest roi fp16 NHWC": (
        (480, 640), "BGR8",
        {"roi": (100, 50, 400, 300), "resize": (64, 64), "interpolation": "nearest", "color": "rgb",
         "layout": "NHWC", "dtype": "float16", **IMAGENET},
    ),
    "640x480 RGBa8 bgr bilinear fp32 NCHW": (
        (480, 640), "RGBa8", {"resize": (97, 61), "interpolation": "bilinear", "color": "bgr", "scale": 1.0},
    ),
    "640x480 BGRa8 rgb area 64x48 fp16 NHWC": (
        (480, 640), "BGRa8", {"resize": (64, 48), "color": "rgb", "layout": "NHWC", "dtype": "float16", **IMAGENET},
    ),
    "97x61 gray bilinear 33x17 fp32 NHWC": (
        (61, 97), "Mono8", {"resize": (33, 17), "interpolation": "bilinear", "layout": "NHWC"},
    ),
    "97x61 RGB8 rgb nearest upsampled 200x150 fp16": (
        (61, 97), "RGB8", {"resize": (200, 150), "interpolation": "nearest", "color": "rgb", "dtype": "float16"},
    ),
    "97x61 gray3 area identity fp16": ((61, 97), "Mono8", {"color": "gray3", "dtype": "float16", **IMAGENET}),
}


def _sweep() -> dict[str, tuple[tuple[int, int], str, dict[str, Any]]]:
    """Every pixel format x colour x interpolation x layout x dtype, on a small odd-sized ROI."""
    cases = {}
    for fmt, interp, layout, dtype in itertools.product(
        CHANNELS, ("area", "nearest", "bilinear"), ("NCHW", "NHWC"), ("float32", "float16")
    ):
        for color in ("gray", "gray3") if CHANNELS[fmt] == 1 else ("rgb", "bgr"):
            resize = (30, 14) if interp == "area" else (23, 19)
            settings = {"roi": (7, 5, 90, 42), "resize": resize, "interpolation": interp, "color": color,
                        "layout": layout, "dtype": dtype, **(IMAGENET if color != "gray" else {})}  # fmt: skip
            cases[f"sweep {fmt} {color} {interp} {layout} {dtype}"] = ((70, 110), fmt, settings)
    return cases


CASES = {**NAMED_CASES, **_sweep()}
MAPPED_CASES = [
    "1280x1024 gray3 bilinear 224 fp16 NCHW imagenet",
    "640x480 gray area 160x120 fp32 (demo)",
    "640x480 BGRa8 rgb area 64x48 fp16 NHWC",
]


@dataclass
class RingOnGpu:
    """A frame ring whose slots are registered (optionally mapped) with CUDA, as the inference worker does."""

    producer: RingProducer
    consumer: RingConsumer
    registration: Any
    base: int
    frames: int = 0

    def put(self, frame: np.ndarray) -> tuple[int, int, int | None]:
        """Write *frame* through the producer and claim it: (slot, host address, mapped device address)."""
        self.frames += 1
        _, slot = self.producer.reserve(self.frames, self.frames, time.monotonic_ns())
        assert slot is not None
        self.producer.pixels(slot)[...] = frame
        self.producer.publish(slot, time.monotonic_ns())
        claimed = self.consumer.claim()
        assert claimed is not None and claimed[0] == slot
        host = self.consumer.slot_address(slot)
        device = None if self.registration.device_ptr is None else self.registration.device_ptr + host - self.base
        return slot, host, device


@contextlib.contextmanager
def registered_ring(shape: tuple[int, ...], fmt: str, *, mapped: bool = False, slots: int = 3) -> Iterator[RingOnGpu]:
    """A ring of *slots* frames of *shape*, all slots registered as pinned memory in one registration."""
    geometry = RingGeometry(shape[0], shape[1], CHANNELS[fmt], fmt)
    ring = FrameRing.create(mp.get_context("spawn"), instance=unique_instance(), geometry=geometry, slots=slots,
                            journal_size=16, when_full="drop_newest")  # fmt: skip
    producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
    base = consumer.slot_address(0)
    try:
        reg = cm.HostRegistration(base, slots * ring.handle.layout.slot_stride, mapped=mapped)
        try:
            yield RingOnGpu(producer, consumer, reg, base)
        finally:
            reg.close()
    finally:
        producer.close()
        consumer.close()
        ring.close()


@pytest.fixture(scope="module")
def stream() -> Iterator[Any]:
    s = cm.Stream()
    yield s
    s.close()


class Harness:
    """A GpuFramePath writing into a poisoned device buffer (standing in for the engine's input)."""

    def __init__(self, plan: Plan, stream: Any, *, mapped: bool = False, then: Any = None) -> None:
        self.plan, self.stream = plan, stream
        self.pre = gp.GpuPreprocessor(plan)
        self.nbytes = self.pre.out_bytes
        self.out = cm.DeviceBuffer(self.nbytes + GUARD)
        self.back = cm.PinnedBuffer(self.nbytes + GUARD)
        self.path = gp.GpuFramePath(self.pre, self.out.ptr, stream, mapped=mapped, then=then)

    def poison(self) -> None:
        cm.memset_async(self.out.ptr, 0xFF, self.nbytes + GUARD, self.stream)  # NaN in fp16 and fp32

    def fetch(self) -> np.ndarray:
        """The device output (after the path's work) and a check that the guard bytes are untouched."""
        raw = self.back.array((self.nbytes + GUARD,), np.uint8)
        raw[:] = 0x5A
        cm.copy_d2h_async(self.back.ptr, self.out.ptr, self.nbytes + GUARD, self.stream)
        self.stream.synchronize()
        assert (raw[self.nbytes :] == 0xFF).all(), "the kernel wrote past the model input"
        return raw[: self.nbytes].view(self.plan.spec.dtype).reshape(self.plan.spec.shape).copy()

    def close(self) -> None:
        self.path.close()
        self.pre.close()
        self.back.close()
        self.out.close()


def reference(plan: Plan, frame: np.ndarray) -> np.ndarray:
    out = np.full(plan.spec.shape, np.nan, dtype=plan.spec.dtype)
    Preprocessor(plan)(frame, out)
    return out


def errors(ref: np.ndarray, got: np.ndarray) -> tuple[int, int, float]:
    """(elements whose bits differ, largest distance in ulps, largest absolute difference)."""
    bits = np.int32 if ref.dtype == np.float32 else np.int16
    a, b = ref.view(bits).astype(np.int64), got.view(bits).astype(np.int64)
    # map sign-magnitude to a monotonic integer line so the difference counts representable values
    top = 1 << (8 * ref.dtype.itemsize - 1)
    a, b = np.where(a < 0, -top - a, a), np.where(b < 0, -top - b, b)
    with np.errstate(invalid="ignore"):
        abs_err = float(np.nanmax(np.abs(ref.astype(np.float64) - got.astype(np.float64)), initial=0.0))
    return int((ref.view(bits) != got.view(bits)).sum()), int(np.abs(a - b).max(initial=0)), abs_err


def check_case(name: str, stream: Any, record_property: Any, *, mapped: bool) -> None:
    (h, w), fmt, settings = CASES[name]
    shape = (h, w) if CHANNELS[fmt] == 1 else (h, w, CHANNELS[fmt])
    plan = plan_preprocess(PreprocessSection(**settings), shape, fmt)
    rng = np.random.default_rng()
    harness = Harness(plan, stream, mapped=mapped)
    try:
        with registered_ring(shape, fmt, mapped=mapped) as ring:
            for _ in range(2):  # two frames through different slots: nothing stale may survive
                frame = rng.integers(0, 256, shape, dtype=np.uint8)
                harness.poison()
                slot, host, device = ring.put(frame)
                harness.path.start(slot, host, device)
                assert harness.path.wait(time.monotonic_ns() + 5 * SECOND)
                assert harness.path.idle and harness.path.held_slot is None
                ring.consumer.release(slot)
                got, ref = harness.fetch(), reference(plan, frame)
                differing, ulps, abs_err = errors(ref, got)
                record_property("differing", differing)
                record_property("max_ulp", ulps)
                record_property("max_abs_err", abs_err)
                assert not np.isnan(got).any(), "some outputs were not written"
                assert differing == 0, f"{differing} of {got.size} differ, up to {ulps} ulp ({abs_err:.3g})"
    finally:
        harness.close()


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_matches_numpy_bit_for_bit(name: str, stream: Any, record_property: Any) -> None:
    """Ring slot -> H2D -> kernel gives exactly the numpy preprocessing's output, every element written."""
    check_case(name, stream, record_property, mapped=False)


@pytest.mark.parametrize("name", MAPPED_CASES)
def test_mapped_slot_read_in_place_matches_numpy(name: str, stream: Any, record_property: Any) -> None:
    """A mapped registration (Jetson's zero-copy path): the kernel reads the slot in place, same output."""
    check_case(name, stream, record_property, mapped=True)


SPIN = r"""
extern "C" __global__ void spin(unsigned long long ns, const int* __restrict__ stop) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns && !*(volatile const int*)stop);
}
"""


def test_late_frame_is_abandoned_and_its_slot_held_until_the_gpu_is_done(stream: Any) -> None:
    """A frame still running at its deadline: wait returns at the deadline, the path refuses new frames
    and keeps the slot until the late work finishes, then runs the next frame correctly."""
    spin = cm.Module(cm.compile_cuda(SPIN, "spin.cu", ())).kernel("spin", ("u64", "ptr"))
    stop = cm.PinnedBuffer(4)
    stop_flag = stop.array((1,), np.int32)
    stop_flag[0] = 0
    slow = [True]

    def engine_run(s: Any) -> None:  # stands in for the engine's execute on the same stream
        spin.set(0, 10 * SECOND if slow[0] else 0)
        spin.set(1, stop.ptr)
        spin.launch((1, 1, 1), (1, 1, 1), s)

    (h, w), fmt, settings = CASES["640x480 gray area 160x120 fp32 (demo)"]
    plan = plan_preprocess(PreprocessSection(**settings), (h, w), fmt)
    harness = Harness(plan, stream, then=engine_run)
    path = harness.path
    rng = np.random.default_rng()
    try:
        with registered_ring((h, w), fmt) as ring:
            slot, host, _ = ring.put(rng.integers(0, 256, (h, w), dtype=np.uint8))
            t0 = time.monotonic_ns()
            path.start(slot, host)
            assert not path.wait(t0 + 20_000_000)  # 20 ms: the "engine" runs for 10 s
            waited = time.monotonic_ns() - t0
            assert 20_000_000 <= waited < 500_000_000, waited
            assert not path.idle and path.held_slot == slot
            assert path.reclaim() is None  # still running: the slot stays held
            with pytest.raises(EngineError, match="abandoned"):
                path.start(slot, host)
            stop_flag[0] = 1  # the GPU hiccup ends
            end = time.monotonic_ns() + 5 * SECOND
            while (freed := path.reclaim()) is None and time.monotonic_ns() < end:
                time.sleep(0.001)
            assert freed == slot and path.idle and path.held_slot is None
            ring.consumer.release(slot)

            slow[0] = False
            frame = rng.integers(0, 256, (h, w), dtype=np.uint8)
            harness.poison()
            slot, host, _ = ring.put(frame)
            path.start(slot, host)
            assert path.wait(time.monotonic_ns() + 5 * SECOND)
            ring.consumer.release(slot)
            np.testing.assert_array_equal(harness.fetch(), reference(plan, frame))
    finally:
        stop_flag[0] = 1
        harness.close()
        stop.close()


def test_wait_before_start_is_refused(stream: Any) -> None:
    """wait() without a started frame is a programming error, not a silent True."""
    plan = plan_preprocess(PreprocessSection(resize=(8, 8)), (16, 16), "Mono8")
    harness = Harness(plan, stream)
    try:
        with pytest.raises(EngineError, match="wait\\(\\) needs a started frame"):
            harness.path.wait(time.monotonic_ns() + SECOND)
    finally:
        harness.close()


def test_module_is_compiled_once_per_structure() -> None:
    """Preprocessors that differ only in frame, ROI and output sizes and in values share one compiled module."""
    a = plan_preprocess(PreprocessSection(resize=(32, 24), mean=(0.1,)), (48, 64), "Mono8")
    b = plan_preprocess(PreprocessSection(roi=(2, 3, 30, 30), resize=(15, 15), std=(0.5,)), (40, 50), "Mono8")
    assert gp.kernel_options(a) == gp.kernel_options(b)
    first = gp.GpuPreprocessor(a)
    compiled = len(gp._MODULES)
    second = gp.GpuPreprocessor(b)
    try:
        assert len(gp._MODULES) == compiled
        assert gp._MODULES[gp.kernel_options(b)] is gp._MODULES[gp.kernel_options(a)]
    finally:
        first.close()
        second.close()
