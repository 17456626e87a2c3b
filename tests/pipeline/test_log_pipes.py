"""Worker log pipes: records written before a worker is killed still reach the log; a full pipe
is waited for briefly, then drops and counts, never blocks."""

from __future__ import annotations

import fcntl
import json
import multiprocessing as mp
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

from linegate.counters import Count, SharedCounters
from linegate.logs import LogOutputs
from linegate.pipeline.log_pipes import PIPE_BYTES, LogCollector, PipeSink, WaitBudget, log_pipe, warn_if_small
from linegate.roles import Role

CTX = mp.get_context("spawn")


def _write_then_die(writer: Connection, n: int) -> None:
    sink = PipeSink(writer)
    for i in range(n):
        assert sink.put(json.dumps({"event": "frame", "part_id": i + 1}))
    os.kill(os.getpid(), signal.SIGKILL)  # no flush, no exit handlers: as a crash


def test_records_of_a_killed_worker_are_all_written(tmp_path: Path) -> None:
    """2000 records put by a process that then SIGKILLs itself all appear in the log file, once each;
    the pipe's end is known, with the last line it carried."""
    out = tmp_path / "log.jsonl"
    counters = SharedCounters.create(CTX)
    collector = LogCollector(LogOutputs(stream=None, file=out), counters)
    reader, writer = log_pipe(CTX)
    proc = CTX.Process(target=_write_then_die, args=(writer, 2000))
    proc.start()
    writer.close()
    end = collector.add(reader, Role.INFER)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    # what the supervisor reads before starting a successor: the dead worker's last whole line
    assert json.loads(end.last_words(5.0)) == {"event": "frame", "part_id": 2000}
    collector.close()
    ids = [json.loads(line)["part_id"] for line in out.read_text().splitlines()]
    assert ids == list(range(1, 2001))
    assert counters.get(Count.LOG_WRITE_FAILED_INFER) == 0


def test_full_pipe_drops_and_counts_without_blocking() -> None:
    """Nobody reading: once the pipe is full, one put waits for room until the collector is judged
    stuck, and every later one fails at once (3000 waits of 20 ms would take a minute); each drop
    is counted."""
    reader, writer = log_pipe(CTX)
    sink = PipeSink(writer)
    t0 = time.monotonic()
    results = [sink.put("x" * 1000) for _ in range(3000)]  # ~3 MB into a pipe of at most 1 MiB
    elapsed = time.monotonic() - t0
    assert results.count(False) == sink.dropped_full > 0
    assert sink.enqueued + sink.dropped_full == 3000
    assert sink.waits == 1
    assert elapsed < 20  # generous: it must return at all
    sink.close()
    reader.close()


def test_a_stuck_collector_is_waited_for_again_once_it_has_emptied_half_the_pipe() -> None:
    reader, writer = small_pipe()
    sink = PipeSink(writer, WaitBudget(stall_ns=10_000_000))
    while sink.put("x" * 1000):  # fill it; the put that finds it full waits, then judges it stuck
        pass
    assert sink.waits == 1
    assert not sink.put("x" * 1000) and sink.waits == 1  # stuck: dropped without waiting
    os.read(reader.fileno(), 1000)  # a quarter read: still more than half full
    assert not sink.put("x" * 10) and sink.waits == 1
    os.read(reader.fileno(), 1002)  # half of it read: waited for again
    while sink.put("x" * 1000):
        pass
    assert sink.waits == 2 and sink.dropped_full == 4
    sink.close()
    reader.close()


def test_the_wait_budget_refills_at_its_rate_and_caps_each_wait() -> None:
    """Pure arithmetic of the token bucket: 100 ms a second, 20 ms per record at most."""
    budget = WaitBudget(budget_ns=100_000_000, stall_ns=20_000_000)
    t = budget._last
    assert budget.left(t) == 100_000_000  # full
    budget.spend(100_000_000)
    assert budget.left(t) == 0
    assert budget.left(t + 250_000_000) == 25_000_000  # a quarter second: a quarter refilled
    assert budget.left(t + 10_000_000_000) == 100_000_000  # never more than full


def test_unwritable_output_counts_failed_lines_per_worker(tmp_path: Path) -> None:
    """Lines the collector cannot write (disk full) are counted under the worker that sent them."""
    counters = SharedCounters.create(CTX)
    collector = LogCollector(LogOutputs(stream=None, file=Path("/dev/full")), counters)
    reader, writer = log_pipe(CTX)
    collector.add(reader, Role.PLC)
    sink = PipeSink(writer)
    for i in range(10):
        sink.put(json.dumps({"event": "reject_delivered", "part_id": i}))
    sink.close()
    collector.close()
    assert counters.get(Count.LOG_WRITE_FAILED_PLC) == 10


