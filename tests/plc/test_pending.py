"""The shared pending-reject table: bounded, and what a dead PLC worker leaves is recoverable."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

from linegate.plc.pending import PendingTable, RowState

CTX = mp.get_context("spawn")


def test_put_until_full_then_none() -> None:
    """A table of 2 holds two rejects; the third is refused (the caller reports it)."""
    table = PendingTable.create(CTX, 2)
    assert table.put(1, 10, 100) is not None and table.put(2, 11, 101) is not None
    assert table.put(3, 12, 102) is None
    assert len(table) == 2


def test_freed_rows_are_reused() -> None:
    """Delivered or reported rejects free their row for the next one."""
    table = PendingTable.create(CTX, 1)
    row = table.put(1, 10, 100)
    assert row is not None
    table.free(row)
    assert table.put(2, 11, 101) == row


def _successor(table: PendingTable, out: Any) -> None:
    held = table.held()
    out.put(([(h.part_id, int(h.state)) for h in held], table.put(9, 3, 400)))


def test_a_successor_process_sees_what_was_left_in_state_and_order() -> None:
    """A restarted worker (another process, same memory) lists held rows oldest first, with FIRING
    marking a pulse that was being written, and never reuses a row still held."""
    table = PendingTable.create(CTX, 4)
    a = table.put(7, 1, 300)
    b = table.put(8, 2, 100)
    assert a is not None and b is not None
    table.mark_firing(a)
    out = CTX.Queue()
    proc = CTX.Process(target=_successor, args=(table, out))
    proc.start()
    held, row = out.get(timeout=30)
    proc.join(10)
    assert held == [(8, RowState.PENDING), (7, RowState.FIRING)]
    assert row not in (a, b)
    assert {h.part_id for h in table.held()} == {7, 8, 9}  # the successor's write is visible here
