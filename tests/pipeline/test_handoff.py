"""The reject hand-off pipe: bounded, never blocking the writer, nothing lost or torn."""

from __future__ import annotations

import multiprocessing as mp
import time

from linegate.plc.reject_pipe import RECORD, RejectInbox, RejectOutbox, reject_channel

CTX = mp.get_context("spawn")


def test_records_arrive_whole_and_in_order() -> None:
    """What the loop offers, the PLC side takes, in order and intact."""
    reader, writer = reject_channel(CTX)
    outbox, inbox = RejectOutbox(writer, 64), RejectInbox(reader)
    sent = [(i, i * 10, -i) for i in range(50)]
    assert all(outbox.offer(*r) for r in sent)
    got: list[tuple[int, int, int]] = []
    while len(got) < len(sent):
        got += inbox.take(1.0)
    assert [tuple(r[:3]) for r in got] == sent
    assert inbox.take(0.01) == []


def test_full_pipe_refuses_at_once_instead_of_blocking() -> None:
    """With nobody reading, offers beyond the capacity return False immediately."""
    reader, writer = reject_channel(CTX)
    outbox = RejectOutbox(writer, 16)
    t0 = time.monotonic()
    results = [outbox.offer(i, i, i) for i in range(outbox.capacity + 100)]
    assert time.monotonic() - t0 < 5
    assert results.count(True) == outbox.capacity and results[-1] is False
    assert outbox.capacity * RECORD.size >= 16 * RECORD.size
    inbox = RejectInbox(reader)
    taken = []
    while batch := inbox.take(0.05):
        taken += batch
    assert [r[0] for r in taken] == list(range(outbox.capacity))


def _offer_from_child(writer, n: int) -> None:  # type: ignore[no-untyped-def]
    outbox = RejectOutbox(writer, 4096)
    for i in range(n):
        while not outbox.offer(i, i, i):
            time.sleep(0.001)


def test_crosses_processes() -> None:
    """A writer in another process delivers every record to the reader."""
    reader, writer = reject_channel(CTX)
    proc = CTX.Process(target=_offer_from_child, args=(writer, 5000))
    proc.start()
    inbox = RejectInbox(reader)
    got: list[int] = []
    end = time.monotonic() + 30
    while len(got) < 5000 and time.monotonic() < end:
        got += [r[0] for r in inbox.take(0.5)]
    proc.join(10)
    assert got == list(range(5000))
