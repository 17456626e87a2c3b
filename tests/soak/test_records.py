"""Following a run's JSON-lines log while it is written."""

from __future__ import annotations

import json
from pathlib import Path

from linegate.soak.records import LogTail


def _line(**record: object) -> str:
    return json.dumps(record) + "\n"


def test_tail_reads_only_complete_lines_and_keeps_what_matters(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    tail = LogTail(log)
    tail.poll()  # no file yet
    first = _line(event="worker_started", role="infer", proc="infer", pid=21)
    frame = _line(event="frame", proc="infer", pid=21, t_acquired_ns=1_000_000, t_done_ns=4_500_000)
    log.write_text(first + frame[:20])
    tail.poll()
    assert tail.roles == {21: "infer"} and tail.frames == 0
    with log.open("a") as f:
        f.write(frame[20:] + _line(event="linegate_ready", proc="supervisor", pid=20) + "not json\n")
        f.write(_line(event="frame", proc="infer", pid=21, t_acquired_ns=0, t_done_ns=1_000_000))
    tail.poll()
    assert tail.frames == 2 and tail.max_latency_ns == 3_500_000 and tail.ready_seen
    assert tail.roles == {21: "infer", 20: "supervisor"} and tail.summary is None
    with log.open("a") as f:
        f.write(_line(event="linegate_failed", error="boom", proc="supervisor", pid=20))
        f.write(_line(event="run_summary", problems=[], decided=2, proc="supervisor", pid=20))
    tail.poll()
    assert tail.summary is not None and tail.summary["decided"] == 2 and tail.failures == ["boom"]
