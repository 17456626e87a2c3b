"""The producer's usual frame, reserved and copied into the ring in one compiled call (numba).

Why: after a frame period asleep, each Python step of reserving a slot (lock, sequence number,
slot scan, header, unlock) and copying the frame costs tens of microseconds on a shared machine
(``tests/bench/bench_cold.py``: reserve 2.4 us hot, 26-32 us cold). One compiled call does the same
work with far less code to bring back into the caches.

It does only the usual case: the ring's lock free at once, a FREE slot, a whole frame of
C-contiguous pixels. Otherwise it changes nothing and says so, and the caller takes the Python path
(:meth:`RingProducer.reserve`: waits for the lock, journals a frame the full ring cannot take,
marks defects). What it writes is, byte for byte, what ``reserve`` followed by a copy writes
(``tests/ring/test_compiled_write.py``).

It calls libc's ``sem_trywait``, ``sem_post`` and ``memcpy`` through ctypes, whose addresses differ
from process to process: it is compiled in each process that writes frames (about 0.2 s, at the
producer's creation), never cached on disk, where another process would jump to stale addresses.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.ring.layout import CONTROL, FRAME_HEADER, SlotState, field_offset

_libc = ctypes.CDLL(None)  # its own handle: argtypes set here do not touch linegate.ring.sync's
_trywait = _libc.sem_trywait
_trywait.argtypes, _trywait.restype = [ctypes.c_void_p], ctypes.c_int
_post = _libc.sem_post
_post.argtypes, _post.restype = [ctypes.c_void_p], ctypes.c_int
_memcpy = _libc.memcpy
_memcpy.argtypes, _memcpy.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t], ctypes.c_void_p

LOCK_BUSY = -1
"""The lock was held: nothing written."""
NO_FREE_SLOT = -2
"""No FREE slot: nothing written (the Python path journals the frame or overwrites the oldest)."""

_WORD = 8
assert FRAME_HEADER.itemsize % _WORD == 0
# The header as 64-bit words (little-endian): a word holding two u4 fields has the first in its low half.
_H = {name: field_offset(FRAME_HEADER, name) for name in FRAME_HEADER.names or ()}
assert _H["state"] == 0 and _H["reason"] == 4 and _H["height"] % _WORD == 0 and _H["channels"] % _WORD == 0
assert _H["defect"] % _WORD == 0 and _H["payload_bytes"] % _WORD == 0
_SEQ, _FRAME_ID, _PART_ID = _H["seq"] // _WORD, _H["frame_id"] // _WORD, _H["part_id"] // _WORD
_T_ACQUIRED, _T_WRITTEN = _H["t_acquired_ns"] // _WORD, _H["t_written_ns"] // _WORD
_HEIGHT_WIDTH, _CHANNELS_FORMAT = _H["height"] // _WORD, _H["channels"] // _WORD
_DEFECT, _PAYLOAD = _H["defect"] // _WORD, _H["payload_bytes"] // _WORD
_NEXT_SEQ = field_offset(CONTROL, "next_seq") // _WORD
_LAST_PART_ID = field_offset(CONTROL, "last_part_id") // _WORD
_FREE, _WRITING = int(SlotState.FREE), int(SlotState.WRITING)

_COMPILED: list[Any] = []


def _reserve_and_copy(
    lock: int, owner: Any, pid: int, words: Any, header_words: Any, dims: Any,
    frame_id: int, part_id: int, t_acquired_ns: int, pixels: Any, slots_address: int, slot_stride: int,
) -> int:  # fmt: skip
    """Compiled body. *owner*: the lock's holder word (int64[1]), *pid* written there while held, as
    :class:`~linegate.ring.sync.SharedLock` does; *words*: the mapping as uint64; *header_words*:
    each slot header's first word in it (the slot's state in its low half); *dims*: the
    height|width and channels|format words. Returns the slot, or LOCK_BUSY / NO_FREE_SLOT having
    written nothing."""
    # Every value as uint64: numba turns arithmetic or comparisons mixing signed and unsigned
    # 64-bit integers into float64, which would round part ids and sequence numbers above 2**53.
    zero, one, low_half = np.uint64(0), np.uint64(1), np.uint64(0xFFFFFFFF)
    if _trywait(lock) != 0:
        return LOCK_BUSY
    owner[0] = pid
    slot = -1
    for i in range(header_words.size):
        if (words[header_words[i]] & low_half) == np.uint64(_FREE):
            slot = i
            break
    if slot < 0:
        owner[0] = 0
        _post(lock)
        return NO_FREE_SLOT
    seq = words[_NEXT_SEQ]
    words[_NEXT_SEQ] = seq + one
    part = np.uint64(part_id)
    if part > words[_LAST_PART_ID]:
        words[_LAST_PART_ID] = part
    h = header_words[slot]
    words[h] = np.uint64(_WRITING)  # reason 0 in the high half
    words[h + _SEQ] = seq
    words[h + _FRAME_ID] = np.uint64(frame_id)
    words[h + _PART_ID] = part
    words[h + _T_ACQUIRED] = np.uint64(t_acquired_ns)
    words[h + _T_WRITTEN] = zero
    words[h + _HEIGHT_WIDTH] = dims[0]
    words[h + _CHANNELS_FORMAT] = dims[1]
    words[h + _DEFECT] = zero  # no defect, and the padding after it
    words[h + _PAYLOAD] = zero
    owner[0] = 0
    _post(lock)
    _memcpy(slots_address + slot * slot_stride, pixels.ctypes.data, pixels.size)
    return slot


def compiled() -> Any:
    """The compiled function (compiled in this process on first call)."""
    if not _COMPILED:
        import numba  # imported here: only processes that write frames need it

        _COMPILED.append(numba.njit(nogil=True, boundscheck=False)(_reserve_and_copy))
    return _COMPILED[0]


class CompiledWriter:
    """One producer's view of its ring for :func:`_reserve_and_copy`; ``close`` before the mapping's."""

    def __init__(self, buf: memoryview, lock_address: int, owner_address: int, header_offsets: list[int],
                 slots_address: int, slot_stride: int, dims: tuple[int, int, int],
                 pixel_format: int) -> None:  # fmt: skip
        self._fn = compiled()
        self._lock = lock_address
        owner = (ctypes.c_int64 * 1).from_address(owner_address)
        self._owner: npt.NDArray[np.int64] | None = np.ctypeslib.as_array(owner)
        self._pid = os.getpid()
        self._words: npt.NDArray[np.uint64] | None = np.ndarray((len(buf) // _WORD,), np.uint64, buffer=buf)
        self._header_words = np.array([off // _WORD for off in header_offsets], np.int64)
        h, w, c = dims
        self._dims = np.array([h | (w << 32), c | (pixel_format << 32)], np.uint64)
        self._slots_address = slots_address
        self._slot_stride = slot_stride
        self.shape = (h, w, c) if c > 1 else (h, w)
        # Compiled now, not at the first frame, for the argument types of a real frame: with no
        # slots to scan the call only takes and gives back the lock, and writes nothing.
        # Both a writable frame and a read-only one (a camera's buffer): numba types them apart.
        no_slots, one_pixel = np.zeros(0, np.int64), np.zeros((1,) * len(self.shape), np.uint8)
        self._fn(lock_address, self._owner, self._pid, self._words, no_slots, self._dims, 0, 0, 0, one_pixel, 0, 0)
        one_pixel.setflags(write=False)
        self._fn(lock_address, self._owner, self._pid, self._words, no_slots, self._dims, 0, 0, 0, one_pixel, 0, 0)

    def write(self, frame_id: int, part_id: int, t_acquired_ns: int, pixels: Any) -> int:
        """Reserve a slot and copy *pixels* (C-contiguous uint8 of :attr:`shape`) into it: the slot,
        or LOCK_BUSY / NO_FREE_SLOT with nothing written."""
        fn, words, headers = self._fn, self._words, self._header_words
        slot = fn(self._lock, self._owner, self._pid, words, headers, self._dims, frame_id, part_id, t_acquired_ns,
                  pixels, self._slots_address, self._slot_stride)  # fmt: skip
        return int(slot)

    def close(self) -> None:
        self._words = None
        self._owner = None
