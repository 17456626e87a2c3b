"""Recognising a reject received twice for one frame.

A killed inference worker that handed a frame's reject off, but died before storing that it had
(a window of a pipe write and a few microseconds, ``linegate.pipeline.inflight``), leaves its
successor to give the frame the fail-safe verdict: a second reject for the same frame. The PLC
worker fires the first and drops the second, so the part is rejected once.
"""

from __future__ import annotations

from collections import deque

REMEMBERED = 4096
"""Rejects remembered (the duplicate follows the first within the successor's start, seconds)."""


class RecentRejects:
    """The frames of the last rejects received, each by its sequence number and part id (a frame's
    sequence number never repeats in a run)."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self._order: deque[tuple[int, int]] = deque(maxlen=size)
        self._seen: set[tuple[int, int]] = set()

    def first_time(self, seq: int, part_id: int) -> bool:
        """True, and the frame remembered, unless a reject for it was already received."""
        frame = (seq, part_id)
        if frame in self._seen:
            return False
        if len(self._order) == self._order.maxlen:
            self._seen.discard(self._order[0])
        self._order.append(frame)
        self._seen.add(frame)
        return True
