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


def test_unwritable_log_file_is_reported_by_path(tmp_path: Path) -> None:
    """A log file that cannot be opened fails at start with the path in the error."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    try:
        LineSink(stream=None, file=blocker / "x.jsonl", capacity=8)
    except OSError as exc:
        assert str(blocker) in str(exc)
    else:
        raise AssertionError("expected an OSError")
