"""structlog JSON records; the caller never waits on log I/O.

Records are rendered in the calling thread (cheap, bounded) and handed to a sink that never
blocks: an in-process queue drained by a writer thread (:class:`LineSink`), or, in the pipeline's
workers, a pipe to the supervisor. The final outputs are stdout (journald) and optionally a file
opened with O_APPEND (:class:`LogOutputs`). A full queue or a failing output drops records and
counts them; nothing ever blocks the caller.
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
from typing import Any, Protocol, TextIO

import structlog

REOPEN_INTERVAL_NS = 5_000_000_000
"""A log file that cannot be opened is tried again this often."""
REPORT_INTERVAL_NS = 5_000_000_000
"""Lost records are reported on the other sink at most this often."""

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class LogOutputs:
    """Where rendered lines end up: a stream (stdout, for journald) and optionally a file opened with
    O_APPEND. A failing output never raises: lost lines are counted, the other output is told (at
    most every few seconds, naming the path), and a file that cannot be opened is retried."""

    def __init__(self, *, stream: TextIO | None, file: Path | None) -> None:
        self.write_errors = 0
        self.last_error: str | None = None
        self._stream_fd = stream.fileno() if stream is not None else None
        self._file = file
        self._file_fd: int | None = None
        self._next_open_ns = 0
        self._next_report_ns = 0
        self._unreported = 0
        self._open_file()

    def _open_file(self) -> None:
        if self._file is None or self._file_fd is not None:
            return
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            self._file_fd = os.open(self._file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            self.last_error = f"{self._file}: {exc.strerror or exc}"
            self._next_open_ns = time.monotonic_ns() + REOPEN_INTERVAL_NS

    def write(self, data: bytes, lines: int) -> bool:
        """Write *data* (*lines* whole lines) to every output; False if any output lost them."""
        ok = True
        if self._stream_fd is not None:
            ok = self._write_all(self._stream_fd, data)
        if self._file is not None:
            if self._file_fd is None and time.monotonic_ns() >= self._next_open_ns:
                self._open_file()
            ok = (self._file_fd is not None and self._write_all(self._file_fd, data)) and ok
        if not ok:
            self.write_errors += lines
            self._unreported += lines
            self._report_failure()
        return ok

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
        """Say on the other output (at most every few seconds) that records are being lost."""
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

    def close(self) -> None:
        if self._file_fd is not None:
            os.close(self._file_fd)
            self._file_fd = None


class LineSink:
    """In-process sink: a bounded queue of rendered lines and a thread writing them to
    :class:`LogOutputs` (for single-process tools; the pipeline's workers use a pipe to the
    supervisor instead, see ``linegate.pipeline.log_pipes``)."""

    def __init__(self, *, stream: TextIO | None, file: Path | None, capacity: int) -> None:
        self._lines: deque[str] = deque()
        self._capacity = capacity
        self._wake = threading.Condition(threading.Lock())
        self._closed = False
        self.enqueued = 0
        self.dropped_full = 0
        self.next_report_ns = 0  # when the owner next publishes these totals
        self._reported = 0  # drops already returned by unreported_drops
        self.outputs = LogOutputs(stream=stream, file=file)
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    @property
    def write_errors(self) -> int:
        return self.outputs.write_errors

    def unreported_drops(self) -> int:
        total = self.dropped_full + self.write_errors
        new, self._reported = total - self._reported, total
        return new

    @property
    def last_error(self) -> str | None:
        return self.outputs.last_error

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
            self.outputs.write(("\n".join(batch) + "\n").encode(), len(batch))

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush what is queued (up to *timeout_s*) and stop the writer."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout_s)
        self.outputs.close()


class Sink(Protocol):
    """Takes one rendered line without ever blocking; False when it had to drop it."""

    next_report_ns: int  # when the owner next publishes the totals below

    @property
    def enqueued(self) -> int: ...

    @property
    def dropped_full(self) -> int: ...

    @property
    def write_errors(self) -> int: ...

    def put(self, line: str) -> bool: ...

    def unreported_drops(self) -> int:
        """Records dropped or not written since the last call (for the shared counters)."""
        ...

    def close(self, timeout_s: float = 5.0) -> None: ...


class _QueuedLogger:
    """structlog logger whose every method queues the rendered line."""

    def __init__(self, sink: Sink) -> None:
        self._put = sink.put

    def msg(self, message: str) -> None:
        self._put(message)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


_sink: Sink | None = None


def configure_logging(
    *,
    level: str = "info",
    file: Path | None = None,
    stream: TextIO | None = sys.stdout,
    capacity: int = 65_536,
    static: dict[str, Any] | None = None,
    sink: Sink | None = None,
) -> Sink:
    """Set up structlog for this process (once, at start); returns the sink for its counters.

    Lines go to *sink* if given, else to an in-process :class:`LineSink` over *stream* and *file*.
    """
    global _sink
    if _sink is not None:
        _sink.close()
    chosen: Sink = sink if sink is not None else LineSink(stream=stream, file=file, capacity=capacity)
    _sink = chosen
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
        logger_factory=lambda *_: _QueuedLogger(chosen),
        cache_logger_on_first_use=True,
    )
    return chosen


def get_logger(**bind: Any) -> Any:
    """A structlog logger bound to *bind* (call after :func:`configure_logging`)."""
    return structlog.get_logger(**bind)


def shutdown_logging(timeout_s: float = 5.0) -> None:
    global _sink
    if _sink is not None:
        _sink.close(timeout_s)
        _sink = None
