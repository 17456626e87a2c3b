"""FrameWaiter on a real ring: it returns for every published frame whether it was polling or
sleeping, keeps the semaphore's count (one wake-up per frame), and warms only inside its window."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from dataclasses import dataclass

import numpy as np

from linegate.pipeline.frame_wait import FrameWaiter
from linegate.ring import FrameRing, RingConsumer, RingGeometry, RingProducer
from linegate.timing.arrival import ArrivalPredictor
from tests.conftest import unique_instance

CTX = mp.get_context("spawn")
GEOMETRY = RingGeometry(48, 64, 1, "Mono8")
PERIOD_NS = 5_000_000


def publish(producer: RingProducer, part_id: int) -> None:
    _seq, slot = producer.reserve(part_id, part_id, time.monotonic_ns())
    assert slot is not None
    producer.pixels(slot)[:] = part_id % 256
    producer.publish(slot, time.monotonic_ns())


def run_camera(producer: RingProducer, frames: int) -> threading.Thread:
    def loop() -> None:
        next_ns = time.monotonic_ns()
        for part in range(1, frames + 1):
            next_ns += PERIOD_NS
            while time.monotonic_ns() < next_ns:
                time.sleep(0.0002)
            publish(producer, part)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


@dataclass
class Drive:
    """What a waiter did while a camera thread streamed *frames* frames at PERIOD_NS."""

    waiter: FrameWaiter
    seen: list[int]
    warm_calls: list[int]
    warm_per_wait: list[int]
    leftover_wake_up: bool


def drive(max_spin_ns: int, frames: int) -> Drive:
    """Wait, claim, check the pixels, release, observe: the inference loop's use of the waiter. The
    camera is a thread of this process, so the waiter's polling competes with it for the GIL; 16
    slots (80 ms) keep a stall of this busy test process from dropping a frame."""
    warm_calls: list[int] = []
    per_wait: list[int] = []
    with FrameRing.create(CTX, instance=unique_instance(), geometry=GEOMETRY, slots=16, journal_size=16,
                          when_full="drop_newest") as ring:  # fmt: skip
        producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
        predictor = ArrivalPredictor(max_spin_ns=max_spin_ns)
        waiter = FrameWaiter(consumer, predictor, warm=lambda: warm_calls.append(time.monotonic_ns()), warm_ns=50_000)
        camera = run_camera(producer, frames)
        seen: list[int] = []
        try:
            while len(seen) < frames:
                before = len(warm_calls)
                assert waiter.wait(1.0), f"no frame after {seen[-1:] or 'start'} within 1 s"
                per_wait.append(len(warm_calls) - before)
                claimed = consumer.claim()
                assert claimed is not None, "woken without a frame to claim"
                slot, meta = claimed
                assert int(np.asarray(consumer.pixels(slot))[0, 0]) == meta.part_id % 256
                consumer.release(slot)
                seen.append(meta.part_id)
                predictor.observe(meta.t_written_ns)
            camera.join(5)
            leftover = waiter.wait(0.05)
        finally:
            producer.close()
            consumer.close()
    return Drive(waiter, seen, warm_calls, per_wait, leftover)


def test_every_frame_is_found_by_polling_or_sleeping_and_none_twice() -> None:
    """A steady 200 fps producer: the waiter returns once per frame (claimed in order, no frame
    missed or seen twice); after the period is learnt, polling finds frames and warm passes run."""
    # 4 ms: windows (the arrivals' spread) of 2-3 ms were seen with the camera a thread in this process
    run = drive(max_spin_ns=4_000_000, frames=120)
    assert run.seen == list(range(1, 121))
    assert not run.leftover_wake_up, "a wake-up left over: a frame would be handled twice"
    waiter = run.waiter
    assert waiter.caught + waiter.missed > 0, "the waiter never polled"
    assert waiter.caught > 0
    assert waiter.warm_passes == len(run.warm_calls) > 0


def test_before_the_period_is_learnt_it_sleeps_and_never_warms() -> None:
    """Polling off (max 0) and no period learnt yet: plain blocking waits, no warm pass, timeouts
    answered False."""
    warm_calls: list[int] = []
    with FrameRing.create(CTX, instance=unique_instance(), geometry=GEOMETRY, slots=4, journal_size=16,
                          when_full="drop_newest") as ring:  # fmt: skip
        producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
        predictor = ArrivalPredictor(max_spin_ns=0)
        waiter = FrameWaiter(consumer, predictor, warm=lambda: warm_calls.append(1), warm_ns=50_000)
        try:
            assert not waiter.wait(0.01)
            publish(producer, 1)
            assert waiter.wait(0.5)
            predictor.observe(time.monotonic_ns())
        finally:
            producer.close()
            consumer.close()
    assert (waiter.caught, waiter.missed, warm_calls) == (0, 0, [])


def test_frames_too_irregular_to_poll_for_get_one_warm_pass_each_before_they_come() -> None:
    """A learnt period but no window narrow enough to poll through (max 1 ns): the waiter sleeps,
    wakes once per frame for a warm pass that ends before the frame is expected, and sleeps again;
    every frame is still returned once, in order."""
    run = drive(max_spin_ns=1, frames=60)
    assert run.seen == list(range(1, 61))
    assert not run.leftover_wake_up
    waiter = run.waiter
    assert (waiter.caught, waiter.missed) == (0, 0), "no window: it never polled"
    assert waiter.warm_passes == waiter.warmed_before_sleep == len(run.warm_calls)
    # a pass is skipped where the sleep overran (WAKE_LATE_NS): a busy machine's late wake-ups
    assert len(run.warm_calls) > 0 and waiter.warm_skipped < len(run.warm_calls)
    assert 30 < len(run.warm_calls) + waiter.warm_skipped <= 60, "one warm pass (or skip) per frame once learnt"
    assert max(run.warm_per_wait) == 1, "one warm pass per wait at most"
