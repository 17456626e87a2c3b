"""Shared-memory hand-off of frames to archive: one producer (inference), one consumer (the writer).

Slots are used in FIFO order. The producer takes a unit of the ``free`` semaphore with
``sem_trywait`` (never waits: no unit means the queue is full, the frame is dropped and counted in
shared memory), fills slot ``head % slots`` (pixels and a JSON metadata record), flips the slot's
state word to READY and posts ``ready``. The consumer waits on ``ready``, claims slot
``tail % slots``, and gives it back with ``done`` (state FREE, post ``free``). Neither side takes a
lock; ``sem_post``/``sem_trywait`` are glibc atomics, which also order the pixel writes before the
other side's reads (no unit changes hands before the data it guards is written or read).

The segment is anonymous shared memory and the semaphores are unnamed (see
:mod:`linegate.ring.sync`): the supervisor creates the queue and hands :class:`ArchiveHandle` to
the inference worker as a spawn argument; nothing outlives the processes.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import time
from dataclasses import dataclass
from enum import IntEnum
from multiprocessing.reduction import DupFd
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.ring import RingGeometry
from linegate.ring.frame_ring import anonymous_segment
from linegate.ring.sync import SharedSemaphore

PAGE = 4096
MAGIC = 0x4C47_4152_4348_0001  # "LGARCH" + layout version 1
META_BYTES = 1024
"""Room for one frame's metadata as compact JSON; a longer record is dropped (``dropped_invalid``)."""


class SlotState(IntEnum):
    FREE = 0
    WRITING = 1
    READY = 2
    CLAIMED = 3


CONTROL_FIELDS = (
    "magic",
    "slots",
    "slot_bytes",
    "meta_bytes",
    "head",  # sequence of the next slot the producer fills (only the producer writes it)
    "tail",  # sequence of the next slot the consumer takes (only the consumer writes it)
    "offered",  # producer-side counters from here on
    "accepted",
    "dropped_full",
    "dropped_invalid",
    "recovered",  # slots a dead producer left half-written or unposted
)
CONTROL = np.dtype([(name, "<u8") for name in CONTROL_FIELDS])
_C = {name: i for i, name in enumerate(CONTROL_FIELDS)}
"""Index of each control field in the segment's 64-bit word view (the block starts at offset 0)."""

SLOT = np.dtype(
    [
        ("state", "<u4"),
        ("meta_len", "<u4"),
        ("seq", "<u8"),
        ("wall_ns", "<i8"),  # time.time_ns() at offer: names the archive's day folder
        ("mono_ns", "<i8"),  # time.monotonic_ns() at offer
        ("height", "<u4"),
        ("width", "<u4"),
        ("channels", "<u4"),  # 0: a 2-D (height, width) array
    ],
    align=True,
)
_SLOT = struct.Struct("<IIQqqIII4x")
"""SLOT as a struct: per-frame reads and writes go through it and plain word views, not numpy's
structured access (tens of microseconds on a cold cache, see linegate.ring.frame_ring)."""
assert _SLOT.size == SLOT.itemsize

PRODUCER_COUNTERS = ("offered", "accepted", "dropped_full", "dropped_invalid", "recovered")


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class QueueLayout:
    """Offsets in the segment: control block, slot headers, metadata records, page-aligned pixels."""

    slots: int
    slot_bytes: int
    meta_bytes: int = META_BYTES

    @property
    def headers_offset(self) -> int:
        return _round_up(CONTROL.itemsize, 64)

    @property
    def meta_offset(self) -> int:
        return _round_up(self.headers_offset + self.slots * SLOT.itemsize, 64)

    @property
    def pixels_offset(self) -> int:
        return _round_up(self.meta_offset + self.slots * self.meta_bytes, PAGE)

    @property
    def slot_stride(self) -> int:
        return _round_up(self.slot_bytes, PAGE)

    @property
    def total_bytes(self) -> int:
        return self.pixels_offset + self.slots * self.slot_stride


@dataclass(frozen=True)
class ArchiveHandle:
    """What the inference worker needs to offer frames; a spawn argument (the segment travels as a
    file descriptor, so only to a process being spawned)."""

    name: str
    fd: int
    layout: QueueLayout
    geometry: RingGeometry
    free: SharedSemaphore
    ready: SharedSemaphore

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_handle, (self.name, DupFd(self.fd), self.layout, self.geometry, self.free, self.ready))


def _rebuild_handle(
    name: str, fd: Any, layout: QueueLayout, geometry: RingGeometry, free: Any, ready: Any
) -> ArchiveHandle:
    return ArchiveHandle(name, fd.detach(), layout, geometry, free, ready)


@dataclass(frozen=True)
class ArchiveItem:
    """One claimed frame: ``pixels`` is a view into the slot, valid until ``done(slot)``."""

    slot: int
    seq: int
    wall_ns: int
    mono_ns: int
    pixel_format: str
    pixels: npt.NDArray[np.uint8]
    meta: dict[str, Any]


