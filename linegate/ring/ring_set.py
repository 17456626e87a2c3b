"""The inference side of several frame rings, one per camera, as if they were one.

Each camera's acquisition worker writes into its own ring (one camera's burst or stall never
takes another's slots); one inference loop takes from all of them through a :class:`RingSet`,
which answers the same calls as :class:`~linegate.ring.RingConsumer`:

- one wake-up for all: the rings are created with one shared ``ready`` semaphore, so a wait
  returns for a frame or a drop in any of them (one post per item, as with one ring);
- frames oldest first across cameras, by acquisition time; a batch (``claim_more``) takes the
  oldest waiting frames whichever camera they came from: that is what lets the engine batch across
  cameras;
- slot numbers are global (camera ``c``'s slot ``s`` is ``offset[c] + s``), so the loop, its
  in-flight entry and the GPU path keep one number per frame; every FrameMeta says its ``camera``;
- dropped frames come out of the rings' journals oldest first too.

Choosing across rings reads their slot states without the locks (a hint); the claim itself is
made under the chosen ring's lock and takes only slots still READY, so a frame the producer
overwrote meanwhile (``when_full = "drop_oldest"``) is not taken twice: it is in that ring's
journal instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from linegate.ring.frame_ring import FrameMeta, RingConsumer, RingHandle


class RingSet:
    """One consumer over the rings of several cameras (camera ``i`` is ``handles[i]``)."""

    def __init__(self, handles: Sequence[RingHandle]) -> None:
        if not handles:
            raise ValueError("a RingSet needs at least one ring")
        first = handles[0]
        for i, h in enumerate(handles):
            if h.geometry != first.geometry:
                raise ValueError(f"ring {i} ({h.path}) holds {h.geometry}, ring 0 holds {first.geometry}")
            if h.ready is not first.ready:
                raise ValueError(f"ring {i} ({h.path}) does not share ring 0's wake-up semaphore")
        self._rings = [RingConsumer(h, camera=i) for i, h in enumerate(handles)]
        self._ready = first.ready
        self._offsets: list[int] = []
        self._where: list[tuple[RingConsumer, int]] = []  # global slot -> (ring, its slot)
        for ring in self._rings:
            self._offsets.append(len(self._where))
            self._where.extend((ring, slot) for slot in range(ring.slots))
        self._journal_ring: RingConsumer | None = None
        """The ring whose journal head :meth:`peek_journal` returned last."""

    @property
    def cameras(self) -> int:
        return len(self._rings)

    @property
    def slots(self) -> int:
        return len(self._where)

    def ring_slots(self, camera: int) -> range:
        """The global slot numbers of *camera*'s ring (contiguous)."""
        start = self._offsets[camera]
        return range(start, start + self._rings[camera].slots)

    def pixels(self, slot: int) -> npt.NDArray[np.uint8]:
        ring, own = self._where[slot]
        return ring.pixels(own)

    def slot_address(self, slot: int) -> int:
        ring, own = self._where[slot]
        return ring.slot_address(own)

    def wait(self, timeout_s: float) -> bool:
        """Block until an item may be pending in any ring or *timeout_s* passes; False on timeout."""
        return bool(self._ready.acquire(timeout=timeout_s))

    def wake(self) -> None:
        """Make the consumer's wait return (or its next poll succeed) though nothing new is in the
        ring: for a run that ended on another thread (:mod:`linegate.engine.parallel_runs`)."""
        self._ready.release()

    def poll(self) -> bool:
        return bool(self._ready.acquire(block=False))

    def any_ready(self) -> bool:
        """Whether a frame is READY in any ring (a hint, read without the locks)."""
        return any(ring.any_ready() for ring in self._rings)

    # -- claiming -------------------------------------------------------------------------------
    def _waiting(self) -> list[tuple[int, int, int]]:
        """``(t_acquired_ns, camera, slot)`` of every READY slot in every ring, oldest first (a hint)."""
        out = [(t, camera, slot) for camera, ring in enumerate(self._rings) for t, slot in ring.ready_times()]
        out.sort()
        return out

    def _claim(self, chosen: list[tuple[int, int, int]]) -> list[tuple[int, FrameMeta]]:
        """Take the *chosen* slots still READY, each ring under its own lock; global slot numbers,
        in the order chosen."""
        by_camera: dict[int, list[int]] = {}
        for _t, camera, slot in chosen:
            by_camera.setdefault(camera, []).append(slot)
        taken: list[tuple[int, FrameMeta]] = []
        for camera, slots in by_camera.items():
            offset = self._offsets[camera]
            taken.extend((offset + slot, meta) for slot, meta in self._rings[camera].claim_slots(slots))
        taken.sort(key=lambda item: (item[1].t_acquired_ns, item[1].camera))
        return taken

    def claim(self) -> tuple[int, FrameMeta] | None:
        """Take the oldest READY frame of all the rings; None if there is none."""
        while waiting := self._waiting():
            taken = self._claim(waiting[:1])
            if taken:
                return taken[0]
            # overwritten between the look and the lock: look again
        return None

    def claim_more(self, limit: int) -> list[tuple[int, FrameMeta]]:
        """Take up to *limit* more READY frames, oldest first across the rings (a batch after :meth:`claim`)."""
        if limit < 1:
            return []
        return self._claim(self._waiting()[:limit])

    def claim_newest(self, stale_before_ns: int) -> tuple[tuple[int, FrameMeta] | None, list[tuple[int, FrameMeta]]]:
        """Take the newest READY frame of all the rings, and every other READY frame acquired before
        *stale_before_ns*: ``(newest or None, stale oldest first)``, as :meth:`RingConsumer.claim_newest`."""
        while waiting := self._waiting():
            newest = waiting[-1]
            stale = [w for w in waiting[:-1] if w[0] < stale_before_ns]
            taken = self._claim([*stale, newest])
            first = next((item for item in taken if item[0] == self._offsets[newest[1]] + newest[2]), None)
            if first is not None:
                return first, [item for item in taken if item is not first]
            if taken:  # the newest was overwritten meanwhile; the stale ones are taken all the same
                return taken[-1], taken[:-1]
        return None, []

    def release(self, slot: int) -> None:
        ring, own = self._where[slot]
        ring.release(own)

    # -- dropped frames -------------------------------------------------------------------------
    def peek_journal(self) -> FrameMeta | None:
        """The oldest dropped frame (by acquisition time) not yet taken from any ring's journal;
        left there until :meth:`advance_journal`."""
        best: tuple[FrameMeta, RingConsumer] | None = None
        for ring in self._rings:
            head = ring.peek_journal()
            if head is not None and (best is None or head.t_acquired_ns < best[0].t_acquired_ns):
                best = (head, ring)
        self._journal_ring = best[1] if best is not None else None
        return best[0] if best is not None else None

    def advance_journal(self) -> None:
        """Take the entry :meth:`peek_journal` returned last."""
        if self._journal_ring is None:
            raise RuntimeError("advance_journal without an entry from peek_journal")
        self._journal_ring.advance_journal()
        self._journal_ring = None

    def take_overflow(self) -> int:
        return sum(ring.take_overflow() for ring in self._rings)

    def recover_claimed(self) -> list[FrameMeta]:
        """Frames a dead consumer left claimed in any ring (their slots are freed), oldest first."""
        lost = [meta for ring in self._rings for meta in ring.recover_claimed()]
        return sorted(lost, key=lambda meta: (meta.t_acquired_ns, meta.camera))

    def close(self) -> None:
        for ring in self._rings:
            ring.close()


FrameSource = RingConsumer | RingSet
"""What the inference loop takes frames from: one camera's ring, or several."""

__all__ = ["FrameSource", "RingSet"]
