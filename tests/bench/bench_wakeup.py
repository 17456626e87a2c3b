"""Benchmark: how long the inference side takes to wake after a camera frame is published to the ring.

    python tests/bench/bench_wakeup.py [--frames 500] [--rt-priority 10]

The producer is the real acquisition path (Harvesters + simulated GenTL camera at 640x480 Mono8,
100 fps, copy into the ring); the consumer is a separate process waiting on the ring, with or
without SCHED_FIFO. Prints the wake-up latency (publish -> consumer running) percentiles.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from linegate.camera.genicam import GenICamCamera
from linegate.config.schema import CameraSection
from linegate.pipeline.scheduling import apply_scheduling
from linegate.ring import FrameRing, RingConsumer, RingGeometry, RingHandle, RingProducer


def consume(handle: RingHandle, n: int, rt_priority: int, ready: Any, results: Any) -> None:
    problems = apply_scheduling(rt_priority, (), "infer")
    consumer = RingConsumer(handle)
    ready.set()
    out: list[int] = []
    while len(out) < n:
        if consumer.wait(0.05):
            t = time.monotonic_ns()
            claimed = consumer.claim()
            if claimed is not None:
                out.append(t - claimed[1].t_written_ns)
                consumer.release(claimed[0])
    results.put((problems, out))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--rt-priority", type=int, default=10)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    geometry = RingGeometry(480, 640, 1, "Mono8")
    ring = FrameRing.create(ctx, instance=f"wake{os.getpid()}", geometry=geometry, slots=8, journal_size=64,
                            when_full="drop_newest")  # fmt: skip
    ready, results = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=consume, args=(ring.handle, args.frames, args.rt_priority, ready, results))
    proc.start()
    ready.wait(30)
    producer = RingProducer(ring.handle)
    cfg = CameraSection.model_validate(
        {"cti": "builtin:viky", "device": {"serial_number": "0"}, "width": 640, "height": 480,
         "pixel_format": "Mono8", "frame_rate_hz": 100.0, "buffers": 16}
    )  # fmt: skip

    def on_frame(frame: Any) -> None:
        _, slot = producer.reserve(frame.frame_id, frame.frame_id, frame.t_receipt_ns)
        if slot is not None:
            np.copyto(producer.pixels(slot), frame.pixels)
            producer.publish(slot, time.monotonic_ns())

    with GenICamCamera(cfg) as cam:
        cam.open()
        cam.start()
        while proc.is_alive() and results.empty():
            cam.fetch(on_frame, 0.1)
    problems, out = results.get(timeout=30)
    proc.join(10)
    producer.close()
    ring.close()
    us = np.array(out) / 1e3
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    note = f" ({'; '.join(problems)})" if problems else ""
    print(
        f"consumer SCHED_FIFO priority {args.rt_priority}{note}: wake after publish p50 {p50:.0f} us, "
        f"p90 {p90:.0f} us, p99 {p99:.0f} us, max {us.max():.0f} us over {us.size} frames"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