class _Mapping:
    """The mapped segment, with word views for the per-frame path."""

    def __init__(self, handle: ArchiveHandle, *, create: bool) -> None:
        layout = handle.layout
        if os.fstat(handle.fd).st_size != layout.total_bytes:
            raise ValueError(f"{handle.name}: size does not match the archive queue layout")
        self.layout = layout
        # Populated at map time: the first frames offered do not page-fault slot by slot on the hot path.
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        self.mm = mmap.mmap(handle.fd, layout.total_bytes, flags, mmap.PROT_READ | mmap.PROT_WRITE)
        self.buf = memoryview(self.mm)
        self.u32 = self.buf.cast("I")
        self.u64 = self.buf.cast("Q")
        self.header_offsets = [layout.headers_offset + i * SLOT.itemsize for i in range(layout.slots)]
        self.meta_offsets = [layout.meta_offset + i * layout.meta_bytes for i in range(layout.slots)]
        self.pixel_offsets = [layout.pixels_offset + i * layout.slot_stride for i in range(layout.slots)]
        if create:
            values = (MAGIC, layout.slots, layout.slot_bytes, layout.meta_bytes)
            for i, value in enumerate(values):
                self.u64[i] = value
        elif self.u64[_C["magic"]] != MAGIC:
            raise ValueError(f"{handle.name}: not a linegate archive queue (bad magic)")

    def get(self, field: str) -> int:
        return int(self.u64[_C[field]])

    def put(self, field: str, value: int) -> None:
        self.u64[_C[field]] = value

    def bump(self, field: str) -> None:
        self.u64[_C[field]] += 1

    def state(self, slot: int) -> int:
        return int(self.u32[self.header_offsets[slot] // 4])

    def set_state(self, slot: int, state: SlotState) -> None:
        self.u32[self.header_offsets[slot] // 4] = state

    def header(self, slot: int) -> tuple[int, ...]:
        """``(state, meta_len, seq, wall_ns, mono_ns, height, width, channels)``"""
        return _SLOT.unpack_from(self.buf, self.header_offsets[slot])

    def pixels(self, slot: int, shape: tuple[int, ...]) -> npt.NDArray[np.uint8]:
        view: npt.NDArray[np.uint8] = np.ndarray(
            shape, dtype=np.uint8, buffer=self.buf, offset=self.pixel_offsets[slot]
        )
        return view

    def counters(self) -> dict[str, int]:
        queued = max(self.get("head") - self.get("tail"), 0)
        return {**{name: self.get(name) for name in PRODUCER_COUNTERS}, "queued": queued}

    def close(self) -> None:
        for view in (self.u32, self.u64, self.buf):
            view.release()
        with contextlib.suppress(BufferError):  # a caller still holds a pixel view; the OS unmaps at exit
            self.mm.close()


class ArchiveQueue:
    """Owner (the supervisor): creates the segment and semaphores; ``handle`` goes to the workers."""

    def __init__(self, handle: ArchiveHandle, mapping: _Mapping) -> None:
        self.handle = handle
        self._mapping = mapping

    @classmethod
    def create(
        cls, geometry: RingGeometry, slots: int, *, instance: str = "linegate", meta_bytes: int = META_BYTES
    ) -> ArchiveQueue:
        """A queue of *slots* frames of up to ``geometry.frame_bytes`` pixels each."""
        if slots < 1:
            raise ValueError(f"an archive queue needs at least one slot (got {slots})")
        layout = QueueLayout(slots=slots, slot_bytes=geometry.frame_bytes, meta_bytes=meta_bytes)
        name = f"linegate-{instance}-archive"
        fd = anonymous_segment(name, layout.total_bytes)
        handle = ArchiveHandle(name, fd, layout, geometry, SharedSemaphore(slots), SharedSemaphore(0))
        try:
            return cls(handle, _Mapping(handle, create=True))
        except BaseException:
            os.close(fd)
            raise

    def counters(self) -> dict[str, int]:
        """Producer-side counters (offered, accepted, dropped_full, dropped_invalid, recovered) and
        ``queued`` (frames handed over and not yet taken)."""
        return self._mapping.counters()

    def close(self) -> None:
        self._mapping.close()
        with contextlib.suppress(OSError):
            os.close(self.handle.fd)

    def __enter__(self) -> ArchiveQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    return item() if callable(item) else str(value)


class ArchiveProducer:
    """Inference side: :meth:`offer` copies a frame into a free slot or, when there is none,
    returns False at once (counted as ``dropped_full``). One producer per queue at a time."""

    def __init__(self, handle: ArchiveHandle) -> None:
        self._m = _Mapping(handle, create=False)
        self._free = handle.free
        self._ready = handle.ready
        self._slots = handle.layout.slots
        self._slot_bytes = handle.layout.slot_bytes
        self._meta_bytes = handle.layout.meta_bytes
        self._recover()

    def _recover(self) -> None:
        """Finish what a dead predecessor left at ``head`` (a new producer starts only after the old
        one is gone): a half-written slot is freed, a READY one it did not get to post is posted."""
        m = self._m
        head = m.get("head")
        slot = head % self._slots
        state, _len, seq = m.header(slot)[:3]
        if state == SlotState.WRITING:
            m.set_state(slot, SlotState.FREE)
            self._free.release()
            m.bump("recovered")
        elif state == SlotState.READY and seq == head:
            m.put("head", head + 1)
            self._ready.release()
            m.bump("recovered")

    def offer(self, pixels: npt.NDArray[np.uint8], meta: dict[str, Any]) -> bool:
        """Hand a frame to the archive without waiting; False if it was dropped (queue full, or a
        frame/metadata that does not fit: ``dropped_invalid``). Never raises for those.

        *pixels*: uint8, (height, width) or (height, width, channels), at most the queue's frame
        bytes. *meta* is JSON-encoded (numpy scalars become numbers, anything else unknown a string);
        the store names files by ``meta["part_id"]`` and ``meta["verdict"]``.
        """
        m = self._m
        m.bump("offered")
        if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or pixels.nbytes > self._slot_bytes:
            m.bump("dropped_invalid")
            return False
        if not self._free.acquire(block=False):  # full: dropped before any other work
            m.bump("dropped_full")
            return False
        try:
            record = json.dumps(meta, separators=(",", ":"), default=_json_default).encode()
        except Exception:  # e.g. non-string keys, a circular reference: the frame is dropped, not the loop
            record = b""
        if not record or len(record) > self._meta_bytes:
            self._free.release()
            m.bump("dropped_invalid")
            return False
        head = m.get("head")
        slot = head % self._slots
        if m.state(slot) != SlotState.FREE:  # only if the consumer broke FIFO order
            self._free.release()
            m.bump("dropped_full")
            return False
        height, width = pixels.shape[:2]
        channels = pixels.shape[2] if pixels.ndim == 3 else 0
        _SLOT.pack_into(
            m.buf, m.header_offsets[slot],
            SlotState.WRITING, len(record), head, time.time_ns(), time.monotonic_ns(), height, width, channels,
        )  # fmt: skip
        np.copyto(m.pixels(slot, pixels.shape), pixels, casting="no")
        offset = m.meta_offsets[slot]
        m.buf[offset : offset + len(record)] = record
        m.set_state(slot, SlotState.READY)
        m.put("head", head + 1)
        self._ready.release()  # after head: a producer killed before it is finished off by _recover
        m.bump("accepted")
        return True

    def counters(self) -> dict[str, int]:
        return self._m.counters()

    def close(self) -> None:
        self._m.close()


class ArchiveConsumer:
    """Writer side: :meth:`take` the oldest frame, :meth:`done` it before taking the next."""

    def __init__(self, handle: ArchiveHandle) -> None:
        self._m = _Mapping(handle, create=False)
        self._free = handle.free
        self._ready = handle.ready
        self._slots = handle.layout.slots
        self._pixel_format = handle.geometry.pixel_format
        self._unposted_seen = -1

    def take(self, timeout_s: float) -> ArchiveItem | None:
        """The oldest handed-over frame, waiting up to *timeout_s*; None if none came."""
        if self._ready.acquire(timeout=timeout_s):
            return self._claim()
        # A producer killed between moving head and posting leaves a READY slot nobody posts for.
        # Take it only when seen on two timeouts in a row: one being published now gets its post.
        tail = self._m.get("tail")
        if self._ready_at(tail):
            if self._unposted_seen == tail:
                return self._claim()
            self._unposted_seen = tail
        return None

    def _ready_at(self, tail: int) -> bool:
        state, _len, seq = self._m.header(tail % self._slots)[:3]
        return state == SlotState.READY and seq == tail

    def _claim(self) -> ArchiveItem | None:
        m = self._m
        tail = m.get("tail")
        if not self._ready_at(tail):  # a spare post (after an unposted slot was taken): nothing behind it
            return None
        slot = tail % self._slots
        m.set_state(slot, SlotState.CLAIMED)
        m.put("tail", tail + 1)
        _state, meta_len, seq, wall_ns, mono_ns, height, width, channels = m.header(slot)
        shape = (height, width, channels) if channels else (height, width)
        offset = m.meta_offsets[slot]
        try:
            meta = json.loads(bytes(m.buf[offset : offset + meta_len]))
        except ValueError:
            meta = {}
        if not isinstance(meta, dict):
            meta = {"meta": meta}
        return ArchiveItem(slot, seq, wall_ns, mono_ns, self._pixel_format, m.pixels(slot, shape), meta)

    def done(self, slot: int) -> None:
        """Give the slot of the last taken frame back to the producer (its pixel view is then stale)."""
        self._m.set_state(slot, SlotState.FREE)
        self._free.release()

    def counters(self) -> dict[str, int]:
        """The producer's counters, as :meth:`ArchiveQueue.counters`."""
        return self._m.counters()

    def close(self) -> None:
        self._m.close()
