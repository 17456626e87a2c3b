"""Shared-memory frame ring between one producer process and one consumer process.

Slots carry a state word (FREE, WRITING, READY, CLAIMED). State changes happen under one
cross-process lock held for microseconds; pixels are written and read outside it. The producer
never waits on the consumer: it takes the lock with a short timeout and, when no slot is free,
applies the ``when_full`` policy and records the dropped frame's header in a journal that the
consumer drains, so every acquired frame still gets a verdict. A semaphore counts pending items
and wakes the consumer (one wake-up per frame).

The segment is anonymous shared memory (a memfd named after the instance, seen in
``/proc/PID/maps`` as ``/memfd:linegate-<instance>-ring``), and the lock and semaphore are unnamed
(:mod:`linegate.ring.sync`): workers get them as file descriptors when they are spawned, and the
kernel frees them with the last process that maps them. So nothing is left in /dev/shm even when
every process is SIGKILLed at once (systemd's watchdog, KillMode=mixed). Versions before this one
kept the ring in a file, ``/dev/shm/linegate-<instance>-ring``; :meth:`FrameRing.create` removes one
that a killed run of such a version left behind (the caller holds the instance lock, see
:mod:`linegate.service.instance_lock`, so it can never be a live ring).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from multiprocessing.reduction import DupFd
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from linegate.errors import RingClosed
from linegate.ring.compiled_write import CompiledWriter
from linegate.ring.layout import (
    CONTROL,
    FRAME_HEADER,
    MAGIC,
    PIXEL_FORMAT_CODES,
    DropReason,
    RingLayout,
    SlotState,
    field_offset,
)
from linegate.ring.sync import SharedLock, SharedSemaphore, free_abandoned

SHM_DIR = "/dev/shm"
LOCK_TIMEOUT_S = 0.002
"""Longest the producer waits for the state lock; the consumer holds it for microseconds, so a
timeout means the consumer died inside its critical section."""

WhenFull = Literal["drop_newest", "drop_oldest"]

_HEADER = struct.Struct("<IIQQQqqIIIII4xq")
"""FRAME_HEADER as a struct: one pack or unpack per header on the per-frame path, where numpy's
structured-array access cost tens of microseconds per call on a cold cache."""
assert _HEADER.size == FRAME_HEADER.itemsize
_SEQ_OFFSET = field_offset(FRAME_HEADER, "seq")
_T_ACQUIRED_OFFSET = field_offset(FRAME_HEADER, "t_acquired_ns")
_U32, _U64 = 4, 8


def ring_path(instance: str) -> str:
    """The name of *instance*'s frame ring: the file older versions kept it in (removed by
    :meth:`FrameRing.create` if a killed run left one), and the memfd's name now."""
    return os.path.join(SHM_DIR, f"linegate-{instance}-ring")


@dataclass(frozen=True)
class RingGeometry:
    """Shape and pixel format of every frame in the ring."""

    height: int
    width: int
    channels: int
    pixel_format: str

    @property
    def frame_bytes(self) -> int:
        return self.height * self.width * self.channels

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width) if self.channels == 1 else (self.height, self.width, self.channels)


@dataclass(frozen=True)
class RingHandle:
    """Everything a worker process needs to open the ring; passed once at process start (the
    segment travels as a file descriptor, so only to a process being spawned)."""

    path: str  # the ring's name, for messages (see ring_path)
    fd: int  # the segment, open in this process
    layout: RingLayout
    geometry: RingGeometry
    when_full: WhenFull
    lock: SharedLock
    ready: SharedSemaphore

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_handle, (self.path, DupFd(self.fd), self.layout, self.geometry, self.when_full,
                                  self.lock, self.ready))  # fmt: skip


def _rebuild_handle(
    path: str, fd: Any, layout: RingLayout, geometry: RingGeometry, when_full: WhenFull, lock: Any, ready: Any
) -> RingHandle:
    return RingHandle(path, fd.detach(), layout, geometry, when_full, lock, ready)


