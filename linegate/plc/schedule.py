"""When each reject pulse fires (pure logic).

A reject is due at its frame's acquisition time plus the configured fire delay (the conveyor's
travel from camera to ejector). A reject that cannot start within ``max_late`` of its due time
would hit the wrong part, so it is expired and reported undelivered instead of fired.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class PendingReject:
    """One reject waiting for its pulse, ordered by due time."""

    due_ns: int
    part_id: int = field(compare=False)
    seq: int = field(compare=False)
    t_acquired_ns: int = field(compare=False)
    row: int = field(default=-1, compare=False)
    """Its row in the shared pending table (-1: not held there)."""
    basis: int = field(default=0, compare=False)
    class_index: int = field(default=0xFFFF, compare=False)
    score: int = field(default=0, compare=False)
    verdict: int = field(default=2, compare=False)
    """2 reject; 1 pass (a pass result, handshake.results = "all")."""

    @property
    def is_reject(self) -> bool:
        return self.verdict != 1


class RejectSchedule:
    """A min-heap of pending rejects by due time."""

    def __init__(self, fire_delay_ns: int, max_late_ns: int) -> None:
        self._fire_delay_ns = fire_delay_ns
        self._max_late_ns = max_late_ns
        self._heap: list[PendingReject] = []

    def __len__(self) -> int:
        return len(self._heap)

    def make(
        self,
        part_id: int,
        seq: int,
        t_acquired_ns: int,
        row: int = -1,
        basis: int = 0,
        class_index: int = 0xFFFF,
        score: int = 0,
        verdict: int = 2,
    ) -> PendingReject:
        """The reject (or pass result) with its due time, not scheduled."""
        return PendingReject(
            t_acquired_ns + self._fire_delay_ns, part_id, seq, t_acquired_ns, row, basis, class_index, score, verdict
        )

    def push(self, item: PendingReject) -> None:
        """Put back a reject that could not be fired yet (it keeps its due time)."""
        heapq.heappush(self._heap, item)

    def deadline_ns(self, item: PendingReject) -> int:
        """The last instant *item* may still reach the PLC."""
        return item.due_ns + self._max_late_ns

    def peek(self) -> PendingReject | None:
        """The earliest reject, left in place."""
        return self._heap[0] if self._heap else None

    def next_due_ns(self) -> int | None:
        return self._heap[0].due_ns if self._heap else None

    def pop_expired(self, now_ns: int) -> list[PendingReject]:
        """Rejects whose window to fire has closed."""
        out = []
        while self._heap and now_ns - self._heap[0].due_ns > self._max_late_ns:
            out.append(heapq.heappop(self._heap))
        return out

    def pop_due(self, now_ns: int) -> PendingReject | None:
        """The earliest reject that is due now, if any."""
        if self._heap and self._heap[0].due_ns <= now_ns:
            return heapq.heappop(self._heap)
        return None

    def drain(self) -> list[PendingReject]:
        """Everything still pending, earliest first (at shutdown)."""
        out = sorted(self._heap)
        self._heap.clear()
        return out
