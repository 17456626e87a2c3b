"""A defective frame's header flag (defect kind, payload bytes) on every path through the ring."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from linegate.ring import DropReason, FrameMeta, FrameRing, RingConsumer, RingGeometry, RingProducer
from tests.conftest import unique_instance

CTX = mp.get_context("spawn")
GEOMETRY = RingGeometry(48, 64, 1, "Mono8")
FLAG = (2, 1234)  # DefectKind.PAYLOAD_SIZE, 1234 bytes delivered


def flag(meta: FrameMeta) -> tuple[int, int]:
    return meta.defect, meta.payload_bytes


@pytest.mark.parametrize("when_full", ["drop_newest", "drop_oldest"])
def test_defect_flag_travels_with_the_frame_through_slot_and_journal(when_full: str) -> None:
    """The defect flag set at reserve reaches the consumer in a claimed slot and in a full ring's journal entry."""
    with FrameRing.create(CTX, instance=unique_instance(), geometry=GEOMETRY, slots=2, journal_size=16,
                          when_full=when_full) as ring:  # type: ignore[arg-type]  # fmt: skip
        producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
        try:
            for part in (1, 2, 3):
                defect = FLAG if part in (1, 3) else (0, 0)
                _seq, slot = producer.reserve(part, part, time.monotonic_ns(), *defect)
                if slot is not None:
                    producer.publish(slot, time.monotonic_ns())
            journaled = consumer.peek_journal()
            claimed = []
            while (c := consumer.claim()) is not None:
                claimed.append(c[1])
                consumer.release(c[0])
        finally:
            producer.close()
            consumer.close()
    assert journaled is not None
    dropped_part = 3 if when_full == "drop_newest" else 1
    reason = DropReason.RING_FULL if when_full == "drop_newest" else DropReason.OVERWRITTEN
    assert (journaled.part_id, journaled.reason, flag(journaled)) == (dropped_part, reason, FLAG)
    assert {m.part_id: flag(m) for m in claimed} == {p: FLAG if p in (1, 3) else (0, 0) for p in (1, 2, 3)
                                                     if p != dropped_part}  # fmt: skip


def test_defect_flag_survives_a_lock_timeout_deferral() -> None:
    """A defective frame deferred because the ring lock was held is journaled later with its flag intact."""
    with FrameRing.create(CTX, instance=unique_instance(), geometry=GEOMETRY, slots=2, journal_size=16,
                          when_full="drop_newest") as ring:  # fmt: skip
        producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
        try:
            ring.handle.lock.acquire()
            assert producer.reserve(7, 7, time.monotonic_ns(), *FLAG) == (-1, None)
            ring.handle.lock.release()
            _seq, slot = producer.reserve(8, 8, time.monotonic_ns())  # catches up: journals part 7
            journaled = consumer.peek_journal()
        finally:
            producer.close()
            consumer.close()
    assert slot is not None and journaled is not None
    assert (journaled.part_id, journaled.reason, flag(journaled)) == (7, DropReason.LOCK_TIMEOUT, FLAG)
