"""Whether a delivered payload is a frame: the pure decision, on real numpy buffers."""

from __future__ import annotations

import numpy as np
import pytest

from linegate.camera.defects import UNKNOWN_BYTES, DefectKind, FrameDefect, check_payload
from linegate.camera.frame_ids import FrameIdTracker

MONO = (240, 320)
RGBA = (240, 320, 4)


@pytest.mark.parametrize(
    ("data", "shape", "incomplete", "expected"),
    [
        (np.zeros(1234, np.uint8), MONO, False, "payload 1234 bytes, expected 76800"),
        (np.zeros(76801, np.uint8), MONO, False, "payload 76801 bytes, expected 76800"),
        (np.zeros(0, np.uint8), MONO, False, "payload 0 bytes, expected 76800"),
        (np.zeros(76800, np.uint8), RGBA, False, "payload 76800 bytes, expected 307200"),
        (np.zeros(76800, np.uint16), MONO, False, "pixel data not 8-bit (153600 bytes, expected 76800 of uint8)"),
        (None, MONO, False, "no image data"),
        (np.zeros(76800, np.uint8), MONO, True, "incomplete (76800 bytes of 76800)"),
        (np.zeros(100, np.uint8), MONO, True, "incomplete (100 bytes of 76800)"),
        (None, MONO, True, "incomplete"),
    ],
)
def test_payload_that_is_not_a_whole_frame_is_named_and_never_reshaped(
    data: np.ndarray | None, shape: tuple[int, ...], incomplete: bool, expected: str
) -> None:
    """A short, long, non-8-bit, missing or incomplete payload gives no pixels and a defect naming it."""
    pixels, defect = check_payload(data, shape, incomplete=incomplete)
    assert pixels is None
    assert defect is not None and str(defect) == expected


@pytest.mark.parametrize("shape", [MONO, RGBA, (480, 640)])
def test_whole_payload_becomes_a_shaped_view_of_the_buffer(shape: tuple[int, ...]) -> None:
    """A payload of exactly height x width x channels bytes comes back shaped, without a copy."""
    data = np.arange(int(np.prod(shape)), dtype=np.uint64).astype(np.uint8)
    pixels, defect = check_payload(data, shape)
    assert defect is None and pixels is not None
    assert pixels.shape == shape and np.shares_memory(pixels, data)
    assert np.array_equal(pixels.ravel(), data)


def test_defect_text_survives_its_numbers_alone() -> None:
    """Kind and payload size (what the ring header carries) rebuild the text; an unknown code still reads."""
    _, defect = check_payload(np.zeros(1234, np.uint8), MONO)
    assert defect is not None
    assert str(FrameDefect(int(defect.kind), defect.payload_bytes, 76800)) == "payload 1234 bytes, expected 76800"
    assert str(FrameDefect(DefectKind.INCOMPLETE, UNKNOWN_BYTES, 76800)) == "incomplete"
    assert str(FrameDefect(9, 0, 76800)) == "defect code 9"


def test_frame_without_a_readable_id_takes_the_next_id_and_is_not_counted_lost() -> None:
    """A frame whose id could not be read counts as the next id; before any id it is 0 and changes nothing."""
    tracker = FrameIdTracker()
    assert tracker.observe_unnumbered() == 0 and tracker.last is None
    assert [tracker.observe(i) for i in (7, 8)] == [0, 0]
    assert tracker.observe_unnumbered() == 9
    assert tracker.observe(10) == 0  # the unnumbered frame was 9: no loss
    assert tracker.observe_unnumbered() == 11
    assert tracker.observe(14) == 2  # 12 and 13 never arrived
    assert (tracker.lost, tracker.restarts) == (2, 0)
