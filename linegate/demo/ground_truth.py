"""Ground truth for the demo: where the simulator's ball is, and whether that part must be rejected.

The simulated camera (genicam's ``viky.cti``) draws a black 20x20 square on a white field that
moves one pixel per frame diagonally and bounces off the edges. The ball's centre is the centroid of
the dark pixels, exactly; a part is a reject when that centre lies in the reject zone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BALL_SIZE = 20
DARK_BELOW = 128


@dataclass(frozen=True)
class RejectZone:
    """Half-open rectangle [x0, x1) x [y0, y1) in full-frame pixel coordinates."""

    x0: float
    y0: float
    x1: float
    y1: float

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1


DEMO_ZONE = RejectZone(x0=160.0, y0=120.0, x1=480.0, y1=360.0)
"""The demo's reject zone on a 640x480 frame (about a quarter of the frames are rejects)."""


def ball_center(frame: npt.NDArray[np.uint8]) -> tuple[float, float] | None:
    """Centre (x, y) of the dark pixels of a Mono8 frame, in pixels; None when no ball is visible."""
    dark = frame < DARK_BELOW
    cols = np.flatnonzero(dark.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(dark.any(axis=1))
    # The ball is an axis-aligned square, so its centre is the middle of its bounding box.
    return (float(cols[0] + cols[-1]) / 2.0, float(rows[0] + rows[-1]) / 2.0)


def expected_reject(frame: npt.NDArray[np.uint8], zone: RejectZone = DEMO_ZONE) -> bool:
    """The verdict a perfect inspection gives this frame."""
    center = ball_center(frame)
    return center is not None and zone.contains(*center)
