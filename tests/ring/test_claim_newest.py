"""RingConsumer.claim_newest: the newest READY frame, plus every other READY frame acquired before
the stale limit, in one step; frames in between stay READY for later."""

from __future__ import annotations

from linegate.ring.layout import SlotState
from tests.ring.ring_pair import ring_pair


def test_newest_and_the_stale_are_claimed_the_rest_stay_ready() -> None:
    with ring_pair(slots=6) as (ring, producer, consumer):
        for part, t_acquired in ((1, 100), (2, 200), (3, 300), (4, 400), (5, 500)):
            _, slot = producer.reserve(part, part, t_acquired)
            assert slot is not None
            producer.publish(slot, t_acquired + 1)
        newest, stale = consumer.claim_newest(stale_before_ns=250)
        assert newest is not None and newest[1].part_id == 5
        assert [meta.part_id for _, meta in stale] == [1, 2]  # acquired at 100 and 200 < 250
        states = [int(s) for s in ring._mapping.headers["state"]]
        assert states.count(SlotState.CLAIMED) == 3 and states.count(SlotState.READY) == 2
        for slot, _ in [newest, *stale]:
            consumer.release(slot)
        newest, stale = consumer.claim_newest(stale_before_ns=0)
        assert newest is not None and newest[1].part_id == 4 and stale == []
        consumer.release(newest[0])
        newest, stale = consumer.claim_newest(stale_before_ns=10**12)
        assert newest is not None and newest[1].part_id == 3 and stale == []  # the newest is never stale
        consumer.release(newest[0])
        assert consumer.claim_newest(stale_before_ns=0) == (None, [])
