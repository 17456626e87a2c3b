"""RingConsumer.claim_more: after claim(), up to a limit of further READY frames, oldest first, in
one step (a batch); the rest stay READY, and an empty ring or a limit of 0 claims nothing."""

from __future__ import annotations

from linegate.ring.layout import SlotState
from tests.ring.ring_pair import ring_pair


def test_the_oldest_ready_frames_up_to_the_limit_are_claimed_in_order() -> None:
    with ring_pair(slots=6) as (ring, producer, consumer):
        assert consumer.claim_more(4) == []  # nothing published yet
        for part in (1, 2, 3, 4, 5):
            _, slot = producer.reserve(part, part, part * 100)
            assert slot is not None
            producer.publish(slot, part * 100 + 1)
        first = consumer.claim()
        assert first is not None and first[1].part_id == 1
        assert consumer.claim_more(0) == []
        more = consumer.claim_more(2)
        assert [meta.part_id for _, meta in more] == [2, 3]
        states = [int(s) for s in ring._mapping.headers["state"]]
        assert states.count(SlotState.CLAIMED) == 3 and states.count(SlotState.READY) == 2
        rest = consumer.claim_more(10)  # fewer ready than the limit: those there are
        assert [meta.part_id for _, meta in rest] == [4, 5]
        assert consumer.claim_more(10) == []
        for slot, _ in [first, *more, *rest]:
            consumer.release(slot)
        assert [int(s) for s in ring._mapping.headers["state"]].count(SlotState.FREE) == 6
