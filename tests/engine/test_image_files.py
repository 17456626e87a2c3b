"""Frame files: lossless round trips per pixel format, files from other tools, clear refusals, the set hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from linegate.config.schema import PreprocessSection
from linegate.engine.image_files import files_digest, list_images, model_inputs, read_frame, write_frame
from linegate.errors import ConfigError
from linegate.vision.preprocess import build_preprocessor

RNG = np.random.default_rng(3)
SHAPES = {"Mono8": (12, 16), "RGB8": (12, 16, 3), "BGR8": (12, 16, 3), "RGBa8": (12, 16, 4), "BGRa8": (12, 16, 4)}


def random_frame(pixel_format: str) -> np.ndarray:
    return RNG.integers(0, 256, SHAPES[pixel_format], dtype=np.uint8)


@pytest.mark.parametrize("pixel_format", list(SHAPES))
@pytest.mark.parametrize("suffix", [".png", ".npy", ".bmp", ".tiff"])
def test_write_then_read_gives_the_same_frame(tmp_path: Path, pixel_format: str, suffix: str) -> None:
    """Each pixel format survives a write and a read bit for bit in each file type that holds it (BMP refuses RGBa8)."""
    if suffix != ".npy":
        pytest.importorskip("PIL", reason="Pillow (toolchain extra) reads and writes image files")
    if suffix == ".bmp" and pixel_format in ("RGBa8", "BGRa8"):
        with pytest.raises(ConfigError, match=r"f\.bmp: BMP cannot hold .*a8 frames losslessly"):
            write_frame(tmp_path / "f.bmp", random_frame(pixel_format), pixel_format)
        return
    frame = random_frame(pixel_format)
    path = tmp_path / f"f{suffix}"
    write_frame(path, frame, pixel_format)
    back = read_frame(path, SHAPES[pixel_format], pixel_format)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, frame)


def test_bgr_frames_are_stored_as_rgb_images(tmp_path: Path) -> None:
    """A BGR8 frame is written as an ordinary RGB image (so other tools show true colours)."""
    image = pytest.importorskip("PIL.Image")
    frame = random_frame("BGR8")
    write_frame(tmp_path / "f.png", frame, "BGR8")
    with image.open(tmp_path / "f.png") as img:
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), frame[..., ::-1])


def test_reads_grayscale_and_grey_palette_images_from_other_tools(tmp_path: Path) -> None:
    """An 8-bit grayscale PNG and a palette PNG whose palette is grey both read as the Mono8 frame."""
    image = pytest.importorskip("PIL.Image")
    frame = random_frame("Mono8")
    image.fromarray(frame).save(tmp_path / "gray.png")
    palette = image.fromarray(frame).convert("P", palette=image.Palette.ADAPTIVE, colors=256)
    grey = list(range(256))
    palette.putpalette([v for g in grey for v in (g, g, g)])
    palette.putdata(frame.reshape(-1).tolist())
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(read_frame(tmp_path / "gray.png", (12, 16), "Mono8"), frame)
    np.testing.assert_array_equal(read_frame(tmp_path / "palette.png", (12, 16), "Mono8"), frame)


def test_colour_image_for_a_mono_camera_is_refused_naming_the_file(tmp_path: Path) -> None:
    """An RGB file where the camera gives Mono8 is refused with the file, both types and sizes: never converted."""
    pytest.importorskip("PIL")
    write_frame(tmp_path / "colour.png", random_frame("RGB8"), "RGB8")
    with pytest.raises(ConfigError, match=r"colour\.png: image is RGB 16x12, the camera gives Mono8.*grayscale 16x12"):
        read_frame(tmp_path / "colour.png", (12, 16), "Mono8")


def test_wrong_size_is_refused_naming_both_sizes(tmp_path: Path) -> None:
    """A frame of another size is refused with both sizes and the camera keys to check."""
    pytest.importorskip("PIL")
    write_frame(tmp_path / "small.png", random_frame("Mono8"), "Mono8")
    with pytest.raises(ConfigError, match=r"small\.png: image is 16x12, the camera gives 32x24 Mono8"):
        read_frame(tmp_path / "small.png", (24, 32), "Mono8")


def test_npy_of_another_dtype_or_a_damaged_file_is_refused(tmp_path: Path) -> None:
    """A float .npy and a damaged PNG are refused, each error naming its file."""
    np.save(tmp_path / "float.npy", np.zeros((12, 16), dtype=np.float32))
    with pytest.raises(ConfigError, match=r"float\.npy: array is float32 \[12, 16\].*uint8 \[12, 16\]"):
        read_frame(tmp_path / "float.npy", (12, 16), "Mono8")
    pytest.importorskip("PIL")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ConfigError, match=r"broken\.png: not a readable image"):
        read_frame(tmp_path / "broken.png", (12, 16), "Mono8")


def test_list_images_sorted_by_name_skipping_other_files(tmp_path: Path) -> None:
    """Image files are listed by name; notes and sub-folders are skipped; no images at all is an error."""
    for name in ("b.png", "a.npy", "c.BMP", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.npy", "b.png", "c.BMP"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty: no image files"):
        list_images(tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"missing: not a folder"):
        list_images(tmp_path / "missing")


def test_digest_covers_names_and_contents_in_name_order(tmp_path: Path) -> None:
    """The set hash is sha256 over (name, NUL, size, bytes) by name order; renaming or editing changes it."""
    (tmp_path / "b.npy").write_bytes(b"BB")
    (tmp_path / "a.npy").write_bytes(b"A")
    paths = [tmp_path / "b.npy", tmp_path / "a.npy"]
    expected = hashlib.sha256(b"a.npy\0" + (1).to_bytes(8, "big") + b"A" + b"b.npy\0" + (2).to_bytes(8, "big") + b"BB")
    assert files_digest(paths) == expected.hexdigest() == files_digest(paths[::-1])
    (tmp_path / "a.npy").write_bytes(b"a")
    assert files_digest(paths) != expected.hexdigest()


def test_model_inputs_are_the_runtime_preprocessing_of_each_file(tmp_path: Path) -> None:
    """Each yielded tensor is exactly what the runtime preprocessor makes of that file's frame."""
    frames = [random_frame("Mono8") for _ in range(3)]
    paths = []
    for i, frame in enumerate(frames):
        paths.append(tmp_path / f"{i}.npy")
        write_frame(paths[-1], frame, "Mono8")
    pre = build_preprocessor(PreprocessSection(resize=(8, 6)), (12, 16), "Mono8")
    got = [t.copy() for t in model_inputs(paths, pre, (12, 16), "Mono8")]
    for frame, tensor in zip(frames, got, strict=True):
        want = np.zeros(pre.spec.shape, dtype=np.float32)
        pre(frame, want)
        np.testing.assert_array_equal(tensor, want)
    assert not np.array_equal(got[0], got[1])


def test_without_pillow_image_files_say_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where Pillow is missing, PNG reading and writing fail with the pip command; .npy still works."""
    import sys

    from linegate.errors import LinegateError

    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `from PIL import Image` raise ImportError
    with pytest.raises(LinegateError, match=r"writing \.png files needs Pillow: pip install 'linegate\[toolchain\]'"):
        write_frame(tmp_path / "f.png", random_frame("Mono8"), "Mono8")
    (tmp_path / "g.png").write_bytes(b"")
    with pytest.raises(LinegateError, match=r"reading \.png files needs Pillow"):
        read_frame(tmp_path / "g.png", (12, 16), "Mono8")
    write_frame(tmp_path / "f.npy", random_frame("Mono8"), "Mono8")
    assert read_frame(tmp_path / "f.npy", (12, 16), "Mono8").shape == (12, 16)
