"""Benchmark: what the ring's per-frame operations cost hot, and cold as between two frames.

    python tests/bench/bench_cold.py [--runs 600] [--idle-ms 10]

One process, one ring of 640x480 Mono8 frames: a lock round trip, ``reserve``, the copy of the
frame into its slot, ``publish``, then ``claim`` + ``release``, each timed on its own. Three ways
between two rounds: none (hot), a sleep of --idle-ms (a frame period at 100 fps: what the pipeline
does), and the same period ending in 0.5 ms of busy-waiting on the clock (is it the CPU's sleep
state, or its caches?). Prints p50 / p99 per operation in microseconds; asserts nothing.

On the 2-core VM (2026-11-30) a lock round trip cost 0.9 us hot and 24 us after 10 ms asleep,
reserve 2.5 against 34, and busy-waiting first did not help: the caches, not the CPU's sleep, make
the difference, which is what the loop's warm passes (linegate.pipeline.frame_wait) work against.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from linegate.ring import FrameRing, RingConsumer, RingGeometry, RingProducer

OPERATIONS = ("lock round trip", "reserve", "copy 300 KB", "publish", "claim + release")
SPIN_NS = 500_000


def between(idle_ms: float, spin: bool) -> Callable[[], None]:
    """What happens between two rounds."""
    if idle_ms <= 0:
        return lambda: None
    if not spin:
        return lambda: time.sleep(idle_ms / 1e3)

    def sleep_then_spin() -> None:
        time.sleep(max(0.0, idle_ms / 1e3 - SPIN_NS / 1e9))
        end = time.monotonic_ns() + SPIN_NS
        while time.monotonic_ns() < end:
            pass

    return sleep_then_spin


def rounds(producer: RingProducer, consumer: RingConsumer, runs: int, wait: Callable[[], None]) -> np.ndarray:
    """Per round, each operation's duration in ns (rows: rounds; columns: OPERATIONS)."""
    frame = np.zeros((480, 640), np.uint8)
    lock = producer._lock  # the ring's own lock, as reserve and publish take it
    out = np.empty((runs, len(OPERATIONS)), np.int64)
    for i in range(runs):
        wait()
        t0 = time.monotonic_ns()
        lock.acquire(timeout=1.0)
        lock.release()
        t1 = time.monotonic_ns()
        _seq, slot = producer.reserve(i, i + 1, t0)
        t2 = time.monotonic_ns()
        assert slot is not None
        np.copyto(producer.pixels(slot), frame)
        t3 = time.monotonic_ns()
        producer.publish(slot, t3)
        t4 = time.monotonic_ns()
        claimed = consumer.claim()
        assert claimed is not None
        consumer.release(claimed[0])
        t5 = time.monotonic_ns()
        out[i] = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=600)
    ap.add_argument("--idle-ms", type=float, default=10.0)
    args = ap.parse_args()
    ring = FrameRing.create(mp.get_context("spawn"), instance=f"cold{os.getpid()}",
                            geometry=RingGeometry(480, 640, 1, "Mono8"), slots=8, journal_size=64,
                            when_full="drop_newest")  # fmt: skip
    producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
    try:
        print(f"ring operations, us (p50 / p99 over {args.runs} rounds, the first 100 left out)")
        print(f"{'between rounds':<34}" + "".join(f"{name:>18}" for name in OPERATIONS))
        ways = (("nothing (hot)", 0.0, False), (f"{args.idle_ms:g} ms asleep", args.idle_ms, False),
                (f"{args.idle_ms:g} ms, the last 0.5 busy", args.idle_ms, True))  # fmt: skip
        for label, idle_ms, spin in ways:
            us = rounds(producer, consumer, args.runs + 100, between(idle_ms, spin))[100:] / 1e3
            p50, p99 = np.percentile(us, 50, axis=0), np.percentile(us, 99, axis=0)
            print(f"{label:<34}" + "".join(f"{a:>10.1f} / {b:<5.0f}" for a, b in zip(p50, p99, strict=True)))
    finally:
        producer.close()
        consumer.close()
        ring.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
