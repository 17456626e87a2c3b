"""structlog JSON records, written by a background thread so the frame loop never waits on I/O.

Records are rendered in the calling thread (cheap, bounded) and queued; a writer thread drains the
queue to stdout (journald) and, optionally, a file opened with O_APPEND so several processes can
share it line by line. A full queue or a failing sink drops records and counts them; nothing ever
blocks the caller.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import structlog

REOPEN_INTERVAL_NS = 5_000_000_000
"""A log file that cannot be opened is tried again this often."""
REPORT_INTERVAL_NS = 5_000_000_000
"""Lost records are reported on the other sink at most this often."""

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class LineSink:
    """A bounded queue of rendered lines and the thread that writes them out."""

    def __init__(self, *, stream: TextIO | None, file: Path | None, capacity: int) -> None:
        self._lines: deque[str] = deque()
        self._capacity = capacity
        self._wake = threading.Condition(threading.Lock())
        self._closed = False
        self.enqueued = 0
        self.dropped_full = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self.next_report_ns = 0  # when the owner next publishes these totals (see WorkerContext)
        self._stream_fd = stream.fileno() if stream is not None else None
        self._file = file
        self._file_fd: int | None = None
        self._next_open_ns = 0
        self._next_report_ns = 0
        self._unreported = 0
        self._open_file()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def _open_file(self) -> None:
        """Open the log file; on failure remember why and retry later (never raises)."""
        if self._file is None or self._file_fd is not None:
            return
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            self._file_fd = os.open(self._file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            self.last_error = f"{self._file}: {exc.strerror or exc}"
            self._next_open_ns = time.monotonic_ns() + REOPEN_INTERVAL_NS

    def put(self, line: str) -> bool:
        """Queue one line; False (and counted) when the queue is full."""
        if len(self._lines) >= self._capacity:
            self.dropped_full += 1
            return False
        self._lines.append(line)
        self.enqueued += 1
        if len(self._lines) == 1:
            with self._wake:
                self._wake.notify()
        return True

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._lines and not self._closed:
                    self._wake.wait(0.2)
                if not self._lines and self._closed:
                    return
            batch: list[str] = []
            while self._lines and len(batch) < 512:
                batch.append(self._lines.popleft())
            data = ("\n".join(batch) + "\n").encode()
            ok = True
            if self._stream_fd is not None:
                ok = self._write_all(self._stream_fd, data)
            if self._file is not None:
                if self._file_fd is None and time.monotonic_ns() >= self._next_open_ns:
                    self._open_file()
                ok = (self._file_fd is not None and self._write_all(self._file_fd, data)) and ok
            if not ok:
                self.write_errors += len(batch)
                self._unreported += len(batch)
                self._report_failure()

    def _write_all(self, fd: int, data: bytes) -> bool:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            self.last_error = f"{self._file if fd == self._file_fd else f'fd {fd}'}: {exc.strerror or exc}"
            return False
        return True

    def _report_failure(self) -> None:
        """Say on the other sink (at most every few seconds) that records are being lost."""
        now = time.monotonic_ns()
        if now < self._next_report_ns:
            return
        self._next_report_ns = now + REPORT_INTERVAL_NS
        line = json.dumps(
            {
                "event": "log_write_failed",
                "level": "error",
                "records_lost": self._unreported,
                "records_lost_total": self.write_errors,
                "error": self.last_error,
                "hint": "check the log file's directory, permissions and free space (df -h)",
            }
        )
        self._unreported = 0
        for fd in (self._stream_fd, self._file_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.write(fd, (line + "\n").encode())

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush what is queued (up to *timeout_s*) and stop the writer."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout_s)
        if self._file_fd is not None:
            os.close(self._file_fd)
            self._file_fd = None


class _QueuedLogger:
    """structlog logger whose every method queues the rendered line."""

    def __init__(self, sink: LineSink) -> None:
        self._put = sink.put

    def msg(self, message: str) -> None:
        self._put(message)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


_sink: LineSink | None = None


def configure_logging(
    *,
    level: str = "info",
    file: Path | None = None,
    stream: TextIO | None = sys.stdout,
    capacity: int = 65_536,
    static: dict[str, Any] | None = None,
) -> LineSink:
    """Set up structlog for this process (once, at start); returns the sink for its counters."""
    global _sink
    if _sink is not None:
        _sink.close()
    sink = LineSink(stream=stream, file=file, capacity=capacity)
    _sink = sink
    processors: list[Callable[..., Any]] = [structlog.processors.add_log_level]
    if static:
        fields = dict(static)

        def add_static(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
            for k, v in fields.items():
                event.setdefault(k, v)
            return event

        processors.append(add_static)
    processors += [
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(sort_keys=False),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=lambda *_: _QueuedLogger(sink),
        cache_logger_on_first_use=True,
    )
    return sink


def get_logger(**bind: Any) -> Any:
    """A structlog logger bound to *bind* (call after :func:`configure_logging`)."""
    return structlog.get_logger(**bind)


def shutdown_logging(timeout_s: float = 5.0) -> None:
    global _sink
    if _sink is not None:
        _sink.close(timeout_s)
        _sink = None