def anonymous_segment(name: str, size: int) -> int:
    """A file descriptor of *size* bytes of shared memory that has no name in any file system (the
    frame ring's segment, and the reject image archive's queue)."""
    try:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # no memfd (old kernel, seccomp): a /dev/shm file unlinked at once
        path = os.path.join(SHM_DIR, f"{name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.unlink(path)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass(frozen=True)
class FrameMeta:
    """Header fields of one frame, as copied out of a slot or the drop journal."""

    seq: int
    frame_id: int
    part_id: int
    t_acquired_ns: int
    t_written_ns: int
    reason: int = 0
    defect: int = 0  # 0: a whole frame; else the camera's DefectKind (the pixels were not written)
    payload_bytes: int = 0  # with a defect: the image bytes the camera delivered (-1: unknown)
    camera: int = 0  # which ring (camera) of a RingSet it came from; not stored in the slot


class _Mapping:
    """The mapped segment and numpy views over its regions."""

    def __init__(self, handle: RingHandle, *, create: bool) -> None:
        self.handle = handle
        layout = handle.layout
        if os.fstat(handle.fd).st_size != layout.total_bytes:
            raise RingClosed(f"{handle.path}: size does not match the ring layout")
        self.mm = mmap.mmap(handle.fd, layout.total_bytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        buf = memoryview(self.mm)
        self.buf = buf
        # Word views for the per-frame path: the state word of each slot, the control block's
        # counters and each slot's t_written_ns, read and written as plain integers.
        self.u32 = buf.cast("I")
        self.u64 = buf.cast("Q")
        self.header_offsets = [layout.headers_offset + i * FRAME_HEADER.itemsize for i in range(layout.slots)]
        self.state_index = [off // _U32 for off in self.header_offsets]
        t_written = field_offset(FRAME_HEADER, "t_written_ns")
        self.t_written_index = [(off + t_written) // _U64 for off in self.header_offsets]
        self.control_index = {name: field_offset(CONTROL, name) // _U64 for name in CONTROL.names or ()}
        self.control: npt.NDArray[np.void] = np.ndarray((), dtype=CONTROL, buffer=buf, offset=0)
        self.headers: npt.NDArray[np.void] = np.ndarray(
            (layout.slots,), dtype=FRAME_HEADER, buffer=buf, offset=layout.headers_offset
        )
        self.journal: npt.NDArray[np.void] = np.ndarray(
            (layout.journal_size,), dtype=FRAME_HEADER, buffer=buf, offset=layout.journal_offset
        )
        shape = handle.geometry.shape
        self.pixels: list[npt.NDArray[np.uint8]] = [
            np.ndarray(shape, dtype=np.uint8, buffer=buf, offset=layout.slot_offset(i)) for i in range(layout.slots)
        ]
        if create:
            self.control[()] = (MAGIC, layout.slots, layout.slot_stride, layout.journal_size, 0, 0, 0, 0, 0)
        elif int(self.control["magic"]) != MAGIC:
            raise RingClosed(f"{handle.path}: not a linegate frame ring (bad magic)")

    def close(self) -> None:
        # Views must go before the mmap can close.
        del self.control, self.headers, self.journal
        self.pixels.clear()
        for view in (self.u32, self.u64, self.buf):
            view.release()
        with contextlib.suppress(BufferError):  # a caller still holds a view; the OS unmaps at exit
            self.mm.close()

    def slot_address(self, slot: int) -> int:
        """Virtual address of a slot's pixels in this process (for pinned-memory registration)."""
        return int(self.pixels[slot].__array_interface__["data"][0])


class FrameRing:
    """Owner of the segment: creates it (removing a file an older version's killed run left), and
    closes it; the memory goes when the last process mapping it closes or dies."""

    def __init__(self, handle: RingHandle, mapping: _Mapping, removed_stale: bool) -> None:
        self.handle = handle
        self._mapping = mapping
        self.removed_stale = removed_stale

    @classmethod
    def create(
        cls,
        ctx: BaseContext,
        *,
        instance: str,
        geometry: RingGeometry,
        slots: int,
        journal_size: int,
        when_full: WhenFull,
        path: str | None = None,
        ready: SharedSemaphore | None = None,
    ) -> FrameRing:
        """*ctx* is not used any more (the lock and semaphore are :mod:`linegate.ring.sync`'s); kept
        so callers need not change. The caller must hold *instance*'s lock
        (:mod:`linegate.service.instance_lock`) if the instance may be running elsewhere. *ready*:
        the wake-up semaphore, when several rings share one consumer (:class:`linegate.ring.RingSet`)."""
        del ctx
        path = path or ring_path(instance)
        removed_stale = remove_stale(path)
        layout = RingLayout(slots=slots, frame_bytes=geometry.frame_bytes, journal_size=journal_size)
        fd = anonymous_segment(os.path.basename(path), layout.total_bytes)
        handle = RingHandle(path, fd, layout, geometry, when_full, SharedLock(), ready or SharedSemaphore(0))
        try:
            return cls(handle, _Mapping(handle, create=True), removed_stale)
        except BaseException:
            os.close(fd)
            raise

    def counters(self) -> dict[str, int]:
        c = self._mapping.control
        return {
            "frames_sequenced": int(c["next_seq"]),
            "journal_written": int(c["journal_written"]),
            "journal_read": int(c["journal_read"]),
            "journal_overflow": int(c["journal_overflow"]),
        }

    def recover_lock(self, attempts: int = 5, timeout_s: float = 0.01) -> bool:
        """Free the state lock if a dead worker left it held (:func:`free_abandoned`); True if it
        had to. Call only after a worker died."""
        return free_abandoned(self.handle.lock, attempts, timeout_s)

    def journal_unpublished(self) -> list[FrameMeta]:
        """Frames a dead producer left half-written: journal them (the consumer gives them the
        fail-safe verdict) and free their slots."""
        m = self._mapping
        with self.handle.lock:
            writing = [int(i) for i in np.flatnonzero(m.headers["state"] == SlotState.WRITING)]
            lost = [_meta(m.headers[i].item()) for i in writing]
            for i in writing:
                _journal(m, self.handle.ready, m.headers[i], DropReason.PRODUCER_DIED)
                m.headers[i]["state"] = int(SlotState.FREE)
        return lost

    @property
    def last_part_id(self) -> int:
        """The highest part id that has entered the ring."""
        return int(self._mapping.control["last_part_id"])

    def unresolved(self) -> list[FrameMeta]:
        """Frames still in the ring (any slot not FREE, journal entries not read): after the last
        consumer is gone, these never got a verdict."""
        m = self._mapping
        c = m.control
        in_slots = [_meta(m.headers[int(i)].item()) for i in np.flatnonzero(m.headers["state"] != SlotState.FREE)]
        written, read, size = int(c["journal_written"]), int(c["journal_read"]), int(c["journal_size"])
        journaled = [_meta(m.journal[i % size].item()) for i in range(read, written)]
        return sorted(in_slots + journaled, key=lambda meta: meta.seq)

    def close(self) -> None:
        self._mapping.close()
        with contextlib.suppress(OSError):
            os.close(self.handle.fd)

    def __enter__(self) -> FrameRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove_stale(path: str) -> bool:
    """Remove a ring file left by a killed run of an older version; True if there was one."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


class RingProducer:
    """Acquisition side. ``reserve`` a slot, copy pixels into ``pixels(slot)``, then ``publish``;
    or, for a whole frame, ``reserve_and_copy`` then ``publish``.

    *compiled*: reserve and copy the usual frame in one compiled call (:mod:`linegate.ring.compiled_write`;
    compiled here, about 0.2 s, plus numba's import the first time in a process)."""

    def __init__(self, handle: RingHandle, compiled: bool = True) -> None:
        self._m = _Mapping(handle, create=False)
        self._lock = handle.lock
        self._ready = handle.ready
        self._drop_oldest = handle.when_full == "drop_oldest"
        self._pixel_format = PIXEL_FORMAT_CODES[handle.geometry.pixel_format]
        g = handle.geometry
        self._dims = (g.height, g.width, g.channels)
        self.lock_timeouts = 0
        self._deferred: list[tuple[int, int, int, int, int]] = []
        self._unpublished: list[tuple[int, int]] = []
        self._writer: CompiledWriter | None = None
        self.compiled_fallback: str | None = None
        """Why ``compiled`` was asked for but could not be had (the Python path serves every frame)."""
        if compiled:
            m, layout = self._m, handle.layout
            try:
                self._writer = CompiledWriter(m.buf, self._lock.address, self._lock.owner_address, m.header_offsets,
                                              m.slot_address(0), layout.slot_stride, self._dims,
                                              self._pixel_format)  # fmt: skip
            except Exception as exc:  # numba missing or failing here: slower, still correct
                self.compiled_fallback = f"{type(exc).__name__}: {exc}"

    def reserve_and_copy(self, frame_id: int, part_id: int, t_acquired_ns: int, pixels: Any) -> int | None:
        """The usual frame (lock free, a FREE slot, whole C-contiguous pixels) reserved and copied in
        one compiled call: its slot, then :meth:`publish` it. None: nothing was done; use
        :meth:`reserve`, copy and :meth:`publish` (they wait for the lock, journal a frame the full
        ring cannot take, and catch up on deferred frames first)."""
        writer = self._writer
        if writer is None or self._deferred or self._unpublished:
            return None
        if pixels.shape != writer.shape or pixels.dtype != np.uint8 or not pixels.flags.c_contiguous:
            return None
        slot = writer.write(frame_id, part_id, t_acquired_ns, pixels)
        return slot if slot >= 0 else None

    def pixels(self, slot: int) -> npt.NDArray[np.uint8]:
        return self._m.pixels[slot]

    def reserve(
        self, frame_id: int, part_id: int, t_acquired_ns: int, defect: int = 0, payload_bytes: int = 0
    ) -> tuple[int, int | None]:
        """Give the next frame a sequence number and a slot: ``(seq, slot)``.

        ``slot`` is None when the frame was dropped: it is then in the journal (ring full) or, if
        the lock timed out (its holder stalled or died), deferred: it is journaled at the next
        successful lock, so inference still gives it the fail-safe verdict (``seq`` is -1 then).
        A frame the camera delivered defective carries *defect* and *payload_bytes* in its header
        either way (its pixels are not to be written).
        """
        m = self._m
        if not self._lock.acquire(timeout=LOCK_TIMEOUT_S):
            self.lock_timeouts += 1
            self._deferred.append((frame_id, part_id, t_acquired_ns, defect, payload_bytes))
            return -1, None
        try:
            if self._deferred or self._unpublished:
                self._catch_up()
            seq = self._sequence(part_id)
            record = self._record(SlotState.WRITING, seq, frame_id, part_id, t_acquired_ns, defect, payload_bytes)
            u32 = m.u32
            slot = next((i for i, w in enumerate(m.state_index) if u32[w] == SlotState.FREE), None)
            if slot is None:
                states = m.headers["state"]
                if self._drop_oldest and (ready := np.flatnonzero(states == SlotState.READY)).size:
                    slot = int(ready[np.argmin(m.headers["seq"][ready])])
                    self._journal(m.headers[slot], DropReason.OVERWRITTEN)
                else:
                    self._journal(np.array(record, dtype=FRAME_HEADER), DropReason.RING_FULL)
                    return seq, None
            _HEADER.pack_into(m.buf, m.header_offsets[slot], *record)
            return seq, slot
        finally:
            self._lock.release()

    def _sequence(self, part_id: int) -> int:
        """(Lock held.) The next sequence number, for a frame now entering the ring."""
        m = self._m
        u64, index = m.u64, m.control_index
        seq = u64[index["next_seq"]]
        u64[index["next_seq"]] = seq + 1
        last = index["last_part_id"]
        if part_id > u64[last]:
            u64[last] = part_id
        return seq

    def _record(
        self, state: SlotState, seq: int, frame_id: int, part_id: int, t_acquired_ns: int, defect: int, payload: int
    ) -> tuple[Any, ...]:
        h, w, c = self._dims
        return (int(state), 0, seq, frame_id, part_id, t_acquired_ns, 0, h, w, c, self._pixel_format, defect, payload)

    def _journal(self, header: Any, reason: DropReason) -> None:
        _journal(self._m, self._ready, header, reason)

    def _catch_up(self) -> None:
        """(Lock held.) Publish what could not be published, journal what could not be reserved."""
        for slot, t_written_ns in self._unpublished:
            self._m.headers[slot]["t_written_ns"] = t_written_ns
            self._m.headers[slot]["state"] = int(SlotState.READY)
            self._ready.release()
        self._unpublished.clear()
        for frame_id, part_id, t_acquired_ns, defect, payload in self._deferred:
            seq = self._sequence(part_id)
            record = self._record(SlotState.FREE, seq, frame_id, part_id, t_acquired_ns, defect, payload)
            entry = np.array(record, dtype=FRAME_HEADER)
            self._journal(entry, DropReason.LOCK_TIMEOUT)
        self._deferred.clear()

    def publish(self, slot: int, t_written_ns: int) -> bool:
        """Mark *slot* ready for inference and wake the consumer. False if the lock timed out: the
        slot is then published at the next successful lock."""
        if not self._lock.acquire(timeout=LOCK_TIMEOUT_S):
            self.lock_timeouts += 1
            self._unpublished.append((slot, t_written_ns))
            return False
        try:
            if self._deferred or self._unpublished:
                self._catch_up()
            m = self._m
            m.u64[m.t_written_index[slot]] = t_written_ns
            m.u32[m.state_index[slot]] = SlotState.READY
        finally:
            self._lock.release()
        self._ready.release()
        return True

    @property
    def deferred(self) -> int:
        """Frames waiting for the lock (not yet reserved or not yet published)."""
        return len(self._deferred) + len(self._unpublished)

    def flush(self, timeout_s: float) -> list[tuple[int, int]]:
        """Hand over deferred frames, waiting up to *timeout_s* for the lock; returns
        ``(frame_id, part_id)`` of those that still could not be handed over (the caller reports them)."""
        if not self.deferred:
            return []
        if self._lock.acquire(timeout=timeout_s):
            try:
                self._catch_up()
            finally:
                self._lock.release()
            return []
        lost = [(f, p) for f, p, *_ in self._deferred]
        lost += [
            (int(self._m.headers[s]["frame_id"]), int(self._m.headers[s]["part_id"])) for s, _ in self._unpublished
        ]
        return lost

    def close(self) -> None:
        if self._writer is not None:  # its view of the mapping goes first
            self._writer.close()
        self._m.close()


class RingConsumer:
    """Inference side: ``wait``, drain the journal, ``claim`` the oldest ready frame, ``release`` it."""

    def __init__(self, handle: RingHandle, camera: int = 0) -> None:
        self._m = _Mapping(handle, create=False)
        self._lock = handle.lock
        self._ready = handle.ready
        self.camera = camera
        """Stamped on every FrameMeta this consumer returns."""

    def pixels(self, slot: int) -> npt.NDArray[np.uint8]:
        return self._m.pixels[slot]

    def slot_address(self, slot: int) -> int:
        return self._m.slot_address(slot)

    @property
    def slots(self) -> int:
        return len(self._m.pixels)

    def wait(self, timeout_s: float) -> bool:
        """Block until an item may be pending or *timeout_s* passes; False on timeout."""
        return bool(self._ready.acquire(timeout=timeout_s))

    def wake(self) -> None:
        """Make the consumer's wait return (or its next poll succeed) though nothing new is in the
        ring: for a run that ended on another thread (:mod:`linegate.engine.parallel_runs`)."""
        self._ready.release()

    def poll(self) -> bool:
        """What :meth:`wait` would return at once, without blocking: for a caller that polls."""
        return bool(self._ready.acquire(block=False))

    def claim(self) -> tuple[int, FrameMeta] | None:
        """Take the oldest READY slot (lowest sequence); None if there is none."""
        m = self._m
        u32, buf, offsets = m.u32, m.buf, m.header_offsets
        with self._lock:
            best: tuple[int, int] | None = None  # (seq, slot)
            for slot, word in enumerate(m.state_index):
                if u32[word] == SlotState.READY:
                    seq = m.u64[(offsets[slot] + _SEQ_OFFSET) // _U64]
                    if best is None or seq < best[0]:
                        best = (seq, slot)
            if best is None:
                return None
            slot = best[1]
            u32[m.state_index[slot]] = SlotState.CLAIMED
            fields = _HEADER.unpack_from(buf, offsets[slot])
        return slot, _meta(fields, self.camera)

    def claim_more(self, limit: int) -> list[tuple[int, FrameMeta]]:
        """Take up to *limit* more READY slots, oldest first (a batch after :meth:`claim`).

        The usual answer under no backlog is none: a scan without the lock finds that (a frame
        published meanwhile posts its own wake-up and is claimed at that one)."""
        m = self._m
        if limit < 1 or not any(m.u32[word] == SlotState.READY for word in m.state_index):
            return []
        with self._lock:
            return [_take(m, slot, self.camera) for _seq, slot in _ready_by_seq(m)[:limit]]

    def claim_newest(self, stale_before_ns: int) -> tuple[tuple[int, FrameMeta] | None, list[tuple[int, FrameMeta]]]:
        """Take the newest READY slot, and with it every other READY slot whose frame was acquired
        before *stale_before_ns* (too old to be decided in time): ``(newest or None, stale)``, the
        stale ones oldest first. Frames in between stay READY."""
        m = self._m
        u64, offsets = m.u64, m.header_offsets
        with self._lock:
            ready = _ready_by_seq(m)
            if not ready:
                return None, []
            taken = [ready[-1][1]]
            for _seq, slot in ready[:-1]:
                if u64[(offsets[slot] + _T_ACQUIRED_OFFSET) // _U64] < stale_before_ns:
                    taken.append(slot)
            out = [_take(m, slot, self.camera) for slot in taken]
        return out[0], out[1:]

    def any_ready(self) -> bool:
        """Whether a frame is READY, read without the lock (a hint: it may be claimed or come a moment later)."""
        u32 = self._m.u32
        return any(u32[word] == SlotState.READY for word in self._m.state_index)

    def ready_times(self) -> list[tuple[int, int]]:
        """``(t_acquired_ns, slot)`` of every READY slot, read without the lock (a hint for choosing
        across rings: :meth:`claim_slots` then takes those still READY)."""
        m = self._m
        u32, u64, offsets = m.u32, m.u64, m.header_offsets
        return [
            (u64[(offsets[slot] + _T_ACQUIRED_OFFSET) // _U64], slot)
            for slot, word in enumerate(m.state_index)
            if u32[word] == SlotState.READY
        ]

    def claim_slots(self, slots: list[int]) -> list[tuple[int, FrameMeta]]:
        """Take those of *slots* that are still READY (the producer may have overwritten one
        meanwhile: ``when_full = "drop_oldest"``), in the order given."""
        m = self._m
        u32, index = m.u32, m.state_index
        with self._lock:
            return [_take(m, slot, self.camera) for slot in slots if u32[index[slot]] == SlotState.READY]

    def release(self, slot: int) -> None:
        """Give a claimed slot back to the producer."""
        m = self._m
        with self._lock:
            m.u32[m.state_index[slot]] = SlotState.FREE

    def peek_journal(self) -> FrameMeta | None:
        """The oldest dropped frame not yet taken, left in the journal until :meth:`advance_journal`
        (so a consumer killed in between loses nothing)."""
        m = self._m
        u64, index = m.u64, m.control_index
        # Without the lock first: the usual answer is "nothing", and only this consumer moves
        # journal_read. An entry written meanwhile posted its own wake-up: it is seen at that one.
        if u64[index["journal_read"]] >= u64[index["journal_written"]]:
            return None
        with self._lock:
            written, read = u64[index["journal_written"]], u64[index["journal_read"]]
            if read >= written:
                return None
            return _meta(m.journal[read % u64[index["journal_size"]]].item(), self.camera)

    def advance_journal(self) -> None:
        m = self._m
        with self._lock:
            m.u64[m.control_index["journal_read"]] += 1

    def take_overflow(self) -> int:
        """Dropped frames that did not fit the journal since the last call."""
        m = self._m
        word = m.control_index["journal_overflow"]
        if not m.u64[word]:  # the usual answer, without the lock (as peek_journal)
            return 0
        with self._lock:
            overflow = m.u64[word]
            if overflow:
                m.u64[word] = 0
        return overflow

    def recover_claimed(self) -> list[FrameMeta]:
        """Slots a dead consumer left CLAIMED: their frames were in flight. Frees them."""
        m = self._m
        with self._lock:
            claimed = np.flatnonzero(m.headers["state"] == SlotState.CLAIMED)
            lost = [_meta(m.headers[int(i)].item(), self.camera) for i in claimed]
            for i in claimed:
                m.headers[int(i)]["state"] = int(SlotState.FREE)
        return lost

    def close(self) -> None:
        self._m.close()


def _ready_by_seq(m: _Mapping) -> list[tuple[int, int]]:
    """``(seq, slot)`` of every READY slot, oldest first (the caller holds the lock)."""
    u32, u64, offsets = m.u32, m.u64, m.header_offsets
    return sorted(
        (u64[(offsets[slot] + _SEQ_OFFSET) // _U64], slot)
        for slot, word in enumerate(m.state_index)
        if u32[word] == SlotState.READY
    )


def _take(m: _Mapping, slot: int, camera: int) -> tuple[int, FrameMeta]:
    """Mark READY *slot* CLAIMED and read its frame's header (the caller holds the lock)."""
    m.u32[m.state_index[slot]] = SlotState.CLAIMED
    return slot, _meta(_HEADER.unpack_from(m.buf, m.header_offsets[slot]), camera)


def _journal(m: _Mapping, ready: SharedSemaphore, header: Any, reason: DropReason) -> None:
    """Append a dropped frame's header (lock held); posts one wake-up for the consumer."""
    c = m.control
    written, read, size = int(c["journal_written"]), int(c["journal_read"]), int(c["journal_size"])
    if written - read >= size:
        c["journal_overflow"] = int(c["journal_overflow"]) + 1
        return
    index = written % size
    m.journal[index] = header
    m.journal["reason"][index] = int(reason)
    c["journal_written"] = written + 1
    ready.release()


def _meta(fields: tuple[Any, ...], camera: int = 0) -> FrameMeta:
    _state, reason, seq, frame_id, part_id, t_acq, t_written = fields[:7]
    defect, payload_bytes = fields[11:13]
    return FrameMeta(
        int(seq), int(frame_id), int(part_id), int(t_acq), int(t_written), int(reason), int(defect), int(payload_bytes),
        camera,
    )  # fmt: skip
