"""Worker log records travel to the supervisor through pipes, so a worker's death loses none.

A worker writes each rendered record into its own pipe with one non-blocking ``write``: once that
returns, the record is in the kernel and survives the worker being killed the next instant (an
in-process queue would die with it). A full pipe drops the record and counts it; the loop never
waits. The supervisor's collector thread reads every worker's pipe and writes whole lines to
stdout (journald) and the log file, counting per worker the lines it could not write.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext

from linegate.counters import SharedCounters
from linegate.logs import LogOutputs
from linegate.roles import ROLES, Role

PIPE_BYTES = 1 << 20
"""Pipe buffer asked for per worker (Linux caps it at /proc/sys/fs/pipe-max-size, 1 MiB by default):
about 15 s of frame records at 100 fps if the collector falls behind."""


def log_pipe(ctx: BaseContext) -> tuple[Connection, Connection]:
    """``(reader, writer)``; the writer goes to one worker, the reader to the collector."""
    reader, writer = ctx.Pipe(duplex=False)
    with contextlib.suppress(OSError):
        fcntl.fcntl(writer.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    return reader, writer


class PipeSink:
    """Worker side: ``put`` is one non-blocking write; False (counted) when the pipe is full."""

    def __init__(self, writer: Connection) -> None:
        self._conn = writer
        self._fd = writer.fileno()
        os.set_blocking(self._fd, False)
        self._rest = b""  # the tail of a record larger than PIPE_BUF that was written only in part
        self.enqueued = 0
        self.dropped_full = 0
        self.write_errors = 0
        self.next_report_ns = 0

    def put(self, line: str) -> bool:
        if self._rest and not self._flush_rest():
            self.dropped_full += 1
            return False
        data = (line + "\n").encode()
        try:
            n = os.write(self._fd, data)
        except BlockingIOError:
            self.dropped_full += 1
            return False
        except OSError:  # the supervisor is gone (EPIPE): nobody can write the record any more
            self.write_errors += 1
            return False
        self._rest = data[n:]
        self.enqueued += 1
        return True

    def _flush_rest(self) -> bool:
        try:
            n = os.write(self._fd, self._rest)
        except OSError:
            return False
        self._rest = self._rest[n:]
        return not self._rest

    def close(self, timeout_s: float = 5.0) -> None:
        end = time.monotonic() + timeout_s
        while self._rest and time.monotonic() < end and not self._flush_rest():
            time.sleep(0.01)
        self._conn.close()


class LogCollector:
    """Supervisor side: one thread moving whole lines from every worker's pipe to the outputs."""

    def __init__(self, outputs: LogOutputs, counters: SharedCounters) -> None:
        self.outputs = outputs
        self.counters = counters
        self._pipes: dict[int, tuple[Connection, Role, bytearray]] = {}
        self._failed: dict[Role, int] = {}
        self._received: dict[Role, int] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="log-collector", daemon=True)
        self._thread.start()

    def add(self, reader: Connection, role: Role) -> None:
        """Collect from *reader* until its writer (the worker) closes it or dies."""
        with self._lock:
            self._pipes[reader.fileno()] = (reader, role, bytearray())
        os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while True:
            with self._lock:
                fds = list(self._pipes)
                if self._closing and not fds:
                    return
            ready, _, _ = select.select([*fds, self._wake_r], [], [], 0.2)
            for fd in ready:
                if fd == self._wake_r:
                    os.read(self._wake_r, 4096)
                    continue
                self._drain(fd)

    def _drain(self, fd: int) -> None:
        reader, role, rest = self._pipes[fd]
        try:
            data = os.read(fd, PIPE_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # writer closed or died: everything it wrote has been read
            with self._lock:
                del self._pipes[fd]
            reader.close()
            data, rest = bytes(rest), bytearray()
            if data and not data.endswith(b"\n"):
                data += b"\n"  # a record cut short by a crash mid-write: keep what there is
        else:
            rest += data
            cut = rest.rfind(b"\n") + 1
            data = bytes(rest[:cut])
            del rest[:cut]
        if data:
            lines = data.count(b"\n")
            # counted here, by the one reader of every pipe: a restarted worker cannot reset it
            self._received[role] = self._received.get(role, 0) + lines
            self.counters.set(ROLES[role].log.queued, self._received[role])
            if not self.outputs.write(data, lines):
                self._failed[role] = self._failed.get(role, 0) + lines
                self.counters.set(ROLES[role].log.write_failed, self._failed[role])

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is left in every pipe (their writers must be closed), then stop."""
        self._closing = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout_s)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.outputs.close()
