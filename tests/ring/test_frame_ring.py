"""The shared-memory frame ring, with producer and consumer in separate processes where it matters."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from linegate.ring import (
    DropReason,
    FrameMeta,
    FrameRing,
    RingConsumer,
    RingGeometry,
    RingHandle,
    RingProducer,
    ring_path,
)
from tests.conftest import unique_instance

CTX = mp.get_context("spawn")
GEOMETRY = RingGeometry(48, 64, 1, "Mono8")


@pytest.fixture
def make_ring() -> Iterator:  # type: ignore[type-arg]
    rings: list[FrameRing] = []

    def make(slots: int = 4, when_full: str = "drop_newest", journal_size: int = 64) -> FrameRing:
        ring = FrameRing.create(
            CTX,
            instance=unique_instance(),
            geometry=GEOMETRY,
            slots=slots,
            journal_size=journal_size,
            when_full=when_full,  # type: ignore[arg-type]
        )
        rings.append(ring)
        return ring

    yield make
    for ring in rings:
        ring.close()


def frame_for(i: int) -> np.ndarray:
    return np.full(GEOMETRY.shape, i % 251, dtype=np.uint8)


def produce(handle: RingHandle, count: int, interval_s: float) -> None:
    producer = RingProducer(handle)
    for i in range(count):
        _seq, slot = producer.reserve(frame_id=i + 1, part_id=1000 + i, t_acquired_ns=time.monotonic_ns())
        if slot is not None:
            producer.pixels(slot)[...] = frame_for(i)
            producer.publish(slot, time.monotonic_ns())
        time.sleep(interval_s)
    producer.close()


def drain_journal(consumer: RingConsumer) -> tuple[list[FrameMeta], int]:
    """Every journaled drop, taken the way the inference loop takes them, and the overflow count."""
    drops = []
    while (meta := consumer.peek_journal()) is not None:
        drops.append(meta)
        consumer.advance_journal()
    return drops, consumer.take_overflow()


def consume_all(consumer: RingConsumer, expected: int, timeout_s: float = 20.0) -> tuple[list, list]:  # type: ignore[type-arg]
    frames, drops = [], []
    end = time.monotonic() + timeout_s
    while len(frames) + len(drops) < expected and time.monotonic() < end:
        if not consumer.wait(0.1):
            continue
        journal, overflow = drain_journal(consumer)
        assert overflow == 0
        drops += journal
        claimed = consumer.claim()
        if claimed is not None:
            slot, meta = claimed
            pixels = consumer.pixels(slot)
            frames.append((meta, int(pixels[0, 0]), bool((pixels == pixels[0, 0]).all())))
            consumer.release(slot)
    return frames, drops


def test_frames_cross_processes_intact_and_in_order(make_ring) -> None:  # type: ignore[no-untyped-def]
    """A producer process's frames arrive in the consumer complete, in sequence, with their headers."""
    ring = make_ring(slots=16)  # wraps 18 times; 4 left a consumer 4 ms late dropping frames on a busy machine
    proc = CTX.Process(target=produce, args=(ring.handle, 300, 0.001))
    consumer = RingConsumer(ring.handle)
    proc.start()
    frames, drops = consume_all(consumer, 300)
    proc.join(10)
    consumer.close()
    assert proc.exitcode == 0
    assert drops == []
    assert [m.seq for m, _, _ in frames] == list(range(300))
    assert [m.part_id for m, _, _ in frames] == [1000 + i for i in range(300)]
    assert all(uniform and value == i % 251 for i, (_, value, uniform) in enumerate(frames))
    assert all(m.t_written_ns >= m.t_acquired_ns > 0 for m, _, _ in frames)


def test_drop_newest_journals_the_arriving_frames(make_ring) -> None:  # type: ignore[no-untyped-def]
    """With no consumer, drop_newest keeps the first frames and journals every later one."""
    ring = make_ring(slots=3, when_full="drop_newest")
    produce(ring.handle, 7, 0)
    consumer = RingConsumer(ring.handle)
    frames, drops = consume_all(consumer, 7, timeout_s=2)
    assert [m.seq for m, _, _ in frames] == [0, 1, 2]
    assert [(d.seq, d.part_id, d.reason) for d in drops] == [(s, 1000 + s, DropReason.RING_FULL) for s in range(3, 7)]
    consumer.close()