def small_pipe() -> tuple[Connection, Connection]:
    """A log pipe shrunk to one page, as the kernel hands out past a user's pipe quota."""
    reader, writer = log_pipe(CTX)
    fcntl.fcntl(writer.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
    return reader, writer


def test_a_burst_into_a_small_pipe_keeps_every_record_while_the_reader_keeps_up() -> None:
    """500 records of 400 bytes (50x the pipe) put at once while a reader drains it: every put waits
    for room instead of dropping (a restarted inference worker's backlog of fail-safe records)."""
    reader, writer = small_pipe()
    sink = PipeSink(writer, WaitBudget(budget_ns=60 * 10**9, stall_ns=10 * 10**9))  # the mechanism, not the budget
    assert sink.capacity == 4096
    got = bytearray()

    def drain() -> None:
        while True:
            chunk = os.read(reader.fileno(), 65536)
            if not chunk:
                return
            got.extend(chunk)
            time.sleep(0.0002)

    thread = threading.Thread(target=drain)
    thread.start()
    results = [sink.put(json.dumps({"event": "frame", "part_id": i, "pad": "x" * 360})) for i in range(500)]
    sink.close()
    thread.join(10)
    reader.close()
    assert all(results) and sink.dropped_full == 0 and sink.waits > 0  # it had to wait, and did
    assert [json.loads(line)["part_id"] for line in got.decode().splitlines()] == list(range(500))


def test_records_larger_than_the_pipe_and_from_two_threads_arrive_whole() -> None:
    """Records of 10 KB into a 4 KiB pipe (written in parts) from one thread, small ones from
    another (the supervisor logs from its main and archive threads): every line that arrives is
    one whole record."""
    reader, writer = small_pipe()
    sink = PipeSink(writer, WaitBudget(budget_ns=60 * 10**9, stall_ns=10 * 10**9))
    got = bytearray()

    def drain() -> None:
        while chunk := os.read(reader.fileno(), 65536):
            got.extend(chunk)

    def put(kind: str, pad: int) -> None:
        for i in range(200):
            assert sink.put(json.dumps({"kind": kind, "i": i, "pad": "x" * pad}))

    threads = [threading.Thread(target=drain), threading.Thread(target=put, args=("big", 10_000)),
               threading.Thread(target=put, args=("small", 10))]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads[1:]:
        thread.join(30)
    sink.close()
    threads[0].join(30)
    reader.close()
    records = [json.loads(line) for line in got.decode().splitlines()]
    for kind in ("big", "small"):
        assert [r["i"] for r in records if r["kind"] == kind] == list(range(200))


class _Warnings:
    """A logger that keeps the warnings it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def warning(self, event: str, **fields: object) -> None:
        self.events.append((event, fields))


def test_a_pipe_smaller_than_asked_is_reported_with_its_size() -> None:
    reader, writer = small_pipe()
    log = _Warnings()
    warn_if_small(PipeSink(writer), log)
    assert [(e, f["bytes"], f["asked"]) for e, f in log.events] == [("log_pipe_small", 4096, PIPE_BYTES)]
    big_reader, big_writer = log_pipe(CTX)
    quiet = _Warnings()
    warn_if_small(PipeSink(big_writer), quiet)
    assert quiet.events == []
    for conn in (reader, writer, big_reader, big_writer):
        conn.close()


def test_a_restarted_workers_drops_add_to_its_predecessors() -> None:
    """Each worker reports the records its full pipe dropped; a successor's sink starts from zero,
    and the role's count keeps what the dead one had reported."""
    counters = SharedCounters.create(CTX)
    for dropped in (3, 2):  # the first worker, then its successor
        reader, writer = small_pipe()
        sink = PipeSink(writer, WaitBudget(budget_ns=0))
        while sink.put("x" * 1000):  # nobody reads: fill the pipe (the first drop)
            pass
        for _ in range(dropped - 1):
            sink.put("x" * 1000)
        counters.add_log_drops(Role.INFER, sink.unreported_drops())
        assert sink.unreported_drops() == 0  # reported once
        reader.close()
        writer.close()
    assert counters.get(Count.LOG_QUEUE_FULL_INFER) == 5
