"""Cross-process Lock, Semaphore, Event and error queue that leave nothing behind, even when every
process of the service is SIGKILLed at once.

multiprocessing's own primitives (spawn context) are named POSIX semaphores, ``/dev/shm/sem.mp-*``,
which a child re-opens by name; only the resource tracker unlinks them when the processes are gone.
systemd (KillMode=mixed, watchdog timeout, crash) SIGKILLs the tracker with everything else, so
every hard kill left all of them behind (65 per run). A name cannot be unlinked early either: a
restarted worker re-opens it by name.

Here each primitive is an unnamed, process-shared object in anonymous shared memory: a glibc
``sem_t`` (``sem_init(pshared=1)``) for Lock and Semaphore, a futex word for Event, both in a
``multiprocessing.sharedctypes.RawArray`` (a heap arena whose file is unlinked as it is created and
reaches a spawned child as a file descriptor). The error queue is a pipe. None of them has a name,
so the kernel frees them with the last process that maps them. Like multiprocessing's, they can be
handed to a child only as it is spawned (``Process(args=...)``).

Blocks are never given back while the creating process lives: a freed block could be handed to a
new primitive while a process that outlived the old one's owner still used it. A few hundred bytes
per worker start.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import pickle
import platform
import queue
import struct
import time
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.sharedctypes import RawArray
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)  # glibc: sem_* live in libc (libpthread before 2.34, loaded by Python)

SEM_BYTES = 64
"""Room for one ``sem_t`` (32 bytes on 64-bit glibc, 16 on 32-bit)."""

_KEEP: list[Any] = []
"""Every block this process created (see the module docstring: never reused)."""


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _timespec(ns: int) -> _Timespec:
    return _Timespec(ns // 1_000_000_000, ns % 1_000_000_000)


# Called with ctypes objects only (a c_void_p made once per primitive): no argument conversion, so a
# lock's acquire and release cost about a microsecond each.
_sem_init = _libc.sem_init
_sem_post = _libc.sem_post
_sem_wait = _libc.sem_wait
_sem_trywait = _libc.sem_trywait
_sem_getvalue = _libc.sem_getvalue
try:  # glibc >= 2.30: a deadline on CLOCK_MONOTONIC, immune to wall-clock steps
    _sem_clockwait: Any = _libc.sem_clockwait
except AttributeError:  # pragma: no cover - older glibc
    _sem_clockwait = None
    _sem_timedwait = _libc.sem_timedwait

_MONOTONIC = ctypes.c_int(time.CLOCK_MONOTONIC)

_FUTEX_NR = {"x86_64": 202, "aarch64": 98, "arm64": 98, "riscv64": 98, "armv7l": 240, "armv8l": 240}.get(
    platform.machine()
)
_SYS_FUTEX = None if _FUTEX_NR is None else ctypes.c_long(_FUTEX_NR)
FUTEX_WAIT, FUTEX_WAKE = 0, 1  # without FUTEX_PRIVATE_FLAG: the word is shared between processes
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _block() -> Any:
    """A zeroed, 8-byte aligned block of anonymous shared memory, passed to spawned children."""
    raw = RawArray(ctypes.c_ubyte, SEM_BYTES)
    _KEEP.append(raw)
    return raw


def _raise_errno(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


class _Sem:
    """An unnamed process-shared POSIX semaphore in *raw*."""

    def __init__(self, raw: Any, value: int | None) -> None:
        self._raw = raw
        self._addr = ctypes.c_void_p(ctypes.addressof(raw))
        self._value = ctypes.c_int()
        if value is not None and _sem_init(self._addr, ctypes.c_int(1), ctypes.c_uint(value)) != 0:
            _raise_errno("sem_init")

    @property
    def address(self) -> int:
        """Where the ``sem_t`` is in this process (for compiled code that calls libc on it)."""
        return int(self._addr.value or 0)

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__._attach, (self._raw,))

    @classmethod
    def _attach(cls, raw: Any) -> Any:
        obj = cls.__new__(cls)
        _Sem.__init__(obj, raw, None)
        return obj

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Take one unit; False if *block* is False or *timeout* (seconds) passes first."""
        if _sem_trywait(self._addr) == 0:
            return True
        if not block or (timeout is not None and timeout <= 0):
            return self._try()
        if timeout is None:
            while _sem_wait(self._addr) != 0:
                if ctypes.get_errno() != errno.EINTR:
                    _raise_errno("sem_wait")
            return True
        deadline_ns = time.monotonic_ns() + int(timeout * 1e9)
        while True:
            if _sem_clockwait is not None:
                rc = _sem_clockwait(self._addr, _MONOTONIC, ctypes.byref(_timespec(deadline_ns)))
            else:  # pragma: no cover - older glibc
                left = deadline_ns - time.monotonic_ns()
                rc = _sem_timedwait(self._addr, ctypes.byref(_timespec(time.time_ns() + max(left, 0))))
            if rc == 0:
                return True
            err = ctypes.get_errno()
            if err == errno.ETIMEDOUT:
                return False
            if err != errno.EINTR:  # EINTR: a signal handler ran; wait on to the same deadline
                _raise_errno("sem_clockwait")

    def _try(self) -> bool:
        while _sem_trywait(self._addr) != 0:
            err = ctypes.get_errno()
            if err == errno.EAGAIN:
                return False
            if err != errno.EINTR:
                _raise_errno("sem_trywait")
        return True

    def get_value(self) -> int:
        value = ctypes.c_int()
        if _sem_getvalue(self._addr, ctypes.byref(value)) != 0:
            _raise_errno("sem_getvalue")
        return value.value

    def _held(self) -> bool:
        """(Lock) Whether the value is 0, i.e. someone holds it."""
        if _sem_getvalue(self._addr, ctypes.byref(self._value)) != 0:
            _raise_errno("sem_getvalue")
        return self._value.value < 1

    def _post(self) -> None:
        if _sem_post(self._addr) != 0:
            _raise_errno("sem_post")

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        raise NotImplementedError


