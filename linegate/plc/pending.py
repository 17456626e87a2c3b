"""Rejects the PLC worker holds, kept in shared memory so none is lost when that worker dies.

A fixed table of rows ``(state, part_id, seq, t_acquired_ns, result, plc_seq)``. The PLC worker
writes a row when it accepts a reject, marks it FIRING while its write is out (pulse ON sent, or
handshake result written and not yet acknowledged), ON once a pulse is confirmed and only its OFF
edge remains, and frees it once the reject is delivered or reported. A restarted (or reloaded)
PLC worker takes over the rows left behind; if no worker comes back, the supervisor reports them
by part id. One writer at a time.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from enum import IntEnum
from multiprocessing.context import BaseContext
from typing import Any

import numpy as np

ROW = 6


class RowState(IntEnum):
    FREE = 0
    PENDING = 1
    FIRING = 2  # its write is out: it may or may not have reached the PLC (handshake: see plc_seq)
    ON = 3  # pulse mode: delivered and logged; only the OFF edge is left


@dataclass(frozen=True)
class HeldReject:
    """A row left in the table: its index, state and the reject."""

    row: int
    state: RowState
    part_id: int
    seq: int
    t_acquired_ns: int
    result: int
    """verdict << 48 | basis << 32 | class_index << 16 | score (the handshake result words)."""
    plc_seq: int
    """handshake: the result sequence number it was written with (0: not written yet)."""


def pack_result(verdict: int, basis: int, class_index: int, score: int) -> int:
    """The result words of a row in one int64."""
    return (verdict << 48) | (basis << 32) | (class_index << 16) | score


def unpack_result(result: int) -> tuple[int, int, int, int]:
    """``(verdict, basis, class_index, score)``; a row written before verdicts were stored is a reject."""
    return (result >> 48) & 0xFF or 2, (result >> 32) & 0xFFFF, (result >> 16) & 0xFFFF, result & 0xFFFF


class PendingTable:
    """Bounded: ``put`` returns None when every row is taken (the caller reports the reject)."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self._rows = np.frombuffer(array, dtype=np.int64).reshape(-1, ROW)

    @classmethod
    def create(cls, ctx: BaseContext, capacity: int) -> PendingTable:
        return cls(ctx.RawArray("q", capacity * ROW))

    @classmethod
    def local(cls, capacity: int) -> PendingTable:
        """In this process's memory only (tests, or a worker nobody takes over from)."""
        return cls((ctypes.c_int64 * (capacity * ROW))())

    def __reduce__(self) -> tuple[Any, ...]:
        return (PendingTable, (self.array,))

    @property
    def capacity(self) -> int:
        return len(self._rows)

    def __len__(self) -> int:
        return int(np.count_nonzero(self._rows[:, 0] != RowState.FREE))

    def put(self, part_id: int, seq: int, t_acquired_ns: int, result: int = 0) -> int | None:
        # The free row is found in the shared rows themselves (no per-process free list), so a
        # successor never works from a stale copy; a scan of at most queue_size rows per reject.
        free = np.flatnonzero(self._rows[:, 0] == RowState.FREE)
        if not free.size:
            return None
        row = int(free[0])
        r = self._rows[row]
        r[1], r[2], r[3], r[4], r[5] = part_id, seq, t_acquired_ns, result, 0
        r[0] = RowState.PENDING  # last: a reader never sees a half-written row as taken
        return row

    def mark_firing(self, row: int, plc_seq: int = 0) -> None:
        if row >= 0:
            self._rows[row, 5] = plc_seq
            self._rows[row, 0] = RowState.FIRING

    def mark_on(self, row: int) -> None:
        if row >= 0:
            self._rows[row, 0] = RowState.ON

    def mark_pending(self, row: int) -> None:
        if row >= 0:
            self._rows[row, 0] = RowState.PENDING

    def free(self, row: int) -> None:
        if row >= 0:
            self._rows[row, 0] = RowState.FREE

    def held(self) -> list[HeldReject]:
        """Rows in use, oldest acquisition first (taken over at start, or reported at the end)."""
        used = np.flatnonzero(self._rows[:, 0] != RowState.FREE)
        out = [HeldReject(int(i), RowState(int(self._rows[i, 0])), *map(int, self._rows[i, 1:])) for i in used]
        return sorted(out, key=lambda h: h.t_acquired_ns)
