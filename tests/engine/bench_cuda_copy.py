"""Benchmark: host-to-device copy of one frame from a registered frame-ring slot vs pageable vs cudaHostAlloc.

python tests/engine/bench_cuda_copy.py      (on a CUDA machine)
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from linegate.engine import cuda_memory as cm
from linegate.ring import FrameRing, RingConsumer, RingGeometry


def time_copies(src_ptr: int, nbytes: int, runs: int = 2000) -> np.ndarray:
    stream, dev = cm.Stream(), cm.DeviceBuffer(nbytes)
    out = np.empty(runs, dtype=np.int64)
    for i in range(runs + 100):
        t0 = time.monotonic_ns()
        cm.copy_h2d_async(dev.ptr, src_ptr, nbytes, stream)
        stream.synchronize()
        if i >= 100:
            out[i - 100] = time.monotonic_ns() - t0
    dev.close()
    stream.close()
    return out


def line(name: str, ns: np.ndarray, nbytes: int) -> str:
    p50, p99 = np.percentile(ns, [50, 99]) / 1e3
    return f"  {name:<34} p50 {p50:7.1f} us  p99 {p99:7.1f} us  {nbytes / (p50 * 1e3):6.1f} GB/s"


def main() -> int:
    for height, width in ((480, 640), (1024, 1280)):
        g = RingGeometry(height, width, 1, "Mono8")
        n = g.frame_bytes
        ring = FrameRing.create(mp.get_context("spawn"), instance=f"bench{width}", geometry=g, slots=2,
                                journal_size=16, when_full="drop_newest")  # fmt: skip
        consumer = RingConsumer(ring.handle)
        print(f"{width}x{height} Mono8 ({n / 1e6:.2f} MB), one H2D copy + stream sync:")
        print(line("ring slot, pageable", time_copies(consumer.slot_address(0), n), n))
        reg = cm.HostRegistration(consumer.slot_address(1), ring.handle.layout.slot_stride)
        print(line("ring slot, cudaHostRegister", time_copies(consumer.slot_address(1), n), n))
        reg.close()
        pinned = cm.PinnedBuffer(n)
        print(line("cudaHostAlloc buffer", time_copies(pinned.ptr, n), n))
        pinned.close()
        consumer.close()
        ring.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
