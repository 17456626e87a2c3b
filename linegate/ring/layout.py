"""Byte layout of the shared-memory frame ring (pure: offsets and dtypes, no I/O).

One segment holds, in order: a control block, the slot headers, the drop journal and the pixel
slots. Pixel slots start on page boundaries so a slot can be registered as pinned memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

PAGE = 4096
MAGIC = 0x4C47_5249_4E47_0003  # "LGRING" + layout version 3


class SlotState(IntEnum):
    """Life cycle of a slot: FREE -> WRITING -> READY -> CLAIMED -> FREE."""

    FREE = 0
    WRITING = 1
    READY = 2
    CLAIMED = 3


class DropReason(IntEnum):
    """Why a frame went to the drop journal instead of to inference."""

    RING_FULL = 1
    OVERWRITTEN = 2
    PRODUCER_DIED = 3  # the acquisition worker died while writing the frame
    LOCK_TIMEOUT = 4  # the state lock was held too long (its holder stalled or died)


PIXEL_FORMAT_CODES: dict[str, int] = {"Mono8": 1, "RGB8": 2, "BGR8": 3, "RGBa8": 4, "BGRa8": 5}
PIXEL_FORMAT_NAMES: dict[int, str] = {code: name for name, code in PIXEL_FORMAT_CODES.items()}

FRAME_HEADER = np.dtype(
    [
        ("state", "<u4"),
        ("reason", "<u4"),
        ("seq", "<u8"),
        ("frame_id", "<u8"),
        ("part_id", "<u8"),
        ("t_acquired_ns", "<i8"),
        ("t_written_ns", "<i8"),
        ("height", "<u4"),
        ("width", "<u4"),
        ("channels", "<u4"),
        ("pixel_format", "<u4"),
        ("defect", "<u4"),  # 0: a whole frame; else linegate.camera.defects.DefectKind (pixels not written)
        ("payload_bytes", "<i8"),  # with a defect: the image bytes the camera delivered (-1: unknown)
    ],
    align=True,
)
"""Header of one slot, and of one drop-journal entry (``state`` unused there)."""

CONTROL = np.dtype(
    [
        ("magic", "<u8"),
        ("slots", "<u8"),
        ("slot_bytes", "<u8"),
        ("journal_size", "<u8"),
        ("journal_written", "<u8"),
        ("journal_read", "<u8"),
        ("journal_overflow", "<u8"),
        ("next_seq", "<u8"),
        ("last_part_id", "<u8"),  # highest part id that entered the ring (slot or journal)
    ],
    align=True,
)


def field_offset(dtype: np.dtype[np.void], name: str) -> int:
    """Byte offset of field *name* in the structured *dtype*."""
    fields = dtype.fields
    assert fields is not None, dtype
    return int(fields[name][1])


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class RingLayout:
    """Offsets of every region for a ring of *slots* slots of *frame_bytes* pixels each."""

    slots: int
    frame_bytes: int
    journal_size: int

    @property
    def slot_stride(self) -> int:
        return _round_up(self.frame_bytes, PAGE)

    @property
    def headers_offset(self) -> int:
        return _round_up(CONTROL.itemsize, 64)

    @property
    def journal_offset(self) -> int:
        return _round_up(self.headers_offset + self.slots * FRAME_HEADER.itemsize, 64)

    @property
    def pixels_offset(self) -> int:
        return _round_up(self.journal_offset + self.journal_size * FRAME_HEADER.itemsize, PAGE)

    @property
    def total_bytes(self) -> int:
        return self.pixels_offset + self.slots * self.slot_stride

    def slot_offset(self, slot: int) -> int:
        return self.pixels_offset + slot * self.slot_stride
