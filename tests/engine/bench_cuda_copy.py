"""Benchmark: host-to-device copy of one camera frame, by where the frame lives.

Sources: a frame-ring slot in /dev/shm registered with cudaHostRegister (as the consumer process
would), the same kind of slot left pageable, a plain numpy array (pageable), and a cudaHostAlloc
buffer. For each: one cudaMemcpyAsync + stream synchronize timed on the host (what a frame costs
the inference loop), and the copy alone timed with CUDA events.

    PYTHONPATH=. python tests/engine/bench_cuda_copy.py [runs]      (on a CUDA machine)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from linegate.engine import cuda_memory as cm
from linegate.ring import FrameRing, RingConsumer, RingGeometry

WARMUP = 100


def time_wall(copy: Callable[[], None], stream: cm.Stream, runs: int) -> np.ndarray:
    """Nanoseconds from enqueue to the end of stream synchronize, per copy."""
    out = np.empty(runs, dtype=np.int64)
    for i in range(WARMUP + runs):
        t0 = time.monotonic_ns()
        copy()
        stream.synchronize()
        if i >= WARMUP:
            out[i - WARMUP] = time.monotonic_ns() - t0
    return out


def time_events(copy: Callable[[], None], stream: cm.Stream, runs: int) -> np.ndarray:
    """Microseconds of the copy alone on the device, per copy (CUDA events)."""
    start, end = cm.Event(), cm.Event()
    out = np.empty(runs, dtype=np.float64)
    for i in range(WARMUP + runs):
        start.record(stream)
        copy()
        end.record(stream)
        end.synchronize()
        if i >= WARMUP:
            out[i - WARMUP] = end.elapsed_ms(start) * 1e3
    start.close()
    end.close()
    return out


def measure(name: str, src_ptr: int, nbytes: int, runs: int) -> str:
    stream, dev = cm.Stream(), cm.DeviceBuffer(nbytes)

    def copy() -> None:
        cm.copy_h2d_async(dev.ptr, src_ptr, nbytes, stream)

    wall_us = time_wall(copy, stream, runs) / 1e3
    gpu_us = time_events(copy, stream, runs)
    dev.close()
    stream.close()
    p50, p99 = np.percentile(wall_us, [50, 99])
    g50 = float(np.percentile(gpu_us, 50))
    return (
        f"  {name:<30} wall p50 {p50:7.1f} us  p99 {p99:7.1f} us  {nbytes / (p50 * 1e3):5.1f} GB/s"
        f"  | copy (events) p50 {g50:7.1f} us  {nbytes / (g50 * 1e3):5.1f} GB/s"
    )


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rng = np.random.default_rng(0)
    print(f"{runs} copies per source after {WARMUP} warm-up; GB/s = frame bytes / p50 time")
    for height, width in ((480, 640), (1024, 1280)):
        g = RingGeometry(height, width, 1, "Mono8")
        n = g.frame_bytes
        ring = FrameRing.create(mp.get_context("spawn"), instance=f"bench{os.getpid()}-{width}", geometry=g,
                                slots=2, journal_size=16, when_full="drop_newest")  # fmt: skip
        consumer = RingConsumer(ring.handle)
        pageable = rng.integers(0, 256, n, dtype=np.uint8)
        pinned = cm.PinnedBuffer(n)
        pinned.array((n,), np.uint8)[:] = pageable
        for slot in range(2):
            consumer.pixels(slot).reshape(-1)[:] = pageable
        print(f"{width}x{height} Mono8 ({n / 1e6:.2f} MB), one cudaMemcpyAsync H2D + cudaStreamSynchronize:")
        reg = cm.HostRegistration(consumer.slot_address(0), ring.handle.layout.slot_stride)
        print(measure("ring slot, cudaHostRegister", consumer.slot_address(0), n, runs))
        reg.close()
        print(measure("ring slot, pageable", consumer.slot_address(1), n, runs))
        print(measure("numpy array, pageable", pageable.ctypes.data, n, runs))
        print(measure("PinnedBuffer (cudaHostAlloc)", pinned.ptr, n, runs))
        pinned.close()
        consumer.close()
        ring.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
