"""The frame the inference loop is deciding, kept in shared memory with how far it got.

Deciding a frame has three effects that cannot be made one atomic step: a reject goes to the PLC
hand-off, its record goes into the log pipe, and the counters move. The loop writes the frame here
when it takes it, and advances ``stage`` after each effect. If the worker is killed, its successor
finishes exactly the effects that are missing (a frame taken but not yet recorded gets the
fail-safe verdict as ``lost_in_flight``), so the frame still ends with one verdict, one record and
one count. Between the record and its stage store, the supervisor closes the gap: the record is
then the last line the dead worker wrote to its log pipe (:func:`linegate.pipeline.recovery.found_record`).
Between the reject's hand-off and its stage store (a write syscall and a few microseconds), a
worker killed there leaves its successor to hand off a second, fail-safe reject for the frame: the
PLC worker recognises it and fires only the first (:mod:`linegate.plc.recent_rejects`).
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from enum import IntEnum
from multiprocessing.context import BaseContext
from typing import Any

from linegate.ring import FrameMeta


class Stage(IntEnum):
    IDLE = 0
    TAKEN = 1  # the loop owns the frame; no effect yet
    HANDED = 2  # a reject is in the PLC hand-off (or there was none); the record and counts remain
    RECORDED = 3  # its record is in the log pipe; only the counts remain


class Outcome(IntEnum):
    """What an effect did, kept so a successor can count it."""

    NONE = 0
    OK = 1
    DROPPED = 2  # record: log pipe full; hand-off: PLC queue full


# slot layout: stage, seq, frame_id, part_id, t_acquired_ns, t_written_ns, reason, counter,
#              verdict_is_reject, basis_index, logged, handed, defect, payload_bytes, verdict_due_ns, camera
_FIELDS = 16
_DUE = 14
_TAKEN = struct.Struct("@15q")  # native, as the memoryview the other fields are read through
"""Fields 1..15 in one pack: the loop takes a frame on its hot path, where numpy slice assignments
cost about 4 us each hot and tens of microseconds on a cold cache."""
_TAKEN_OFFSET = 8

BACKLOG_DUE = -1
"""``due_ns`` of a frame taken while others wait in the ring: the PLC worker sleeps until its verdict
arrives instead of polling for it. The 0.1-0.3 ms wake-up polling saves is nothing beside those
frames' queueing, and on a machine short of CPUs the polling was taken from the engine (the PLC
worker 8% of the one CPU linegate had, in a ResNet-18 overload)."""


@dataclass(frozen=True)
class InFlightFrame:
    """A snapshot of the shared entry."""

    stage: Stage
    meta: FrameMeta
    counter: int  # linegate.counters.Count value: DECIDED or DROPPED
    reject: bool
    basis_index: int
    logged: Outcome
    handed: Outcome


class InFlight:
    """One shared entry: the frame whose verdict the loop is settling (a batch's frames take it one
    after another, the rest stay claimed in the ring until theirs); picklable to the worker at spawn."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self._bytes = memoryview(array).cast("B")
        self._q = self._bytes.cast("q")  # plain-int loads and stores: the per-frame path uses them

    @classmethod
    def create(cls, ctx: BaseContext) -> InFlight:
        return cls(ctx.RawArray("q", _FIELDS))

    @classmethod
    def local(cls) -> InFlight:
        """In this process's memory only (a loop nobody takes over from, e.g. in tests)."""
        return cls((ctypes.c_int64 * _FIELDS)())

    def __reduce__(self) -> tuple[Any, ...]:
        return (InFlight, (self.array,))

    def take(self, meta: FrameMeta, counter: int, due_ns: int = 0) -> None:
        """The loop owns *meta*'s frame; its verdict is expected at *due_ns* (0: at once;
        :data:`BACKLOG_DUE`: not worth polling for)."""
        m = meta
        _TAKEN.pack_into(
            self._bytes, _TAKEN_OFFSET, m.seq, m.frame_id, m.part_id, m.t_acquired_ns, m.t_written_ns, m.reason,
            counter, 0, 0, 0, 0, m.defect, m.payload_bytes, due_ns, m.camera,
        )  # fmt: skip
        self._q[0] = Stage.TAKEN  # last: a successor never sees a half-written frame as taken

    def settle(self, reject: bool, basis_index: int) -> None:
        q = self._q
        q[8] = int(reject)
        q[9] = basis_index

    def recorded(self, logged: Outcome) -> None:
        q = self._q
        q[10] = logged
        q[0] = Stage.RECORDED

    def handed(self, handed: Outcome) -> None:
        q = self._q
        q[11] = handed
        q[0] = Stage.HANDED

    def done(self) -> None:
        self._q[0] = Stage.IDLE

    @property
    def verdict_due_ns(self) -> int:
        """When the frame being decided should have its verdict (``time.monotonic_ns()``; 0: at once)."""
        return self._q[_DUE]

    def poll_due_ns(self) -> int | None:
        """When the verdict of the frame being decided is due, if the PLC worker may poll for it: a
        frame is taken, its verdict not yet handed off, and no backlog waits behind it. None
        otherwise. (The due time is read once: a frame taken meanwhile may carry BACKLOG_DUE.)"""
        q = self._q
        due = q[_DUE]
        return due if q[0] == Stage.TAKEN and due != BACKLOG_DUE else None

    @property
    def deciding(self) -> bool:
        """A frame is taken and its verdict not yet handed off (read by the PLC worker, which then
        polls for the verdict instead of sleeping until it arrives)."""
        return self._q[0] == Stage.TAKEN

    def current(self) -> InFlightFrame | None:
        """The frame a previous worker left unfinished, if any."""
        a = self._q.tolist()
        if a[0] == Stage.IDLE:
            return None
        meta = FrameMeta(a[1], a[2], a[3], a[4], a[5], a[6], a[12], a[13], a[15])
        return InFlightFrame(Stage(a[0]), meta, a[7], bool(a[8]), a[9], Outcome(a[10]), Outcome(a[11]))
