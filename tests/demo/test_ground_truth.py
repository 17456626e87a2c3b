"""Ground truth of the demo: the ball's centre from the pixels, and the half-open reject zone."""

from __future__ import annotations

import numpy as np
import pytest

from linegate.demo.ground_truth import BALL_SIZE, DEMO_ZONE, RejectZone, ball_center, expected_reject


def frame_with_ball(x0: int, y0: int) -> np.ndarray:
    frame = np.full((480, 640), 255, dtype=np.uint8)
    frame[y0 : y0 + BALL_SIZE, x0 : x0 + BALL_SIZE] = 0
    return frame


@pytest.mark.parametrize(("x0", "y0"), [(0, 0), (2, 41), (300, 200), (620, 460)])
def test_center_is_the_middle_of_the_square(x0: int, y0: int) -> None:
    """The centre of a 20x20 ball with top-left (x0, y0) is (x0 + 9.5, y0 + 9.5)."""
    assert ball_center(frame_with_ball(x0, y0)) == (x0 + 9.5, y0 + 9.5)


def test_no_ball_no_center_no_reject() -> None:
    """An empty white frame has no ball and is not a reject."""
    empty = np.full((480, 640), 255, dtype=np.uint8)
    assert ball_center(empty) is None
    assert expected_reject(empty) is False


def test_zone_is_half_open() -> None:
    """The zone includes its left/top edges and excludes its right/bottom edges."""
    zone = RejectZone(10, 20, 30, 40)
    assert zone.contains(10, 20) and zone.contains(29.5, 39.5)
    assert not zone.contains(30, 25) and not zone.contains(15, 40) and not zone.contains(9.5, 25)


def test_reject_follows_the_zone_edge_to_the_half_pixel() -> None:
    """Moving the ball by one pixel across the zone's left edge flips the verdict."""
    x_inside = int(DEMO_ZONE.x0 - 9)  # top-left 151: centre 160.5, the first centre inside x0 = 160
    assert expected_reject(frame_with_ball(x_inside, 200)) is True
    assert expected_reject(frame_with_ball(x_inside - 1, 200)) is False
