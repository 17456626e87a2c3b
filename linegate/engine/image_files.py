"""Frames as image files: the folders ``linegate capture`` writes and ``calibrate``/``compare`` read.

A file holds one frame exactly as the configured camera delivers it (same height, width and pixel
format), so the runtime preprocessing sees on the bench what it sees on the line. Formats: PNG, BMP
and TIFF through Pillow (the ``toolchain`` extra; lossless), and ``.npy`` (numpy only). Image files
store colour as RGB(A): BGR8/BGRa8 frames are swapped on write and swapped back on read. Nothing
is converted silently: a file of another size or colour type is refused, naming the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.errors import ConfigError, LinegateError
from linegate.vision.preprocess import Preprocessor

Frame = npt.NDArray[np.uint8]

PILLOW_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
NUMPY_SUFFIX = ".npy"
IMAGE_SUFFIXES = (*PILLOW_SUFFIXES, NUMPY_SUFFIX)
INSTALL_HINT = "pip install 'linegate[toolchain]'"

# Pixel format -> (Pillow mode of the file, channel order to swap to/from the file's RGB(A)).
_FILE_MODE: dict[str, tuple[str, tuple[int, ...] | None]] = {
    "Mono8": ("L", None),
    "RGB8": ("RGB", None),
    "BGR8": ("RGB", (2, 1, 0)),
    "RGBa8": ("RGBA", None),
    "BGRa8": ("RGBA", (2, 1, 0, 3)),
}


# --- pure conversions between frames and file pixels ------------------------------------------------


def file_pixels(frame: Frame, pixel_format: str) -> tuple[Frame, str]:
    """The pixels to store for *frame* and their Pillow mode (colour in RGB(A) order)."""
    mode, swap = _FILE_MODE[pixel_format]
    return (frame if swap is None else np.ascontiguousarray(frame[..., list(swap)])), mode


def frame_from_file_pixels(
    pixels: npt.NDArray[Any], mode: str, shape: tuple[int, ...], pixel_format: str, source: str
) -> Frame:
    """Check decoded file *pixels* (Pillow *mode*) against the camera's frame and return the frame."""
    want_mode, swap = _FILE_MODE[pixel_format]
    if mode != want_mode or pixels.dtype != np.uint8:
        raise ConfigError(
            f"{source}: image is {_describe(mode, pixels.shape)}, the camera gives {pixel_format} frames "
            f"({_describe(want_mode, shape)}); capture frames with `linegate capture` or convert the file"
        )
    if pixels.shape != shape:
        raise ConfigError(
            f"{source}: image is {pixels.shape[1]}x{pixels.shape[0]}, the camera gives {shape[1]}x{shape[0]} "
            f"{pixel_format} frames (camera.width, camera.height)"
        )
    return pixels if swap is None else np.ascontiguousarray(pixels[..., list(swap)])


def check_npy_frame(array: npt.NDArray[Any], shape: tuple[int, ...], pixel_format: str, source: str) -> Frame:
    """A ``.npy`` frame must already be the camera's array: uint8, same shape, camera channel order."""
    if array.dtype != np.uint8 or array.shape != shape:
        raise ConfigError(
            f"{source}: array is {array.dtype} {list(array.shape)}, the camera gives {pixel_format} frames as "
            f"uint8 {list(shape)}"
        )
    return array


def _describe(mode: str, shape: tuple[int, ...]) -> str:
    kind = {"L": "8-bit grayscale", "RGB": "RGB", "RGBA": "RGBA"}.get(mode, f"Pillow mode {mode!r}")
    return f"{kind} {shape[1]}x{shape[0]}" if len(shape) >= 2 else kind


# --- files and folders -------------------------------------------------------------------------------


def list_images(folder: Path) -> list[Path]:
    """The image files directly in *folder*, sorted by name; an error when there are none."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder of images")
    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name
    )
    if not files:
        raise ConfigError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_frame(path: Path, shape: tuple[int, ...], pixel_format: str) -> Frame:
    """Read one frame file and check it is a frame of *shape* in *pixel_format*."""
    suffix = path.suffix.lower()
    if suffix == NUMPY_SUFFIX:
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a readable .npy array: {exc}") from None
        return check_npy_frame(array, shape, pixel_format, str(path))
    if suffix not in PILLOW_SUFFIXES:
        raise ConfigError(f"{path}: unsupported image type {suffix!r} (use {', '.join(IMAGE_SUFFIXES)})")
    image_mod = pillow(f"reading {suffix} files")
    try:
        with image_mod.open(path) as img:
            img.load()
            if img.mode == "P" and _gray_palette(img):
                img = img.convert("L")  # exact: every palette entry is a grey level
            pixels = np.asarray(img)
            mode = img.mode
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow raises these for damaged or unknown files
        raise ConfigError(f"{path}: not a readable image: {exc}") from None
    return frame_from_file_pixels(pixels, mode, shape, pixel_format, str(path))


def write_frame(path: Path, frame: Frame, pixel_format: str) -> None:
    """Write *frame* (as the camera delivered it) to *path*; the suffix picks the format."""
    suffix = path.suffix.lower()
    check_writable(suffix, pixel_format, str(path))
    if suffix == NUMPY_SUFFIX:
        np.save(path, frame, allow_pickle=False)
        return
    image_mod = pillow(f"writing {suffix} files")
    pixels, mode = file_pixels(frame, pixel_format)
    image_mod.fromarray(pixels, mode=mode).save(path)


def check_writable(suffix: str, pixel_format: str, where: str) -> None:
    """Refuse a file type that cannot hold *pixel_format* frames losslessly (BMP loses RGBa8's fourth channel)."""
    if suffix not in IMAGE_SUFFIXES:
        raise ConfigError(f"{where}: unsupported image type {suffix!r} (use {', '.join(IMAGE_SUFFIXES)})")
    if suffix == ".bmp" and _FILE_MODE[pixel_format][0] == "RGBA":
        raise ConfigError(f"{where}: BMP cannot hold {pixel_format} frames losslessly; use PNG, TIFF or .npy")


def pillow(what: str) -> Any:
    """``PIL.Image``, or an error saying how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise LinegateError(f"{what} needs Pillow: {INSTALL_HINT} (or use .npy frames)") from None
    return Image


def _gray_palette(img: Any) -> bool:
    palette = img.getpalette() or []
    rgb = np.asarray(palette[: 3 * (len(palette) // 3)], dtype=np.uint8).reshape(-1, 3)
    return bool(len(rgb)) and bool(np.all(rgb[:, 0] == rgb[:, 1]) and np.all(rgb[:, 1] == rgb[:, 2]))


def files_digest(paths: Sequence[Path]) -> str:
    """sha256 over the files sorted by name: for each, its name, NUL, its size (8 bytes, big-endian), its bytes."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        data = path.read_bytes()
        digest.update(path.name.encode("utf-8") + b"\0" + len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def model_inputs(
    paths: Sequence[Path], preprocess: Preprocessor, shape: tuple[int, ...], pixel_format: str
) -> Iterator[npt.NDArray[np.floating]]:
    """Each file through the runtime preprocessing into one reused input tensor (copy what you keep)."""
    tensor = np.zeros(preprocess.spec.shape, dtype=preprocess.spec.dtype)
    for path in paths:
        preprocess(read_frame(path, shape, pixel_format), tensor)
        yield tensor
