"""The reject pipe: the bounded hand-off of rejects from the inference loop to the PLC worker.

Each reject is one fixed-size record written with a single ``write`` (atomic below PIPE_BUF).
The writer's end is non-blocking, so a full pipe is an immediate, counted "queue full", never a
wait; there is no feeder thread and no pickling, so the real-time loop never waits on another
thread for the GIL. Capacity is the pipe's buffer, sized from ``plc.queue_size``.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import NamedTuple

RECORD = struct.Struct("<QQqHHHH")  # part_id, seq, t_acquired_ns, basis, class_index, score x 10000, verdict
NO_CLASS = 0xFFFF
"""class_index of a fail-safe reject (no class decided it)."""
PASS, REJECT = 1, 2
"""``verdict`` values (those of the PLC interface's verdict word)."""


class Reject(NamedTuple):
    """One verdict for the PLC as its worker receives it: a reject, or (handshake.results = "all") a pass."""

    part_id: int
    seq: int
    t_acquired_ns: int
    basis: int = 0
    """0: the model decided; otherwise the fail-safe reason (see linegate.plc.interface, word ``basis``)."""
    class_index: int = NO_CLASS
    score: int = 0
    """Score of the deciding class x 10000."""
    verdict: int = REJECT


def reject_channel(ctx: BaseContext) -> tuple[Connection, Connection]:
    """``(reader, writer)`` ends, picklable to worker processes at start."""
    reader, writer = ctx.Pipe(duplex=False)
    return reader, writer


class RejectOutbox:
    """Inference side: ``offer`` never blocks; False means the PLC side is that far behind."""

    def __init__(self, writer: Connection, capacity: int) -> None:
        self._conn = writer  # keeps the descriptor open
        self._fd = writer.fileno()
        os.set_blocking(self._fd, False)
        self.capacity = _size_pipe(self._fd, capacity * RECORD.size) // RECORD.size

    def offer(
        self,
        part_id: int,
        seq: int,
        t_acquired_ns: int,
        basis: int = 0,
        class_index: int = NO_CLASS,
        score: int = 0,
        verdict: int = REJECT,
    ) -> bool:
        try:
            os.write(self._fd, RECORD.pack(part_id, seq, t_acquired_ns, basis, class_index, score, verdict))
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        self._conn.close()


class RejectInbox:
    """PLC side: ``take`` waits up to a timeout for the first reject and returns all that are there."""

    def __init__(self, reader: Connection) -> None:
        self._conn = reader
        self._fd = reader.fileno()
        os.set_blocking(self._fd, False)
        self._partial = b""

    def take(self, timeout_s: float) -> list[Reject]:
        if not self._partial:
            ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout_s))
            if not ready:
                return []
        try:
            data = self._partial + os.read(self._fd, RECORD.size * 1024)
        except BlockingIOError:
            return []
        whole = len(data) - len(data) % RECORD.size
        self._partial = data[whole:]
        return [Reject(*RECORD.unpack_from(data, i)) for i in range(0, whole, RECORD.size)]

    def close(self) -> None:
        self._conn.close()


def _size_pipe(fd: int, nbytes: int) -> int:
    """Ask for at least *nbytes* of pipe buffer (Linux); returns what the pipe holds."""
    setsz = getattr(fcntl, "F_SETPIPE_SZ", 1031)
    getsz = getattr(fcntl, "F_GETPIPE_SZ", 1032)
    try:
        return int(fcntl.fcntl(fd, setsz, max(nbytes, 4096)))
    except OSError:  # above /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE: keep the default
        return int(fcntl.fcntl(fd, getsz))
