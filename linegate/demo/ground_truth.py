"""Ground truth for the demo: where the simulator's ball is, and whether that part must be rejected.

The simulated camera (genicam's ``viky.cti``) draws, in Mono8, a black (0) 20x20 square with no
anti-aliasing on a white (255) field. Its top-left corner moves one pixel per frame in x and in y and
bounces off the frame's edges, so the ball is always wholly visible. For the frame ids of the first
acquisition after the device is opened, the position is a closed form of the id (`viky_top_left`).
A part is a reject when the ball's centre lies in the reject zone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BALL_SIZE = 20
"""The ball's side, in pixels."""
DARK_BELOW = 128
"""A Mono8 pixel darker than this belongs to the ball."""
VIKY_PHASE = (1, 40)
"""Top-left corner = bounce(frame_id + phase) per axis (see `viky_top_left`)."""


@dataclass(frozen=True)
class RejectZone:
    """Half-open rectangle [x0, x1) x [y0, y1) in full-frame pixel coordinates."""

    x0: int
    y0: int
    x1: int
    y1: int

    def contains(self, x: float, y: float) -> bool:
        """Whether the point (x, y) lies in the zone (left and top edges in, right and bottom out)."""
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1


DEMO_ZONE = RejectZone(x0=160, y0=120, x1=480, y1=360)
"""The demo's reject zone on a 640x480 frame: 26.9% of the 28520 frames of one trajectory period."""


def ball_center(frame: npt.NDArray[np.uint8]) -> tuple[float, float] | None:
    """Centre (x, y) of the dark pixels' bounding box of a Mono8 frame; None when no ball is visible."""
    cols = np.flatnonzero(frame.min(axis=0) < DARK_BELOW)
    if cols.size == 0:
        return None
    x_first, x_last = int(cols[0]), int(cols[-1])
    rows = np.flatnonzero(frame[:, x_first : x_last + 1].min(axis=1) < DARK_BELOW)
    # The ball is an axis-aligned square, so its centre is the middle of its bounding box.
    return ((x_first + x_last) / 2.0, (int(rows[0]) + int(rows[-1])) / 2.0)


def expected_reject(frame: npt.NDArray[np.uint8], zone: RejectZone = DEMO_ZONE) -> bool:
    """The verdict a perfect inspection gives this frame: reject when the ball's centre is in *zone*."""
    center = ball_center(frame)
    return center is not None and zone.contains(*center)


def bounce(t: int, span: int) -> int:
    """Triangle wave 0, 1, ..., span, span - 1, ..., 0, 1, ... (period 2 * span) at step *t*."""
    return span - abs(t % (2 * span) - span)


def viky_top_left(frame_id: int, width: int = 640, height: int = 480) -> tuple[int, int]:
    """The ball's top-left corner in the Viky frame *frame_id* (first acquisition after opening the device).

    Measured on genicam 1.6.0 at 640x480 and 400x400: frame ids start at 1 at every acquisition start,
    but the ball keeps moving across a stop/start, so after a restart the ids no longer give the position.
    """
    return (
        bounce(frame_id + VIKY_PHASE[0], width - BALL_SIZE),
        bounce(frame_id + VIKY_PHASE[1], height - BALL_SIZE),
    )


def viky_center(frame_id: int, width: int = 640, height: int = 480) -> tuple[float, float]:
    """The ball's centre in the Viky frame *frame_id* (see `viky_top_left`)."""
    x, y = viky_top_left(frame_id, width, height)
    half = (BALL_SIZE - 1) / 2.0
    return (x + half, y + half)
