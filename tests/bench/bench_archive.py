"""Benchmark: what ArchiveProducer.offer() costs the inference loop, with the writer healthy and stuck.

    python tests/bench/bench_archive.py [--frames 300] [--fps 100] [--width 1280] [--height 1024]
                                        [--format png] [--passes-one-in 10] [--slots 8]

A spawned producer process (as the inference worker) offers every frame it would archive at the
given rate and times each offer() with time.monotonic_ns(); the writer is a thread of this process
writing into a temporary directory (healthy) or stuck inside its first write (stalled: a disk that
stopped answering). Prints offer() latency p50/p99/max and the accepted/dropped counts. Asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from linegate.archive import ArchiveHandle, ArchiveProducer, ArchiveQueue, ArchiveSampler, ArchiveStore, ArchiveWriter
from linegate.archive.settings import ArchiveFormat
from linegate.ring import RingGeometry


class _Log:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


class StalledStore(ArchiveStore):
    """Every write hangs until ``gate`` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def write(self, pixels: npt.NDArray[np.uint8], meta: dict[str, Any], *, wall_ns: int, pixel_format: str) -> bool:
        self.gate.wait()
        return super().write(pixels, meta, wall_ns=wall_ns, pixel_format=pixel_format)


def produce(
    handle: ArchiveHandle, frames: int, fps: float, passes_one_in: int, shape: tuple[int, int], out: Any
) -> None:
    producer = ArchiveProducer(handle)
    sampler = ArchiveSampler(passes_one_in)
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(shape[0]), np.arange(shape[1])) % 200
    images = [(ramp + rng.integers(0, 16, shape)).astype(np.uint8) for _ in range(4)]  # a part-like image
    period_ns = int(1e9 / fps)
    latencies: list[int] = []
    accepted = 0
    t_next = time.monotonic_ns()
    for i in range(frames):
        reject = i % 10 == 0
        if sampler.wants(reject):
            meta = {"part_id": i, "verdict": "reject" if reject else "pass", "scores": {"scratch": 0.42},
                    "model": "bench", "t_acquired_ns": time.monotonic_ns()}  # fmt: skip
            t0 = time.monotonic_ns()
            accepted += producer.offer(images[i % 4], meta)
            latencies.append(time.monotonic_ns() - t0)
        t_next += period_ns
        time.sleep(max(0.0, (t_next - time.monotonic_ns()) / 1e9))
    out.send((latencies, accepted))
    out.close()
    producer.close()


def run(stalled: bool, args: argparse.Namespace) -> None:
    ctx = mp.get_context("spawn")
    shape = (args.height, args.width)
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as d, ArchiveQueue.create(
        RingGeometry(args.height, args.width, 1, "Mono8"), args.slots, instance="bench"
    ) as queue:  # fmt: skip
        cls = StalledStore if stalled else ArchiveStore
        fmt: ArchiveFormat = args.format
        store = cls(Path(d), max_bytes=2 * 1024**3, max_age_s=3600, fmt=fmt, log=_Log())
        writer = ArchiveWriter(queue.handle, store, log=_Log())
        writer.start()
        reader, sender = ctx.Pipe(duplex=False)
        work = (queue.handle, args.frames, args.fps, args.passes_one_in, shape, sender)
        proc = ctx.Process(target=produce, args=work)
        proc.start()
        sender.close()
        latencies, accepted = reader.recv()
        proc.join()
        if isinstance(store, StalledStore):
            store.gate.set()
        writer.stop(30)
        stats = writer.stats()
    lat = np.asarray(latencies, dtype=np.float64) / 1e3
    mode = "stalled" if stalled else "healthy"
    print(
        f"{mode:8s} offers={lat.size:5d} p50={np.percentile(lat, 50):8.1f}us p99={np.percentile(lat, 99):8.1f}us "
        f"max={lat.max():8.1f}us accepted={accepted} dropped_queue_full={stats['dropped_queue_full']} "
        f"written={stats['written']} write_errors={stats['dropped_write_error']}"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--fps", type=float, default=100.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--format", choices=["png", "npy"], default="png")
    ap.add_argument("--passes-one-in", type=int, default=10)
    ap.add_argument("--slots", type=int, default=8)
    args = ap.parse_args()
    print(
        f"offer() of {args.width}x{args.height} Mono8 at {args.fps:g} fps, every 10th frame a reject, "
        f"1 in {args.passes_one_in} passes, {args.slots} slots, {args.format}"
    )
    run(False, args)
    run(True, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
