"""Worker log pipes: records written before a worker is killed still reach the log; a full pipe
drops and counts, never blocks."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
from multiprocessing.connection import Connection
from pathlib import Path

from linegate.counters import Count, SharedCounters
from linegate.logs import LogOutputs
from linegate.pipeline.log_pipes import LogCollector, PipeSink, log_pipe
from linegate.roles import Role

CTX = mp.get_context("spawn")


def _write_then_die(writer: Connection, n: int) -> None:
    sink = PipeSink(writer)
    for i in range(n):
        assert sink.put(json.dumps({"event": "frame", "part_id": i + 1}))
    os.kill(os.getpid(), signal.SIGKILL)  # no flush, no exit handlers: as a crash


def test_records_of_a_killed_worker_are_all_written(tmp_path: Path) -> None:
    """2000 records put by a process that then SIGKILLs itself all appear in the log file, once each."""
    out = tmp_path / "log.jsonl"
    counters = SharedCounters.create(CTX)
    collector = LogCollector(LogOutputs(stream=None, file=out), counters)
    reader, writer = log_pipe(CTX)
    proc = CTX.Process(target=_write_then_die, args=(writer, 2000))
    proc.start()
    writer.close()
    collector.add(reader, Role.INFER)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    collector.close()
    ids = [json.loads(line)["part_id"] for line in out.read_text().splitlines()]
    assert ids == list(range(1, 2001))
    assert counters.get(Count.LOG_WRITE_FAILED_INFER) == 0


def test_full_pipe_drops_and_counts_without_blocking() -> None:
    """Nobody reading: puts fail fast once the pipe is full, and each one is counted."""
    reader, writer = log_pipe(CTX)
    sink = PipeSink(writer)
    t0 = time.monotonic()
    results = [sink.put("x" * 1000) for _ in range(3000)]  # ~3 MB into a pipe of at most 1 MiB
    elapsed = time.monotonic() - t0
    assert results.count(False) == sink.dropped_full > 0
    assert sink.enqueued + sink.dropped_full == 3000
    assert elapsed < 5  # generous: it must return at all
    sink.close()
    reader.close()


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
