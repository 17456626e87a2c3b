"""The archive hand-off queue across a real spawned producer: order, metadata, drops counted."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np

from linegate.archive import ArchiveConsumer, ArchiveProducer, ArchiveQueue
from linegate.archive.queue import SlotState
from linegate.ring import RingGeometry
from tests.archive.helpers import produce

CTX = mp.get_context("spawn")
GEOMETRY = RingGeometry(48, 64, 1, "Mono8")
SHAPE = (48, 64)


def run_producer(queue: ArchiveQueue, frames: int, passes_one_in: int = 1) -> list[bool | None]:
    reader, writer = CTX.Pipe(duplex=False)
    proc = CTX.Process(target=produce, args=(queue.handle, frames, passes_one_in, SHAPE, writer))
    proc.start()
    writer.close()
    try:
        results: list[bool | None] = reader.recv()
    finally:
        proc.join(20)
    assert proc.exitcode == 0
    return results


def drain(consumer: ArchiveConsumer) -> list[tuple[dict[str, object], np.ndarray]]:
    out = []
    while (item := consumer.take(0.2)) is not None:
        out.append((item.meta, item.pixels.copy()))
        consumer.done(item.slot)
    return out


def test_frames_and_metadata_cross_a_spawned_process_in_order() -> None:
    """Every frame a child offers arrives once, in order, with its pixels and metadata."""
    with ArchiveQueue.create(GEOMETRY, 8, instance="tq") as queue:
        consumer = ArchiveConsumer(queue.handle)
        try:
            assert run_producer(queue, 6) == [True] * 6
            got = drain(consumer)
        finally:
            consumer.close()
        assert [m["part_id"] for m, _ in got] == list(range(6))
        assert [m["verdict"] for m, _ in got] == ["reject", "pass", "pass"] * 2
        assert got[1][0]["scores"] == {"scratch": 0.25} and got[1][0]["model"] == "m1"
        assert all(np.all(px == i) for i, (_, px) in enumerate(got))
        assert queue.counters() == {"offered": 6, "accepted": 6, "dropped_full": 0, "dropped_invalid": 0,
                                    "recovered": 0, "queued": 0}  # fmt: skip


def test_a_full_queue_refuses_offers_and_counts_them_for_the_consumer() -> None:
    """With nobody taking, a child's offers past the slot count return False; the consumer side
    reads the producer's drop count from shared memory, and the first frames are intact."""
    with ArchiveQueue.create(GEOMETRY, 4, instance="tq") as queue:
        results = run_producer(queue, 30)
        consumer = ArchiveConsumer(queue.handle)
        try:
            counts = consumer.counters()
            got = drain(consumer)
        finally:
            consumer.close()
    assert results == [True] * 4 + [False] * 26
    assert counts == {"offered": 30, "accepted": 4, "dropped_full": 26, "dropped_invalid": 0, "recovered": 0,
                      "queued": 4}  # fmt: skip
    assert [m["part_id"] for m, _ in got] == [0, 1, 2, 3]


def test_slots_come_back_after_done() -> None:
    """Taking and giving back frames frees their slots for more offers, round after round."""
    with ArchiveQueue.create(GEOMETRY, 2, instance="tq") as queue:
        producer, consumer = ArchiveProducer(queue.handle), ArchiveConsumer(queue.handle)
        try:
            seen = []
            for i in range(7):
                assert producer.offer(np.full(SHAPE, i, np.uint8), {"part_id": i})
                item = consumer.take(0.1)
                assert item is not None and int(item.pixels[0, 0]) == i
                seen.append(item.meta["part_id"])
                consumer.done(item.slot)
            assert consumer.take(0) is None
        finally:
            producer.close()
            consumer.close()
    assert seen == list(range(7))


def test_frames_that_do_not_fit_are_dropped_and_counted_never_raised() -> None:
    """Too many pixels, another dtype, 1-D, or metadata over the record size: False, dropped_invalid."""
    with ArchiveQueue.create(GEOMETRY, 4, instance="tq", meta_bytes=64) as queue:
        producer = ArchiveProducer(queue.handle)
        try:
            assert not producer.offer(np.zeros((49, 64), np.uint8), {"part_id": 1})
            assert not producer.offer(np.zeros(SHAPE, np.uint16), {"part_id": 2})
            assert not producer.offer(np.zeros(100, np.uint8), {"part_id": 3})
            assert not producer.offer(np.zeros(SHAPE, np.uint8), {"part_id": 4, "note": "x" * 100})
            assert producer.offer(np.zeros((10, 10, 3), np.uint8), {"part_id": 5, "odd": object()})  # a crop fits
        finally:
            producer.close()
        assert queue.counters()["dropped_invalid"] == 4
        consumer = ArchiveConsumer(queue.handle)
        try:
            item = consumer.take(0.1)
            assert item is not None and item.pixels.shape == (10, 10, 3) and isinstance(item.meta["odd"], str)
            consumer.done(item.slot)
        finally:
            consumer.close()


def test_a_new_producer_finishes_what_a_dead_one_left_at_head() -> None:
    """A slot left WRITING (producer killed mid-copy) is freed; one left READY but unposted is posted."""
    with ArchiveQueue.create(GEOMETRY, 2, instance="tq") as queue:
        dead = ArchiveProducer(queue.handle)
        # Killed mid-copy: a free unit taken, the slot at head WRITING, head not moved.
        assert queue.handle.free.acquire(block=False)
        dead._m.set_state(0, SlotState.WRITING)
        ArchiveProducer(queue.handle).close()
        assert queue.counters()["recovered"] == 1
        # Killed between READY and moving head: the frame is complete but was never posted.
        assert dead.offer(np.full(SHAPE, 7, np.uint8), {"part_id": 7})
        assert queue.handle.ready.acquire(block=False)  # undo its post and its head move
        dead._m.put("head", 0)
        dead.close()
        ArchiveProducer(queue.handle).close()
        consumer = ArchiveConsumer(queue.handle)
        try:
            item = consumer.take(0.1)
            assert item is not None and item.meta == {"part_id": 7}
            consumer.done(item.slot)
        finally:
            consumer.close()
        assert queue.counters()["recovered"] == 2 and queue.handle.free.get_value() == 2


def test_an_unposted_ready_slot_is_taken_after_two_timeouts() -> None:
    """A producer killed between moving head and posting: the consumer picks the frame up anyway."""
    with ArchiveQueue.create(GEOMETRY, 2, instance="tq") as queue:
        producer, consumer = ArchiveProducer(queue.handle), ArchiveConsumer(queue.handle)
        try:
            assert producer.offer(np.full(SHAPE, 3, np.uint8), {"part_id": 3})
            assert queue.handle.ready.acquire(block=False)  # its post never happened
            assert consumer.take(0.01) is None
            item = consumer.take(0.01)
            assert item is not None and item.meta == {"part_id": 3}
            consumer.done(item.slot)
        finally:
            producer.close()
            consumer.close()
