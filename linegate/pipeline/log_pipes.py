"""Worker log records travel to the supervisor through pipes, so a worker's death loses none.

A worker writes each rendered record into its own pipe with one non-blocking ``write``: once that
returns, the record is in the kernel and survives the worker being killed the next instant (an
in-process queue would die with it). A full pipe is waited for while the collector makes room: a
burst, such as the fail-safe records of the backlog a restarted inference worker finds, keeps its
records where the kernel would not enlarge the pipe. The waiting is bounded (:class:`WaitBudget`):
at most :data:`STALL_NS` for room for one record (longer: the collector is stuck, and records are
dropped and counted, without waiting, until it has emptied half the pipe), and at most
:data:`WAIT_BUDGET_NS` a second on average (a token bucket: never more than twice that in any
second), so a slow collector costs the loop a bounded share of its
time. The supervisor's collector thread reads every worker's pipe and writes whole lines to
stdout (journald) and the log file, counting per worker the lines it could not write.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import sys
import termios
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

from linegate.counters import SharedCounters
from linegate.logs import LogOutputs
from linegate.roles import ROLES, Role

PIPE_BYTES = 1 << 20
"""Pipe buffer asked for per worker (Linux caps it at /proc/sys/fs/pipe-max-size, 1 MiB by default):
about 15 s of frame records at 100 fps if the collector falls behind."""

STALL_NS = 20_000_000
"""No room for one record after this long: the collector is stuck (it reads a pipe within
microseconds of a write on a healthy machine, milliseconds on a busy one)."""
WAIT_BUDGET_NS = 100_000_000
"""At most this much waiting for room per second, on average (a tenth of the loop's time)."""
WAIT_WINDOW_NS = 1_000_000_000

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


def log_pipe(ctx: BaseContext) -> tuple[Connection, Connection]:
    """``(reader, writer)``; the writer goes to one worker, the reader to the collector. Linux may
    refuse the size (a user past /proc/sys/fs/pipe-user-pages-soft without CAP_SYS_RESOURCE gets
    small pipes): :func:`pipe_bytes` tells, and the worker reports it (``log_pipe_small``)."""
    reader, writer = ctx.Pipe(duplex=False)
    with contextlib.suppress(OSError):
        fcntl.fcntl(writer.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
    return reader, writer


def pipe_bytes(conn: Connection) -> int:
    """What the pipe of *conn* holds, in bytes (0 where the kernel does not say)."""
    try:
        return int(fcntl.fcntl(conn.fileno(), _F_GETPIPE_SZ))
    except OSError:
        return 0


def warn_if_small(sink: PipeSink, log: Any) -> None:
    """Say so when the kernel gave *sink* a smaller pipe than :data:`PIPE_BYTES` (a burst of records
    may then be dropped, counted in the summary's ``log_dropped``)."""
    if 0 < sink.capacity < PIPE_BYTES:
        log.warning("log_pipe_small", bytes=sink.capacity, asked=PIPE_BYTES,
                    hint="raise /proc/sys/fs/pipe-max-size, or pipe-user-pages-soft (or give the service "
                         "CAP_SYS_RESOURCE): the kernel refused the larger pipe")  # fmt: skip


class WaitBudget:
    """How long a sink may still wait for room: a token bucket holding at most
    :data:`WAIT_BUDGET_NS`, refilled at that much per :data:`WAIT_WINDOW_NS` (so never more than
    twice that in any such span); a record waits at most :data:`STALL_NS` besides."""

    def __init__(self, budget_ns: int = WAIT_BUDGET_NS, stall_ns: int = STALL_NS) -> None:
        self.budget_ns = budget_ns
        self.stall_ns = stall_ns
        self._tokens = budget_ns
        self._last = time.monotonic_ns()

    def left(self, now_ns: int) -> int:
        """The waiting allowed now (the bucket refilled up to *now_ns*)."""
        refill = (now_ns - self._last) * self.budget_ns // WAIT_WINDOW_NS
        self._tokens, self._last = min(self.budget_ns, self._tokens + max(0, refill)), now_ns
        return max(0, self._tokens)

    def spend(self, ns: int) -> None:
        self._tokens -= ns


class PipeSink:
    """Worker side: ``put`` writes at once, or waits a bounded time for room; False (counted) when
    the record was dropped (module docstring)."""

    def __init__(self, writer: Connection, budget: WaitBudget | None = None) -> None:
        self._conn = writer
        self._fd = writer.fileno()
        os.set_blocking(self._fd, False)
        self.capacity = pipe_bytes(writer)
        self._budget = budget or WaitBudget()
        self._lock = threading.Lock()
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLOUT)
        self._stuck = False  # no room came within STALL_NS: drop without waiting until half empty
        self._rest = b""  # the tail of a record larger than PIPE_BUF that was written only in part
        self.enqueued = 0
        self.dropped_full = 0
        self.write_errors = 0
        self.waits = 0
        self.next_report_ns = 0
        self._reported = 0  # drops already returned by unreported_drops

    def unreported_drops(self) -> int:
        """Records dropped or not written since the last call (for the shared counters)."""
        total = self.dropped_full + self.write_errors
        new, self._reported = total - self._reported, total
        return new

    def put(self, line: str) -> bool:
        with self._lock:  # the supervisor logs from more than one thread
            return self._put((line + "\n").encode())

    def _put(self, data: bytes) -> bool:
        if self._stuck and not self._half_empty():
            self.dropped_full += 1
            return False
        self._stuck = False
        stall_end = 0
        while True:
            try:
                if self._rest and not self._flush_rest():
                    raise BlockingIOError
                n = os.write(self._fd, data)
                break
            except BlockingIOError:
                now = time.monotonic_ns()
                stall_end = stall_end or now + self._budget.stall_ns
                if not self._wait_for_room(now, stall_end):
                    self.dropped_full += 1
                    return False
            except OSError:  # the supervisor is gone (EPIPE): nobody can write the record any more
                self.write_errors += 1
                return False
        self._rest = data[n:]
        self.enqueued += 1
        return True

    def _wait_for_room(self, now: int, stall_end: int) -> bool:
        """Wait, within the budget and until *stall_end* (this record's limit), until the pipe takes
        a write; False if it did not (at *stall_end*: the collector is stuck)."""
        if now >= stall_end:
            self._stuck = True
            return False
        left = min(self._budget.left(now), stall_end - now)
        if left <= 0:
            return False
        self.waits += 1
        try:
            room = bool(self._poll.poll(max(1, left // 1_000_000)))
        except OSError:
            room = False
        self._budget.spend(time.monotonic_ns() - now)
        if not room and time.monotonic_ns() >= stall_end:
            self._stuck = True
        return room

    def _half_empty(self) -> bool:
        """Whether the collector has read at least half of what the pipe holds."""
        try:
            pending = int.from_bytes(fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)
        except OSError:
            return True
        return pending <= self.capacity // 2

    def _flush_rest(self) -> bool:
        """Write what is left of a record written in part; False while some of it remains (EPIPE
        and other errors raise)."""
        try:
            n = os.write(self._fd, self._rest)
        except BlockingIOError:
            return False
        self._rest = self._rest[n:]
        return not self._rest

    def close(self, timeout_s: float = 5.0) -> None:
        end = time.monotonic() + timeout_s
        with self._lock, contextlib.suppress(OSError):  # the supervisor gone (EPIPE): nothing to flush to
            while self._rest and time.monotonic() < end and not self._flush_rest():
                time.sleep(0.01)
        self._conn.close()


class PipeEnd:
    """What the collector knows of one worker's pipe: whether it has ended (the worker closed it
    or died, and everything it wrote has been read) and the last whole line read from it."""

    def __init__(self) -> None:
        self.ended = threading.Event()
        self.last_line = b""

    def last_words(self, timeout_s: float) -> bytes:
        """Once the pipe has ended (waiting up to *timeout_s*), its last whole line; b"" if it has
        not ended by then."""
        return self.last_line if self.ended.wait(timeout_s) else b""


class LogCollector:
    """Supervisor side: one thread moving whole lines from every worker's pipe to the outputs."""

    def __init__(self, outputs: LogOutputs, counters: SharedCounters) -> None:
        self.outputs = outputs
        self.counters = counters
        self._pipes: dict[int, tuple[Connection, Role, bytearray, PipeEnd]] = {}
        self._failed: dict[Role, int] = {}
        self._received: dict[Role, int] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="log-collector", daemon=True)
        self._thread.start()

    def add(self, reader: Connection, role: Role) -> PipeEnd:
        """Collect from *reader* until its writer (the worker) closes it or dies."""
        end = PipeEnd()
        with self._lock:
            self._pipes[reader.fileno()] = (reader, role, bytearray(), end)
        os.write(self._wake_w, b"x")
        return end

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
        reader, role, rest, end = self._pipes[fd]
        try:
            data = os.read(fd, PIPE_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        ended = not data
        if ended:  # writer closed or died: everything it wrote has been read
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
            if cut:
                end.last_line = data[data.rfind(b"\n", 0, -1) + 1 : -1]
        if data:
            lines = data.count(b"\n")
            # counted here, by the one reader of every pipe: a restarted worker cannot reset it
            self._received[role] = self._received.get(role, 0) + lines
            self.counters.set(ROLES[role].log.queued, self._received[role])
            if not self.outputs.write(data, lines):
                self._failed[role] = self._failed.get(role, 0) + lines
                self.counters.set(ROLES[role].log.write_failed, self._failed[role])
        if ended:
            end.ended.set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is left in every pipe (their writers must be closed), then stop."""
        self._closing = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout_s)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.outputs.close()