def test_drop_oldest_overwrites_unclaimed_frames(make_ring) -> None:  # type: ignore[no-untyped-def]
    """With no consumer, drop_oldest keeps the newest frames and journals the overwritten ones."""
    ring = make_ring(slots=3, when_full="drop_oldest")
    produce(ring.handle, 7, 0)
    consumer = RingConsumer(ring.handle)
    frames, drops = consume_all(consumer, 7, timeout_s=2)
    assert [(m.seq, v) for m, v, _ in frames] == [(4, 4), (5, 5), (6, 6)]
    assert [(d.seq, d.reason) for d in drops] == [(s, DropReason.OVERWRITTEN) for s in range(0, 4)]
    consumer.close()


def test_drop_oldest_never_overwrites_a_claimed_slot(make_ring) -> None:  # type: ignore[no-untyped-def]
    """A slot the consumer is reading is never written; the producer drops the newest instead."""
    ring = make_ring(slots=2, when_full="drop_oldest")
    producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
    for i in range(2):
        _, slot = producer.reserve(i, i, 1)
        assert slot is not None
        producer.pixels(slot)[...] = 10 + i
        producer.publish(slot, 2)
    first = consumer.claim()
    second = consumer.claim()
    assert first is not None and second is not None
    seq, slot = producer.reserve(9, 9, 1)
    assert slot is None  # both slots claimed: nothing may be overwritten
    assert int(consumer.pixels(first[0])[0, 0]) == 10 and int(consumer.pixels(second[0])[0, 0]) == 11
    drops, _ = drain_journal(consumer)
    assert [(d.seq, d.reason) for d in drops] == [(seq, DropReason.RING_FULL)]
    producer.close()
    consumer.close()


def test_journal_overflow_is_counted(make_ring) -> None:  # type: ignore[no-untyped-def]
    """Drops beyond the journal's capacity are counted, not silently lost."""
    ring = make_ring(slots=2, journal_size=16)
    produce(ring.handle, 2 + 16 + 5, 0)
    consumer = RingConsumer(ring.handle)
    drops, overflow = drain_journal(consumer)
    assert len(drops) == 16 and overflow == 5
    consumer.close()


def test_consumer_killed_mid_frame_leaves_a_recoverable_claim(make_ring) -> None:  # type: ignore[no-untyped-def]
    """Frames a killed consumer held are reported by the next consumer and their slots freed."""
    ring = make_ring(slots=2)
    produce(ring.handle, 1, 0)
    claimed = CTX.Event()
    proc = CTX.Process(target=_claim_and_hang, args=(ring.handle, claimed))
    proc.start()
    assert claimed.wait(20), "the child never claimed the frame"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    consumer = RingConsumer(ring.handle)
    lost = consumer.recover_claimed()
    assert [m.part_id for m in lost] == [1000]
    assert consumer.recover_claimed() == []
    produce(ring.handle, 2, 0)  # both slots usable again
    frames, drops = consume_all(consumer, 2, timeout_s=2)
    assert len(frames) == 2 and drops == []
    consumer.close()


def _claim_and_hang(handle: RingHandle, claimed) -> None:  # type: ignore[no-untyped-def]
    consumer = RingConsumer(handle)
    while consumer.claim() is None:
        time.sleep(0.001)
    claimed.set()
    time.sleep(60)


def test_ring_has_no_name_in_dev_shm_and_removes_an_old_versions_leftover() -> None:
    """The segment is anonymous (nothing in /dev/shm to leak); an older version's leftover ring file is removed."""
    name = unique_instance()
    path = ring_path(name)
    with open(path, "wb") as leftover:  # what a kill -9 of a version that kept the ring in /dev/shm left
        leftover.write(b"old ring")
    ring = FrameRing.create(CTX, instance=name, geometry=GEOMETRY, slots=2, journal_size=16, when_full="drop_newest")
    assert ring.removed_stale and not os.path.exists(path)
    maps = Path("/proc/self/maps").read_text()
    assert f"/memfd:linegate-{name}-ring" in maps and f"/dev/shm/linegate-{name}" not in maps
    again = FrameRing.create(CTX, instance=name, geometry=GEOMETRY, slots=2, journal_size=16, when_full="drop_newest")
    assert not again.removed_stale  # two rings of one name never meet (the instance lock keeps runs apart)
    again.close()
    ring.close()
    assert not [n for n in os.listdir("/dev/shm") if name in n]


