"""Ground truth of the demo: the ball's centre from the pixels, the half-open reject zone, Viky's trajectory."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from linegate.demo.ground_truth import (
    BALL_SIZE,
    DEMO_ZONE,
    RejectZone,
    ball_center,
    bounce,
    expected_reject,
    viky_center,
    viky_top_left,
)

MODEL = Path(__file__).resolve().parents[2] / "engines" / "demo" / "ball_zone.onnx"


def frame_with_ball(x0: int, y0: int, width: int = 640, height: int = 480) -> npt.NDArray[np.uint8]:
    """A frame drawn like Viky's: white Mono8 field, black 20x20 ball with top-left corner (x0, y0)."""
    frame = np.full((height, width), 255, dtype=np.uint8)
    frame[y0 : y0 + BALL_SIZE, x0 : x0 + BALL_SIZE] = 0
    return frame


@pytest.mark.parametrize(("x0", "y0"), [(0, 0), (2, 41), (300, 200), (620, 0), (0, 460), (620, 460)])
def test_center_is_the_middle_of_the_square(x0: int, y0: int) -> None:
    """The centre of a 20x20 ball with top-left (x0, y0) is (x0 + 9.5, y0 + 9.5), frame corners included."""
    assert ball_center(frame_with_ball(x0, y0)) == (x0 + 9.5, y0 + 9.5)


def test_grey_pixels_count_as_ball_only_below_128() -> None:
    """Pixels of 127 and darker are ball, 128 and brighter are background."""
    frame = np.full((480, 640), 255, dtype=np.uint8)
    frame[100:120, 200:220] = 127
    frame[300:310, 10:20] = 128
    assert ball_center(frame) == (209.5, 109.5)


def test_no_ball_no_center_no_reject() -> None:
    """An empty white frame has no ball and is not a reject."""
    empty = np.full((480, 640), 255, dtype=np.uint8)
    assert ball_center(empty) is None
    assert expected_reject(empty) is False


def test_zone_is_half_open() -> None:
    """The zone includes its left/top edges and excludes its right/bottom edges."""
    zone = RejectZone(10, 20, 30, 40)
    assert zone.contains(10, 20) and zone.contains(29.5, 39.5)
    assert not zone.contains(30, 25) and not zone.contains(15, 40)
    assert not zone.contains(9.5, 25) and not zone.contains(15, 19.5)


@pytest.mark.parametrize(
    ("inside", "outside"),
    [
        ((151, 200), (150, 200)),  # left edge x0 = 160: centres 160.5 in, 159.5 out
        ((470, 200), (471, 200)),  # right edge x1 = 480: centres 479.5 in, 480.5 out
        ((300, 111), (300, 110)),  # top edge y0 = 120
        ((300, 350), (300, 351)),  # bottom edge y1 = 360
    ],
)
def test_reject_flips_at_each_demo_zone_edge(inside: tuple[int, int], outside: tuple[int, int]) -> None:
    """Moving the ball by one pixel across any DEMO_ZONE edge flips the verdict."""
    assert expected_reject(frame_with_ball(*inside)) is True
    assert expected_reject(frame_with_ball(*outside)) is False


def test_bounce_is_a_triangle_wave() -> None:
    """bounce(t, 3) runs 0 1 2 3 2 1 0 1 ... with period 6."""
    assert [bounce(t, 3) for t in range(9)] == [0, 1, 2, 3, 2, 1, 0, 1, 2]


def test_viky_closed_form_known_points() -> None:
    """Frame 1 has its ball at (2, 41); x turns at 620 (id 619) and y at 460 (id 420)."""
    assert viky_top_left(1) == (2, 41)
    assert viky_top_left(619)[0] == 620 and viky_top_left(620)[0] == 619
    assert viky_top_left(420)[1] == 460 and viky_top_left(421)[1] == 459
    assert viky_center(1) == (11.5, 50.5)
    assert viky_top_left(1 + 28520) == viky_top_left(1)  # one period: lcm(1240, 920) frames


def test_demo_zone_rejects_a_quarter_of_a_period() -> None:
    """Over one 28520-frame trajectory period 7680 frames (26.9%) are rejects and the verdict changes 112 times."""
    verdicts = [DEMO_ZONE.contains(*viky_center(i)) for i in range(1, 28521)]
    assert sum(verdicts) == 7680
    assert sum(a != b for a, b in pairwise(verdicts)) == 112


def viky_stream(count: int) -> Iterator[tuple[int, npt.NDArray[np.uint8]]]:
    """(frame_id, Mono8 640x480 frame copy) from a freshly opened Viky device "0", through linegate's camera."""
    from linegate.camera.genicam import GenICamCamera
    from linegate.config.schema import CameraSection

    cfg = CameraSection.model_validate(
        {"cti": "builtin:viky", "device": {"serial_number": "0"}, "width": 640, "height": 480,
         "pixel_format": "Mono8", "frame_rate_hz": 200.0}
    )  # fmt: skip
    frames: list[tuple[int, npt.NDArray[np.uint8]]] = []
    with GenICamCamera(cfg) as cam:
        cam.open()
        cam.start()
        while len(frames) < count:
            cam.fetch(lambda f: frames.append((f.frame_id, f.pixels.copy())), timeout_s=2.0)
    yield from frames


def test_real_viky_frames_follow_the_closed_form() -> None:
    """300 streamed Viky frames: a 20x20 black ball on white at viky_center(frame_id), moving 1 px diagonally."""
    frames = list(viky_stream(300))
    assert len(frames) == 300
    ids = [frame_id for frame_id, _ in frames]
    assert ids[0] == 1
    for frame_id, frame in frames:
        assert set(np.unique(frame).tolist()) == {0, 255}
        assert int(np.count_nonzero(frame == 0)) == BALL_SIZE * BALL_SIZE
        assert ball_center(frame) == viky_center(frame_id), f"frame {frame_id}"
    centers = {frame_id: center for frame_id, frame in frames if (center := ball_center(frame)) is not None}
    steps = {
        (round(centers[b][0] - centers[a][0]), round(centers[b][1] - centers[a][1]))
        for a, b in pairwise(ids)
        if b == a + 1
    }
    assert steps and steps <= {(1, 1), (1, -1), (-1, 1), (-1, -1)}


def test_committed_model_matches_ground_truth_along_the_zone_edges() -> None:
    """The committed ball_zone.onnx agrees with expected_reject for every ball centre within 1.5 px of a zone edge."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(MODEL), opts, providers=["CPUExecutionProvider"])
    z = DEMO_ZONE
    # Corner c gives centre c + 9.5: corners edge - 11 .. edge - 8 put the centre at edge -1.5 .. +1.5.
    near_y = [edge + d for edge in (z.y0, z.y1) for d in range(-11, -7)]
    near_x = [edge + d for edge in (z.x0, z.x1) for d in range(-11, -7)]
    positions = {(x, y) for x in range(621) for y in near_y} | {(x, y) for y in range(461) for x in near_x}
    assert len(positions) == 8592
    wrong = []
    for x0, y0 in sorted(positions):
        frame = frame_with_ball(x0, y0)
        sums = frame.reshape(120, 4, 640).sum(axis=1, dtype=np.uint16).reshape(120, 160, 4).sum(axis=2)
        image = (sums.astype(np.float32) / np.float32(16) * np.float32(1 / 255))[None, None]  # the model's contract
        reject = bool(session.run(["scores"], {"image": image})[0][0, 1] >= 0.5)
        if reject != expected_reject(frame):
            wrong.append((x0, y0))
    assert not wrong, f"{len(wrong)} positions wrong, e.g. {wrong[:5]}"
