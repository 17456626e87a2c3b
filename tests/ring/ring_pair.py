"""A small real ring with its producer and consumer, for the claim tests."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator
from contextlib import contextmanager

from linegate.ring import FrameRing, RingConsumer, RingGeometry, RingProducer
from tests.conftest import unique_instance

CTX = mp.get_context("spawn")
GEOMETRY = RingGeometry(8, 8, 1, "Mono8")


@contextmanager
def ring_pair(slots: int) -> Iterator[tuple[FrameRing, RingProducer, RingConsumer]]:
    """A ring of *slots* 8x8 Mono8 slots (journal of 8, drop_newest), closed with its two ends."""
    with FrameRing.create(CTX, instance=unique_instance(), geometry=GEOMETRY, slots=slots, journal_size=8,
                          when_full="drop_newest") as ring:  # fmt: skip
        producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
        try:
            yield ring, producer, consumer
        finally:
            producer.close()
            consumer.close()