def test_attach_rejects_a_foreign_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Opening something that is not a linegate ring of this layout fails with a clear error."""
    from linegate.errors import RingClosed

    ring = FrameRing.create(
        CTX, instance=unique_instance(), geometry=GEOMETRY, slots=2, journal_size=16, when_full="drop_newest"
    )
    other = RingHandle(
        ring.handle.path,
        ring.handle.fd,
        ring.handle.layout.__class__(3, GEOMETRY.frame_bytes, 16),
        GEOMETRY,
        "drop_newest",
        ring.handle.lock,
        ring.handle.ready,
    )
    with pytest.raises(RingClosed, match="size does not match"):
        RingConsumer(other)
    ring.close()


def _hold_lock_forever(handle: RingHandle, holding) -> None:  # type: ignore[no-untyped-def]
    handle.lock.acquire()
    holding.set()
    time.sleep(60)


def kill_while_holding_the_lock(ring: FrameRing) -> None:
    """A process takes the ring's lock and is SIGKILLed holding it, as a consumer dying mid-update."""
    holding = CTX.Event()
    proc = CTX.Process(target=_hold_lock_forever, args=(ring.handle, holding))
    proc.start()
    assert holding.wait(20)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()


def test_lock_held_by_a_killed_consumer_costs_the_producer_milliseconds(make_ring) -> None:  # type: ignore[no-untyped-def]
    """A consumer killed inside the state lock never blocks the producer: reserve gives up and says so."""
    ring = make_ring(slots=2)
    kill_while_holding_the_lock(ring)
    producer = RingProducer(ring.handle)
    t0 = time.monotonic()
    results = [producer.reserve(i, i, 1) for i in range(10)]
    elapsed = time.monotonic() - t0
    assert results == [(-1, None)] * 10 and producer.lock_timeouts == 10
    assert elapsed < 1.0  # 10 x the 2 ms lock timeout, with a wide margin for a loaded machine
    assert producer.deferred == 10
    producer.close()


def test_deferred_frames_are_journaled_once_the_supervisor_frees_a_dead_holders_lock(make_ring) -> None:  # type: ignore[no-untyped-def]
    """Frames that met a lock held by a killed process are journaled (fail-safe) after recover_lock."""
    ring = make_ring(slots=2)
    kill_while_holding_the_lock(ring)
    producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
    for i in range(1, 4):
        assert producer.reserve(i, 100 + i, 1) == (-1, None)
    assert ring.recover_lock() is True
    assert ring.recover_lock() is False  # free now: nothing to recover
    seq, slot = producer.reserve(4, 104, 1)
    assert slot is not None and producer.deferred == 0
    drops, overflow = drain_journal(consumer)
    assert [(d.part_id, d.reason) for d in drops] == [
        (101, DropReason.LOCK_TIMEOUT),
        (102, DropReason.LOCK_TIMEOUT),
        (103, DropReason.LOCK_TIMEOUT),
    ]
    assert overflow == 0 and seq == 3
    producer.close()
    consumer.close()


def test_half_written_frames_of_a_dead_producer_are_journaled(make_ring) -> None:  # type: ignore[no-untyped-def]
    """journal_unpublished turns WRITING slots into journal entries and frees the slots; unresolved lists the rest."""
    ring = make_ring(slots=3)
    producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
    _, a = producer.reserve(1, 11, 1)
    _, b = producer.reserve(2, 12, 1)
    assert a is not None and b is not None
    producer.publish(b, 2)
    lost = ring.journal_unpublished()
    assert [m.part_id for m in lost] == [11]
    assert [m.part_id for m in ring.unresolved()] == [11, 12]  # 11 in the journal, 12 ready in its slot
    drops, _ = drain_journal(consumer)
    assert [(d.part_id, d.reason) for d in drops] == [(11, DropReason.PRODUCER_DIED)]
    claimed = consumer.claim()
    assert claimed is not None and claimed[1].part_id == 12
    consumer.release(claimed[0])
    assert ring.unresolved() == []
    producer.close()
    consumer.close()


def test_last_part_id_follows_every_frame_that_enters_the_ring(make_ring) -> None:  # type: ignore[no-untyped-def]
    """A frame in a slot and a ring-full journal entry both raise last_part_id (the supervisor
    compares it with ACQUIRED after the acquisition worker dies)."""
    ring = make_ring(slots=1)
    producer = RingProducer(ring.handle)
    assert ring.last_part_id == 0
    producer.reserve(1, 5, 1)  # takes the only slot
    assert ring.last_part_id == 5
    producer.reserve(2, 6, 1)  # ring full: journaled
    assert ring.last_part_id == 6
    producer.close()