OWNER_OFFSET = 48
"""Where a :class:`SharedLock`'s holder's pid is kept in its block (after the ``sem_t``)."""


class SharedLock(_Sem):
    """Non-recursive lock; like multiprocessing's, any process may release it (which is how the
    supervisor frees a lock whose holder was killed). The holder's pid is kept beside it (0 while
    free, and for the instants between taking it and writing the pid, or clearing it and letting
    go), so a lock a dead process left held is told from one a live process holds."""

    def __init__(self) -> None:
        super().__init__(_block(), 1)
        self._owner_word()

    @classmethod
    def _attach(cls, raw: Any) -> Any:
        obj = super()._attach(raw)
        obj._owner_word()
        return obj

    def _owner_word(self) -> None:
        self._owner = ctypes.c_int64.from_address(ctypes.addressof(self._raw) + OWNER_OFFSET)
        self._pid = os.getpid()  # each process attaches its own (spawned children unpickle it)

    @property
    def owner_address(self) -> int:
        """Where the holder's pid is (for compiled code that takes the lock)."""
        return ctypes.addressof(self._owner)

    @property
    def owner(self) -> int:
        """The pid holding the lock, as far as the lock knows (0: free, or not yet written)."""
        return int(self._owner.value)

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        if not super().acquire(block, timeout):
            return False
        self._owner.value = self._pid
        return True

    def release(self) -> None:
        if not self._held():
            raise ValueError("lock released too many times")
        self._owner.value = 0
        self._post()

    def force_release(self) -> None:
        """Let go of it for a holder that died (any process may)."""
        self._owner.value = 0
        self._post()


def _alive(pid: int) -> bool:
    """Whether *pid* runs: a zombie (dead, not yet reaped by its parent) does not."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process: alive
            return True
        return True
    return state not in (b"Z", b"X")


def free_abandoned(lock: SharedLock, attempts: int = 5, timeout_s: float = 0.01) -> bool:
    """Release *lock* if a dead process left it held; True if it had to. Call after a process using
    it died. The holder's pid says it where it was written: a dead holder's lock is freed at once,
    a live holder's never. Otherwise (free, or held for the instant before the pid is written) the
    lock, held for microseconds at a time, is tried several times for *timeout_s*: held throughout
    means its holder died in that instant."""
    owner = lock.owner
    if owner:
        if _alive(owner):
            return False
        lock.force_release()
        return True
    for _ in range(attempts):
        if lock.acquire(timeout=timeout_s):
            lock.release()
            return False
    if lock.owner:  # written meanwhile: a live holder (a dead one writes nothing)
        return False
    lock.force_release()
    return True


class SharedSemaphore(_Sem):
    """Counting semaphore."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(_block(), value)

    def release(self) -> None:
        self._post()


