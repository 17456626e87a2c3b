"""Log records: JSON lines to real files, never blocking, drops counted."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from linegate.logs import LineSink, configure_logging, get_logger, shutdown_logging


def test_records_are_json_lines_with_static_fields(tmp_path: Path) -> None:
    """Each call becomes one JSON line carrying the event, its fields and the static tags."""
    path = tmp_path / "sub" / "frames.jsonl"
    configure_logging(file=path, stream=None, static={"instance": "x", "proc": "test"})
    log = get_logger()
    for i in range(3):
        log.info("frame", seq=i, verdict="pass")
    shutdown_logging()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["seq"] for r in records] == [0, 1, 2]
    assert all(r["event"] == "frame" and r["instance"] == "x" and r["level"] == "info" and "ts" in r for r in records)


def test_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    """When the writer cannot keep up, put() returns at once and the drop is counted."""
    read_fd, write_fd = os.pipe()  # nobody reads: the writer thread blocks on a full pipe
    with os.fdopen(write_fd, "w") as stream:
        sink = LineSink(stream=stream, file=None, capacity=8)
        t0 = time.monotonic()
        results = [sink.put("x" * 4096) for _ in range(200)]
        elapsed = time.monotonic() - t0
        assert results.count(False) == sink.dropped_full > 0
        assert sink.enqueued + sink.dropped_full == 200
        assert elapsed < 5  # generous: what matters is that it returned at all
        os.close(read_fd)  # the writer's next write fails with EPIPE
        sink.put("after the reader is gone")
        end = time.monotonic() + 10
        while sink.write_errors == 0 and time.monotonic() < end:
            time.sleep(0.01)
        sink.close(timeout_s=2)
    assert sink.write_errors > 0 and "Broken pipe" in str(sink.last_error)


def _read_lines(fd: int) -> list[dict[str, object]]:
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def test_unwritable_log_file_keeps_stdout_and_reports_lost_records_by_path(tmp_path: Path) -> None:
    """A log file that cannot be opened costs the file, never the caller: stdout still gets every
    record, the lost ones are counted and a log_write_failed line names the path."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w") as stream:
        sink = LineSink(stream=stream, file=blocker / "x.jsonl", capacity=64)
        assert all(sink.put(json.dumps({"event": "frame", "seq": i})) for i in range(5))
        sink.close(timeout_s=5)
    lines = _read_lines(read_fd)
    os.close(read_fd)
    assert [r["seq"] for r in lines if r["event"] == "frame"] == [0, 1, 2, 3, 4]
    (failure,) = [r for r in lines if r["event"] == "log_write_failed"]
    assert str(blocker) in str(failure["error"]) and failure["records_lost"] == 5
    assert sink.write_errors == 5


def test_disk_full_counts_every_lost_record_without_blocking(tmp_path: Path) -> None:
    """Writes to a full device (/dev/full: ENOSPC) are counted per record; put() never waits."""
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w") as stream:
        sink = LineSink(stream=stream, file=Path("/dev/full"), capacity=100_000)
        t0 = time.monotonic()
        assert all(sink.put(json.dumps({"event": "frame", "seq": i})) for i in range(1000))
        put_s = time.monotonic() - t0
        sink.close(timeout_s=10)
    lines = _read_lines(read_fd)
    os.close(read_fd)
    assert sink.write_errors == 1000 and "No space left" in str(sink.last_error)
    assert sum(r["event"] == "frame" for r in lines) == 1000  # stdout still has them all
    assert any(r["event"] == "log_write_failed" for r in lines)
    assert put_s < 5  # generous: put() only appends to a queue
