"""Frames the camera delivers but that cannot be inspected (pure: no camera, no I/O).

A GenTL producer flags a buffer incomplete when data was lost on the way (GigE Vision: lost packets
that resends did not recover), and a payload can differ from the configured geometry. Such a frame
is not an image of the part: it is never reshaped or inspected. It still gets a part id, travels
through the ring with its defect in the slot header (kind and payload size, so the text can be
rebuilt on the inference side) and gets the fail-safe verdict with basis ``incomplete_frame``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

UNKNOWN_BYTES = -1
"""``payload_bytes`` when the producer interface discarded the buffer before it could be read."""


class DefectKind(IntEnum):
    """Why a delivered frame cannot be inspected; the ring slot's ``defect`` word (0: whole frame)."""

    INCOMPLETE = 1
    """The producer flagged the buffer incomplete (GenTL ``BUFFER_INFO_IS_INCOMPLETE``)."""
    PAYLOAD_SIZE = 2
    """The image data is not width x height x channels bytes."""
    PIXEL_TYPE = 3
    """The image data is not 8 bits a channel."""
    NO_IMAGE = 4
    """The buffer carried no image data, or its information could not be read."""


@dataclass(frozen=True)
class FrameDefect:
    """A frame's defect; ``str()`` is the text its record names."""

    kind: int  # a DefectKind value (an int, so an unknown code read from the ring still describes itself)
    payload_bytes: int
    expected_bytes: int

    def __str__(self) -> str:
        if self.kind == DefectKind.INCOMPLETE:
            if self.payload_bytes == UNKNOWN_BYTES:
                return "incomplete"
            return f"incomplete ({self.payload_bytes} bytes of {self.expected_bytes})"
        if self.kind == DefectKind.PAYLOAD_SIZE:
            return f"payload {self.payload_bytes} bytes, expected {self.expected_bytes}"
        if self.kind == DefectKind.PIXEL_TYPE:
            return f"pixel data not 8-bit ({self.payload_bytes} bytes, expected {self.expected_bytes} of uint8)"
        if self.kind == DefectKind.NO_IMAGE:
            return "no image data"
        return f"defect code {self.kind}"


def check_payload(
    data: npt.NDArray[Any] | None, shape: tuple[int, ...], *, incomplete: bool = False
) -> tuple[npt.NDArray[np.uint8] | None, FrameDefect | None]:
    """The camera's image data as a frame of *shape*, or why it is not one: ``(pixels, None)`` or
    ``(None, defect)``. Never reshapes data of the wrong size (a short payload stays uninspected)."""
    expected = math.prod(shape)
    if incomplete:
        return None, FrameDefect(DefectKind.INCOMPLETE, UNKNOWN_BYTES if data is None else data.nbytes, expected)
    if data is None:
        return None, FrameDefect(DefectKind.NO_IMAGE, 0, expected)
    if data.dtype != np.uint8:
        return None, FrameDefect(DefectKind.PIXEL_TYPE, data.nbytes, expected)
    if data.size != expected:
        return None, FrameDefect(DefectKind.PAYLOAD_SIZE, data.nbytes, expected)
    return data.reshape(shape), None
