"""RingSet: one consumer over one ring per camera. Frames come out oldest first by acquisition time
whichever camera took them, a batch takes the oldest waiting frames across cameras, slot numbers
are global, every frame says its camera, drops come out of every journal, and one shared semaphore
wakes the consumer once per item in any ring."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np
import pytest

from linegate.ring import DropReason, FrameMeta, FrameRing, RingGeometry, RingHandle, RingProducer, RingSet
from linegate.ring.frame_ring import WhenFull
from linegate.ring.layout import SlotState
from linegate.ring.sync import SharedSemaphore
from tests.conftest import unique_instance

CTX = mp.get_context("spawn")
GEOMETRY = RingGeometry(8, 8, 1, "Mono8")


@contextmanager
def camera_rings(
    cameras: int, slots: int = 4, when_full: WhenFull = "drop_newest", journal_size: int = 8
) -> Iterator[tuple[list[FrameRing], list[RingProducer], RingSet]]:
    """*cameras* rings sharing one wake-up semaphore, a producer for each, and a RingSet over them."""
    ready = SharedSemaphore(0)
    with ExitStack() as stack:
        rings = [
            stack.enter_context(
                FrameRing.create(
                    CTX,
                    instance=unique_instance(),
                    geometry=GEOMETRY,
                    slots=slots,
                    journal_size=journal_size,
                    when_full=when_full,
                    ready=ready,
                )
            )
            for _ in range(cameras)
        ]
        producers = [RingProducer(ring.handle) for ring in rings]
        ring_set = RingSet([ring.handle for ring in rings])
        try:
            yield rings, producers, ring_set
        finally:
            ring_set.close()
            for producer in producers:
                producer.close()


def put(producer: RingProducer, part_id: int, t_acquired_ns: int, value: int = 0) -> int | None:
    """One frame into *producer*'s ring (its pixels all *value*); its slot, or None if dropped."""
    _seq, slot = producer.reserve(part_id, part_id, t_acquired_ns)
    if slot is not None:
        producer.pixels(slot)[...] = value
        producer.publish(slot, t_acquired_ns + 1)
    return slot


def seen(taken: list[tuple[int, FrameMeta]]) -> list[tuple[int, int]]:
    return [(meta.camera, meta.t_acquired_ns) for _slot, meta in taken]


def test_frames_come_out_oldest_first_across_cameras_and_a_batch_mixes_them() -> None:
    with camera_rings(3) as (_rings, (cam0, cam1, cam2), ring_set):
        put(cam0, 1, 100)
        put(cam1, 1, 200)
        put(cam2, 1, 150)
        put(cam0, 2, 300)
        put(cam1, 2, 400)
        first = ring_set.claim()
        assert first is not None and seen([first]) == [(0, 100)]
        batch = ring_set.claim_more(3)
        assert seen(batch) == [(2, 150), (1, 200), (0, 300)]
        rest = ring_set.claim_more(8)
        assert seen(rest) == [(1, 400)]
        assert ring_set.claim() is None and ring_set.claim_more(4) == []
        for slot, _ in [first, *batch, *rest]:
            ring_set.release(slot)


