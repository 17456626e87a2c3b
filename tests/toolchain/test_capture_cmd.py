"""``linegate capture`` against the real simulated camera (Viky): files hold the very frames, named by frame id."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from linegate.cli import main
from linegate.demo.ground_truth import BALL_SIZE, viky_top_left
from linegate.engine.image_files import list_images, read_frame
from linegate.toolchain.capture_cmd import CapturePlan

WIDTH, HEIGHT = 160, 120


def config(tmp_path: Path, pixel_format: str = "Mono8") -> Path:
    path = tmp_path / "cam.toml"
    model = Path(__file__).resolve().parents[2] / "engines" / "demo" / "ball_zone.onnx"
    color = "gray" if pixel_format == "Mono8" else "rgb"
    path.write_text(f"""
[camera]
cti = "builtin:viky"
device = {{ serial_number = "1" }}
width = {WIDTH}
height = {HEIGHT}
pixel_format = "{pixel_format}"
frame_rate_hz = 200.0

[model]
id = "m"
path = "{model}"
preprocess = {{ resize = [160, 120], color = "{color}" }}
postprocess = {{ classes = ["pass", "reject"], reject_thresholds = {{ reject = 0.5 }} }}

[plc]
protocol = "modbus"
modbus = {{ host = "127.0.0.1", reject_coil = 0 }}
""", encoding="utf-8")
    return path


def viky_frame(frame_id: int) -> np.ndarray:
    """The frame Viky draws for *frame_id* after a fresh open: white, the black ball at its computed place."""
    frame = np.full((HEIGHT, WIDTH), 255, dtype=np.uint8)
    x, y = viky_top_left(frame_id, WIDTH, HEIGHT)
    frame[y : y + BALL_SIZE, x : x + BALL_SIZE] = 0
    return frame


def frame_ids(folder: Path, prefix: str) -> list[int]:
    return [int(re.fullmatch(rf"{prefix}(\d{{8}})\.\w+", p.name)[1]) for p in list_images(folder)]  # type: ignore[index]


def test_plan_skips_then_keeps_every_kth_until_count() -> None:
    """skip 2, every 3, count 3: of good frames 1..20 it keeps 5, 8 and 11 and nothing after."""
    plan = CapturePlan(count=3, every=3, skip=2)
    assert [n for n in range(1, 21) if plan.take()] == [5, 8, 11]
    assert (plan.seen, plan.kept) == (20, 3)


def test_npy_files_hold_the_camera_frames_named_by_frame_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each saved frame equals what Viky draws for the frame id in its name; --skip and --every space the ids."""
    code = main(["capture", "--config", str(config(tmp_path)), "--out", str(tmp_path / "set"), "--count", "4",
                 "--every", "3", "--skip", "2", "--format", "npy", "--prefix", "t-"])
    assert code == 0
    ids = frame_ids(tmp_path / "set", "t-")
    assert len(ids) == 4 and all(b - a >= 3 for a, b in itertools.pairwise(ids)) and ids[0] >= 5
    for frame_id, path in zip(ids, list_images(tmp_path / "set"), strict=True):
        np.testing.assert_array_equal(read_frame(path, (HEIGHT, WIDTH), "Mono8"), viky_frame(frame_id))
    assert "saved 4 frames (npy)" in capsys.readouterr().out


def test_png_frames_read_back_exactly_and_are_never_overwritten(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """PNG frames read back bit for bit; a second capture with the same prefix stops at the first existing file."""
    pytest.importorskip("PIL", reason="Pillow (toolchain extra) writes PNG")
    argv = ["capture", "--config", str(config(tmp_path)), "--out", str(tmp_path / "set"), "--count", "2",
            "--prefix", "p-"]
    assert main(argv) == 0
    ids = frame_ids(tmp_path / "set", "p-")
    for frame_id, path in zip(ids, list_images(tmp_path / "set"), strict=True):
        np.testing.assert_array_equal(read_frame(path, (HEIGHT, WIDTH), "Mono8"), viky_frame(frame_id))
    assert main(argv) == 1
    assert re.search(r"p-\d{8}\.png: exists; choose another --out or --prefix", capsys.readouterr().err)


def test_bmp_for_four_channel_frames_is_refused_before_opening_the_camera(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RGBa8 frames cannot go to BMP losslessly: exit 78 at once, nothing written."""
    code = main(["capture", "--config", str(config(tmp_path, "RGBa8")), "--out", str(tmp_path / "set"),
                 "--format", "bmp"])
    assert code == 78
    assert "--format bmp: BMP cannot hold RGBa8 frames losslessly" in capsys.readouterr().err
    assert not (tmp_path / "set").exists()


def cameras_config(tmp_path: Path) -> Path:
    """The same camera settings with [[cameras]] cam0 (serial 0) and cam2 (serial 2)."""
    text = config(tmp_path).read_text().replace('device = { serial_number = "1" }\n', "")
    path = tmp_path / "cams.toml"
    path.write_text(text + "".join(
        f'\n[[cameras]]\nname = "cam{n}"\ndevice = {{ serial_number = "{n}" }}\n'
        f"plc = {{ modbus = {{ reject_coil = {n} }} }}\n"
        for n in (0, 2)
    ), encoding="utf-8")  # fmt: skip
    return path


def test_with_cameras_the_named_camera_is_captured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--camera picks a [[cameras]] entry's device (the first one without it); an unknown name is refused."""
    cfg = cameras_config(tmp_path)
    assert main(["capture", "--config", str(cfg), "--out", str(tmp_path / "a"), "--count", "2", "--format", "npy",
                 "--camera", "cam2"]) == 0  # fmt: skip
    assert "(serial 2)" in capsys.readouterr().err
    assert main(["capture", "--config", str(cfg), "--out", str(tmp_path / "b"), "--count", "2", "--format", "npy"]) == 0
    assert "(serial 0)" in capsys.readouterr().err
    assert main(["capture", "--config", str(cfg), "--out", str(tmp_path / "c"), "--camera", "cam9"]) == 2
    assert "--camera cam9: no such camera" in capsys.readouterr().err and not (tmp_path / "c").exists()
