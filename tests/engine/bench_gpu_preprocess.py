"""Benchmark: GPU preprocessing (the NVRTC kernel) against numpy, the H2D copy from a registered ring
slot, and the whole GPU frame path (ring slot -> H2D -> kernel -> bounded event wait).

    PYTHONPATH=. python tests/engine/bench_gpu_preprocess.py [frames]      (on a CUDA machine)

Method: compile, module load and buffer set-up happen before any timing, then a warm-up. Device
times come from CUDA events, with the work queued behind a spinning kernel so that every timed
operation starts the moment the one before ends (no host launch gaps inside an event pair);
kernel inputs rotate over more device buffers than L2 holds. CPU times are perf_counter_ns per
call. Medians and p99 over many runs; the frame path over *frames* frames (default 2000).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from linegate.config.schema import PreprocessSection
from linegate.engine import cuda_memory as cm
from linegate.engine import gpu_preprocess as gp
from linegate.ring import FrameRing, RingConsumer, RingGeometry
from linegate.vision.preprocess import Plan, Preprocessor, plan_preprocess

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
CONFIGS: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {
    "1280x1024 -> 224x224 gray3 fp16 NCHW, bilinear": (
        (1024, 1280), {"resize": (224, 224), "interpolation": "bilinear", "color": "gray3", "dtype": "float16",
                       **IMAGENET},
    ),
    "1280x1024 -> 224x224 gray3 fp16 NCHW, area (roi 1120x896)": (
        (1024, 1280), {"roi": (80, 64, 1120, 896), "resize": (224, 224), "color": "gray3", "dtype": "float16",
                       **IMAGENET},
    ),
    "1280x1024 -> 160x120 gray fp32 NCHW, area (roi 1280x960)": (
        (1024, 1280), {"roi": (0, 32, 1280, 960), "resize": (160, 120)},
    ),
    "1280x1024 -> 160x120 gray fp32 NCHW, bilinear": (
        (1024, 1280), {"resize": (160, 120), "interpolation": "bilinear"},
    ),
    "640x480 -> 160x120 gray fp32 NCHW, area (the demo)": ((480, 640), {"resize": (160, 120)}),
}  # fmt: skip
WARMUP = 100
RUNS = 1000
CPU_RUNS = 300
L2_BYTES = 128 << 20  # rotate kernel inputs over more than any L2 (H200: 60 MB)
SPIN = r"""
extern "C" __global__ void spin(unsigned long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
}
"""


def pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q))


class DeviceTimer:
    """Times *n* enqueued operations with an event pair each, all queued behind a spinning kernel."""

    def __init__(self, stream: cm.Stream) -> None:
        self.stream = stream
        self.module = cm.Module(cm.compile_cuda(SPIN, "spin.cu", ()))
        self.spin = self.module.kernel("spin", ("u64",))
        self.starts = [cm.Event() for _ in range(RUNS)]
        self.ends = [cm.Event() for _ in range(RUNS)]

    def us(self, op: Callable[[int], None], n: int = RUNS) -> np.ndarray:
        """Device microseconds of op(0) .. op(n-1), each between its own two events."""
        self.spin.set(0, 100_000_000)  # 100 ms: longer than it takes to queue n operations behind it
        self.spin.launch((1, 1, 1), (1, 1, 1), self.stream)
        for i in range(n):
            self.starts[i].record(self.stream)
            op(i)
            self.ends[i].record(self.stream)
        self.stream.synchronize()
        return np.array([self.ends[i].elapsed_ms(self.starts[i]) * 1e3 for i in range(n)])

    def close(self) -> None:
        for e in self.starts + self.ends:
            e.close()


def numpy_us(plan: Plan, frames: list[np.ndarray]) -> np.ndarray:
    pre = Preprocessor(plan)
    out = np.empty(plan.spec.shape, dtype=plan.spec.dtype)
    times = np.empty(CPU_RUNS, dtype=np.int64)
    for i in range(20 + CPU_RUNS):
        frame = frames[i % len(frames)]
        t0 = time.perf_counter_ns()
        pre(frame, out)
        if i >= 20:
            times[i - 20] = time.perf_counter_ns() - t0
    return times / 1e3


def kernel_us(plan: Plan, frames: list[np.ndarray], stream: cm.Stream, timer: DeviceTimer) -> tuple[np.ndarray, ...]:
    """(device time per kernel, wall time of one launch + event wait) for *plan*, inputs rotated beyond L2."""
    pre = gp.GpuPreprocessor(plan)
    copies = max(2, min(64, L2_BYTES // pre.band_bytes))
    sources = []
    for i in range(copies):
        flat = frames[i % len(frames)].reshape(-1)
        sources.append(cm.DeviceBuffer.upload(flat[pre.band_offset : pre.band_offset + pre.band_bytes]))
    out = cm.DeviceBuffer(pre.out_bytes)
    done = cm.Event(timing=False)
    try:
        for i in range(WARMUP):
            pre.enqueue(sources[i % copies].ptr, out.ptr, stream)
        stream.synchronize()
        device = timer.us(lambda i: pre.enqueue(sources[i % copies].ptr, out.ptr, stream))
        wall = np.empty(RUNS, dtype=np.int64)
        for i in range(RUNS):
            t0 = time.perf_counter_ns()
            pre.enqueue(sources[i % copies].ptr, out.ptr, stream)
            done.record(stream)
            while not done.query():
                pass
            wall[i] = time.perf_counter_ns() - t0
        return device, wall / 1e3
    finally:
        done.close()
        out.close()
        for s in sources:
            s.close()
        pre.close()


class Ring:
    """A ring of 8 slots of random frames, registered (mapped) with CUDA in one registration."""

    SLOTS = 8

    def __init__(self, shape: tuple[int, int], rng: np.random.Generator) -> None:
        g = RingGeometry(shape[0], shape[1], 1, "Mono8")
        self.ring = FrameRing.create(mp.get_context("spawn"), instance=f"bench{os.getpid()}{shape[1]}", geometry=g,
                                     slots=self.SLOTS, journal_size=16, when_full="drop_newest")  # fmt: skip
        self.consumer = RingConsumer(self.ring.handle)
        for slot in range(self.SLOTS):
            self.consumer.pixels(slot)[...] = rng.integers(0, 256, shape, dtype=np.uint8)
        self.base = self.consumer.slot_address(0)
        self.reg = cm.HostRegistration(self.base, self.SLOTS * self.ring.handle.layout.slot_stride, mapped=True)

    def host(self, slot: int) -> int:
        return self.consumer.slot_address(slot)

    def device(self, slot: int) -> int:
        assert self.reg.device_ptr is not None
        return self.reg.device_ptr + self.host(slot) - self.base

    def close(self) -> None:
        self.reg.close()
        self.consumer.close()
        self.ring.close()


def h2d_us(ring: Ring, nbytes: int, stream: cm.Stream, timer: DeviceTimer) -> tuple[np.ndarray, np.ndarray]:
    """(device time of the copy, wall time of copy + event wait) from registered ring slots."""
    dev = cm.DeviceBuffer(nbytes)
    done = cm.Event(timing=False)
    try:
        device = timer.us(lambda i: cm.copy_h2d_async(dev.ptr, ring.host(i % Ring.SLOTS), nbytes, stream))
        wall = np.empty(RUNS, dtype=np.int64)
        for i in range(WARMUP + RUNS):
            t0 = time.perf_counter_ns()
            cm.copy_h2d_async(dev.ptr, ring.host(i % Ring.SLOTS), nbytes, stream)
            done.record(stream)
            while not done.query():
                pass
            if i >= WARMUP:
                wall[i - WARMUP] = time.perf_counter_ns() - t0
        return device, wall / 1e3
    finally:
        done.close()
        dev.close()


def frame_path_us(
    plan: Plan, ring: Ring, stream: cm.Stream, frames: int, *, mapped: bool, then: Any = None, **wait: Any
) -> tuple[np.ndarray, int]:
    """Wall time of start() + wait() per frame (slot -> [H2D] -> kernel [-> then] -> event), and frames late."""
    pre = gp.GpuPreprocessor(plan)
    out = cm.DeviceBuffer(pre.out_bytes)
    path = gp.GpuFramePath(pre, out.ptr, stream, mapped=mapped, then=then, **wait)
    times = np.empty(frames, dtype=np.int64)
    late = 0
    try:
        for i in range(WARMUP + frames):
            slot = i % Ring.SLOTS
            t0 = time.monotonic_ns()
            path.start(slot, ring.host(slot), ring.device(slot))
            in_time = path.wait(t0 + 100_000_000)
            t1 = time.monotonic_ns()
            if not in_time:
                late += 1
                while path.reclaim() is None:
                    time.sleep(0.0001)
            if i >= WARMUP:
                times[i - WARMUP] = t1 - t0
        return times / 1e3, late
    finally:
        path.close()
        out.close()
        pre.close()


def header() -> str:
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        smi = "nvidia-smi not available"
    try:
        from cuda import bindings

        version = bindings.__version__
    except (ImportError, AttributeError):
        version = "?"
    cc = cm.compute_capability()
    return (
        f"GPU {smi}, compute capability {cc[0]}.{cc[1]}; driver supports CUDA {'.'.join(map(str, cm.driver_version()))}"
        f"; cuda-bindings {version}; NVRTC {'.'.join(map(str, cm.nvrtc_version()))}; numpy {np.__version__}; "
        f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}"
    )


def main() -> int:
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rng = np.random.default_rng()
    print(header())
    print(f"kernel and H2D: {RUNS} runs after {WARMUP} warm-up (device time: events; wall: enqueue -> event seen "
          f"done); numpy: {CPU_RUNS} calls; frame path: {frames} frames after {WARMUP} warm-up\n")  # fmt: skip
    stream = cm.Stream()
    timer = DeviceTimer(stream)
    rings = {shape: Ring(shape, rng) for shape in {shape for shape, _ in CONFIGS.values()}}
    rows = []
    try:
        print("H2D copy from a registered ring slot (Mono8 frame):")
        for shape, ring in sorted(rings.items()):
            n = shape[0] * shape[1]
            device, wall = h2d_us(ring, n, stream, timer)
            d50 = pct(device, 50)
            print(f"  {shape[1]}x{shape[0]} ({n / 1e6:.2f} MB): copy (events) p50 {d50:6.1f} us p99 "
                  f"{pct(device, 99):6.1f} us ({n / d50 / 1e3:5.1f} GB/s) | copy + event wait (wall) p50 "
                  f"{pct(wall, 50):6.1f} us p99 {pct(wall, 99):6.1f} us")  # fmt: skip
        print()
        for name, (shape, settings) in CONFIGS.items():
            plan = plan_preprocess(PreprocessSection(**settings), shape, "Mono8")
            ring = rings[shape]
            frame_list = [ring.consumer.pixels(s).copy() for s in range(Ring.SLOTS)]
            cpu = numpy_us(plan, frame_list)
            device, wall = kernel_us(plan, frame_list, stream, timer)
            copy_path, late_copy = frame_path_us(plan, ring, stream, frames, mapped=False)
            mapped_path, late_mapped = frame_path_us(plan, ring, stream, frames, mapped=True)
            band = gp.GpuPreprocessor(plan)
            band_mb = band.band_bytes / 1e6
            band.close()
            rows.append((name, cpu, device, wall, copy_path, late_copy, mapped_path, late_mapped, band_mb))
            print(f"{name}  (copies {band_mb:.2f} MB of ROI rows)")
            print(f"  numpy preprocessing      p50 {pct(cpu, 50):8.1f} us  p99 {pct(cpu, 99):8.1f} us")
            print(f"  kernel (events)          p50 {pct(device, 50):8.1f} us  p99 {pct(device, 99):8.1f} us")
            print(f"  kernel launch+wait(wall) p50 {pct(wall, 50):8.1f} us  p99 {pct(wall, 99):8.1f} us")
            print(f"  frame path, H2D copy     p50 {pct(copy_path, 50):8.1f} us  p99 {pct(copy_path, 99):8.1f} us  "
                  f"max {copy_path.max():8.1f} us  late {late_copy}")  # fmt: skip
            print(f"  frame path, mapped slot  p50 {pct(mapped_path, 50):8.1f} us  p99 {pct(mapped_path, 99):8.1f} us"
                  f"  max {mapped_path.max():8.1f} us  late {late_mapped}")  # fmt: skip
        engine_ms = 3.0
        engine = timer.module.kernel("spin", ("u64",))
        engine.set(0, int(engine_ms * 1e6))

        def run_engine(s: cm.Stream) -> None:
            engine.launch((1, 1, 1), (1, 1, 1), s)

        name = next(iter(CONFIGS))
        plan = plan_preprocess(PreprocessSection(**CONFIGS[name][1]), CONFIGS[name][0], "Mono8")
        print(f"\nframe path + a {engine_ms:g} ms stand-in engine on the same stream ({name}), 500 frames:")
        for label, wait in (("spin 0.5 ms, then sleep 100 us (default)", {}),
                            ("spin until done", {"spin_ns": 10**9}),
                            ("sleep 100 us from the start", {"spin_ns": 0})):  # fmt: skip
            t, late = frame_path_us(plan, rings[CONFIGS[name][0]], stream, 500, mapped=False, then=run_engine, **wait)
            over = t - engine_ms * 1e3
            print(f"  {label:<42} start->wait p50 {pct(t, 50):7.1f} us, over the engine: p50 {pct(over, 50):6.1f}"
                  f" us p99 {pct(over, 99):6.1f} us, late {late}")  # fmt: skip
    finally:
        timer.close()
        for ring in rings.values():
            ring.close()
        stream.close()
    print("\nsummary (us; p50 unless p99 named)")
    print(f"{'configuration':<60} {'numpy':>8} {'kernel':>7} {'path':>7} {'path99':>7} {'mapped':>7} {'map99':>7}")
    for name, cpu, device, _, copy_path, _, mapped_path, _, _ in rows:
        print(f"{name:<60} {pct(cpu, 50):8.1f} {pct(device, 50):7.1f} {pct(copy_path, 50):7.1f} "
              f"{pct(copy_path, 99):7.1f} {pct(mapped_path, 50):7.1f} {pct(mapped_path, 99):7.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