def test_slot_numbers_are_global_and_pixels_come_from_the_frames_own_ring() -> None:
    with camera_rings(3, slots=4) as (rings, producers, ring_set):
        assert ring_set.slots == 12 and ring_set.cameras == 3
        assert [list(ring_set.ring_slots(c)) for c in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
        for camera, producer in enumerate(producers):
            put(producer, 7, 1000 + camera, value=10 + camera)
        taken = [ring_set.claim() for _ in range(3)]
        for item in taken:
            assert item is not None
            slot, meta = item
            assert slot in ring_set.ring_slots(meta.camera)
            assert meta.part_id == 7
            assert (ring_set.pixels(slot) == 10 + meta.camera).all()
            assert ring_set.slot_address(slot) == ring_set.pixels(slot).__array_interface__["data"][0]
        for slot, meta in taken:  # type: ignore[misc]
            ring_set.release(slot)
            states = rings[meta.camera]._mapping.headers["state"]
            assert int(states[slot % 4]) == SlotState.FREE


def test_one_wake_up_per_item_in_any_ring() -> None:
    """Frames and drops in any ring each post once on the shared semaphore, and nothing more."""
    with camera_rings(2, slots=1) as (_rings, (cam0, cam1), ring_set):
        assert not ring_set.poll()
        put(cam0, 1, 10)
        put(cam1, 1, 20)
        assert put(cam1, 2, 30) is None  # cam1's one slot is full: journaled, one more wake-up
        assert [ring_set.poll() for _ in range(4)] == [True, True, True, False]
        assert ring_set.wait(0.01) is False


def test_drops_come_out_of_every_journal_oldest_first() -> None:
    with camera_rings(2, slots=1) as (_rings, (cam0, cam1), ring_set):
        put(cam0, 1, 10)
        put(cam1, 1, 11)
        for t in (40, 20):  # cam0 drops the frame of 40, cam1 the one of 20
            put(cam0 if t == 40 else cam1, 2, t)
        drops = []
        while (meta := ring_set.peek_journal()) is not None:
            assert ring_set.peek_journal() == meta  # a peek takes nothing
            drops.append((meta.camera, meta.t_acquired_ns, meta.reason))
            ring_set.advance_journal()
        assert drops == [(1, 20, DropReason.RING_FULL), (0, 40, DropReason.RING_FULL)]
        with pytest.raises(RuntimeError):
            ring_set.advance_journal()
        assert ring_set.take_overflow() == 0


def test_journal_overflow_is_summed_over_the_rings() -> None:
    with camera_rings(2, slots=1, journal_size=16) as (_rings, producers, ring_set):
        for producer in producers:
            put(producer, 1, 1)
            for part in range(2, 2 + 16 + 3):  # 16 fit the journal, 3 overflow it
                put(producer, part, part)
        assert ring_set.take_overflow() == 6
        assert ring_set.take_overflow() == 0


def test_newest_first_takes_the_newest_of_all_cameras_and_the_stale_of_every_one() -> None:
    with camera_rings(2) as (_rings, (cam0, cam1), ring_set):
        for producer, t in ((cam0, 100), (cam1, 110), (cam0, 200), (cam1, 300), (cam0, 250)):
            put(producer, t, t)
        newest, stale = ring_set.claim_newest(stale_before_ns=150)
        assert newest is not None and seen([newest]) == [(1, 300)]
        assert seen(stale) == [(0, 100), (1, 110)]
        left = [ring_set.claim(), ring_set.claim()]
        assert seen([x for x in left if x is not None]) == [(0, 200), (0, 250)]
        assert ring_set.claim_newest(0) == (None, [])


def test_a_frame_overwritten_between_the_look_and_the_claim_is_not_taken() -> None:
    """drop_oldest: the producer reuses the oldest READY slot while the set is choosing; the claim
    takes only what is still READY, and the overwritten frame is in the journal instead."""
    with camera_rings(2, slots=2, when_full="drop_oldest") as (_rings, (cam0, cam1), ring_set):
        put(cam0, 1, 10)
        put(cam0, 2, 20)
        put(cam1, 1, 30)
        look = ring_set._waiting()
        put(cam0, 3, 40)  # cam0 is full: frame 10's slot now holds frame 40
        ring_set._waiting = lambda: look if look else []  # type: ignore[method-assign]
        taken = ring_set.claim_more(3)
        assert seen(taken) == [(0, 20), (1, 30), (0, 40)]  # the slot came back READY with frame 40
        ring_set._waiting = lambda: []  # type: ignore[method-assign]
        head = ring_set.peek_journal()
        assert head is not None and (head.camera, head.t_acquired_ns, head.reason) == (0, 10, DropReason.OVERWRITTEN)


def test_frames_a_dead_consumer_held_are_recovered_from_every_ring() -> None:
    with camera_rings(3) as (rings, producers, ring_set):
        for camera, producer in enumerate(producers):
            put(producer, 1, 100 - camera)
        assert len([ring_set.claim() for _ in range(3)]) == 3
        successor = RingSet([ring.handle for ring in rings])
        try:
            lost = successor.recover_claimed()
        finally:
            successor.close()
        assert [(m.camera, m.t_acquired_ns) for m in lost] == [(2, 98), (1, 99), (0, 100)]
        for ring in rings:
            assert (ring._mapping.headers["state"] == SlotState.FREE).all()


def test_rings_that_cannot_be_one_set_are_refused_by_name() -> None:
    with ExitStack() as stack:
        ready = SharedSemaphore(0)

        def ring(geometry: RingGeometry, shared: SharedSemaphore | None) -> FrameRing:
            return stack.enter_context(
                FrameRing.create(
                    CTX,
                    instance=unique_instance(),
                    geometry=geometry,
                    slots=2,
                    journal_size=16,
                    when_full="drop_newest",
                    ready=shared,
                )
            )

        a, b = ring(GEOMETRY, ready), ring(RingGeometry(8, 16, 1, "Mono8"), ready)
        with pytest.raises(ValueError, match="ring 1 .* holds"):
            RingSet([a.handle, b.handle])
        c = ring(GEOMETRY, None)
        with pytest.raises(ValueError, match="ring 1 .* wake-up semaphore"):
            RingSet([a.handle, c.handle])
        with pytest.raises(ValueError, match="at least one"):
            RingSet([])


def _produce(handle: RingHandle, camera: int, count: int) -> None:
    producer = RingProducer(handle)
    for i in range(count):
        put(producer, i + 1, time.monotonic_ns(), value=(camera * 64 + i) % 251)
        time.sleep(0.0005)
    producer.close()


def test_three_producer_processes_every_frame_once_in_each_cameras_order() -> None:
    """Three acquisition processes write at once; the consumer, batching up to 3, takes every frame
    of every camera exactly once (or its drop), each camera's in order, with its own pixels."""
    count = 300
    with camera_rings(3, slots=4, journal_size=1024) as (rings, _producers, ring_set):
        procs = [CTX.Process(target=_produce, args=(ring.handle, cam, count)) for cam, ring in enumerate(rings)]
        for proc in procs:
            proc.start()
        frames: dict[int, list[int]] = {0: [], 1: [], 2: []}
        drops: dict[int, list[int]] = {0: [], 1: [], 2: []}
        end = time.monotonic() + 30
        while sum(map(len, frames.values())) + sum(map(len, drops.values())) < 3 * count and time.monotonic() < end:
            if not ring_set.wait(0.1):
                continue
            while (meta := ring_set.peek_journal()) is not None:
                drops[meta.camera].append(meta.part_id)
                ring_set.advance_journal()
            first = ring_set.claim()
            if first is None:
                continue
            for slot, meta in [first, *ring_set.claim_more(2)]:
                assert (ring_set.pixels(slot) == (meta.camera * 64 + meta.part_id - 1) % 251).all()
                frames[meta.camera].append(meta.part_id)
                ring_set.release(slot)
        for proc in procs:
            proc.join(10)
            assert proc.exitcode == 0
        for camera in range(3):
            assert frames[camera] == sorted(frames[camera])  # each camera's frames in order
            assert sorted(frames[camera] + drops[camera]) == list(range(1, count + 1))
        assert ring_set.claim() is None and ring_set.peek_journal() is None
        assert np.sum([len(f) for f in frames.values()]) > 0
