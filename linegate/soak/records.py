"""What a run's JSON-lines log says, read incrementally while the run writes it.

Every record carries ``proc`` (the role) and ``pid``, so the log names each worker process,
restarted ones included; ``frame`` records carry ``t_acquired_ns`` and ``t_done_ns`` (end-to-end
latency); the last record, ``run_summary``, has the final counters and ``problems``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READ_CHUNK = 4 << 20


@dataclass
class LogTail:
    """Follows one log file; call :meth:`poll` now and then, and once more after the run ended."""

    path: Path
    roles: dict[int, str] = field(default_factory=dict)
    """pid -> role ("supervisor", "acquire", "infer", "plc"), from every record seen."""
    ready_seen: bool = False
    """``linegate_ready`` was logged (every worker up, the engine warm)."""
    frames: int = 0
    """``frame`` records read."""
    max_latency_ns: int = 0
    summary: dict[str, Any] | None = None
    """The ``run_summary`` record, once written."""
    failures: list[str] = field(default_factory=list)
    """``error`` of each ``linegate_failed`` record."""
    _offset: int = 0
    _partial: bytes = b""

    def poll(self) -> None:
        """Read what was appended since the last call (a line still being written waits)."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                while chunk := f.read(READ_CHUNK):
                    self._offset += len(chunk)
                    lines = (self._partial + chunk).split(b"\n")
                    self._partial = lines.pop()
                    for line in lines:
                        self._take(line)
        except FileNotFoundError:
            return

    def _take(self, line: bytes) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        pid, role = record.get("pid"), record.get("proc")
        if isinstance(pid, int) and isinstance(role, str):
            self.roles[pid] = role
        event = record.get("event")
        if event == "frame":
            self.frames += 1
            done, acquired = record.get("t_done_ns"), record.get("t_acquired_ns")
            if isinstance(done, int) and isinstance(acquired, int):
                self.max_latency_ns = max(self.max_latency_ns, done - acquired)
        elif event == "linegate_ready":
            self.ready_seen = True
        elif event == "run_summary":
            self.summary = record
        elif event == "linegate_failed":
            self.failures.append(str(record.get("error", "")))