class SharedEvent:
    """Set-once flag with ``set``, ``is_set`` and ``wait(timeout)`` (a futex word: ``wait`` sleeps in
    the kernel and ``set`` wakes every waiter)."""

    def __init__(self, raw: Any = None) -> None:
        self._raw = raw if raw is not None else _block()
        self._word = ctypes.c_int32.from_buffer(self._raw)
        self._ptr = ctypes.c_void_p(ctypes.addressof(self._word))

    def __reduce__(self) -> tuple[Any, ...]:
        return (SharedEvent, (self._raw,))

    def is_set(self) -> bool:
        return self._word.value != 0

    def set(self) -> None:
        self._word.value = 1
        if _SYS_FUTEX is not None:
            _syscall(_SYS_FUTEX, self._ptr, FUTEX_WAKE, 0x7FFFFFFF, None, None, 0)

    def clear(self) -> None:
        self._word.value = 0

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False if *timeout* (seconds) passes first."""
        deadline_ns = None if timeout is None else time.monotonic_ns() + int(max(timeout, 0.0) * 1e9)
        while self._word.value == 0:
            left_ns = None if deadline_ns is None else deadline_ns - time.monotonic_ns()
            if left_ns is not None and left_ns <= 0:
                return False
            if _SYS_FUTEX is None:  # pragma: no cover - an architecture without a known futex number
                time.sleep(0.001 if left_ns is None else min(0.001, left_ns / 1e9))
                continue
            spec = None if left_ns is None else ctypes.byref(_timespec(left_ns))
            # Sleeps only while the word is still 0 (checked atomically by the kernel); returns on a
            # wake-up, a signal, a changed word (EAGAIN) or the (relative, monotonic) timeout.
            _syscall(_SYS_FUTEX, self._ptr, FUTEX_WAIT, 0, spec, None, 0)
        return True


PIPE_BUF = 4096
"""A pipe write up to this size is atomic: messages from several processes never interleave."""


class PipeQueue:
    """Many writers (workers, as they fail), one reader (the supervisor): small picklable messages
    through one pipe. ``put`` never blocks: each message is one atomic write of at most PIPE_BUF
    bytes (longer strings in it are shortened), and is dropped (False) if the pipe is full."""

    def __init__(self, ctx: BaseContext) -> None:
        self._reader: Connection | None
        self._reader, self._writer = ctx.Pipe(duplex=False)
        os.set_blocking(self._writer.fileno(), False)

    def __reduce__(self) -> tuple[Any, ...]:
        return (PipeQueue._writing_end, (self._writer,))  # a child only writes

    @classmethod
    def _writing_end(cls, writer: Connection) -> PipeQueue:
        obj = cls.__new__(cls)
        obj._reader, obj._writer = None, writer
        return obj

    def put(self, item: Any) -> bool:
        data = pickle.dumps(item)
        limit = 1024
        while len(data) > PIPE_BUF - 4 and limit >= 64 and isinstance(item, tuple):
            item = tuple(x[:limit] + "..." if isinstance(x, str) and len(x) > limit else x for x in item)
            data, limit = pickle.dumps(item), limit // 2
        if len(data) > PIPE_BUF - 4:
            return False
        try:
            os.write(self._writer.fileno(), struct.pack("!i", len(data)) + data)  # Connection's framing
        except (BlockingIOError, BrokenPipeError):
            return False
        return True

    def get_nowait(self) -> Any:
        if self._reader is None or not self._reader.poll():
            raise queue.Empty
        return pickle.loads(self._reader.recv_bytes())

    def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()

    def join_thread(self) -> None:
        """Nothing to wait for (no feeder thread); kept so it can stand in for a multiprocessing.Queue."""
