"""Preprocessing against straightforward reference implementations."""

from __future__ import annotations

import numpy as np
import pytest

from linegate.config.schema import PreprocessSection
from linegate.errors import ConfigError
from linegate.vision.preprocess import build_preprocessor

RNG = np.random.default_rng(7)


def run(cfg: PreprocessSection, frame: np.ndarray, fmt: str = "Mono8") -> np.ndarray:
    pre = build_preprocessor(cfg, frame.shape, fmt)
    out = np.full(pre.spec.shape, np.nan, dtype=pre.spec.dtype)
    pre(frame, out)
    return out


def bilinear_reference(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Pixel-by-pixel bilinear with half-pixel centres (OpenCV INTER_LINEAR convention)."""
    h, w = img.shape
    out = np.zeros((out_h, out_w))
    for oy in range(out_h):
        sy = min(max((oy + 0.5) * h / out_h - 0.5, 0), h - 1)
        y0 = int(np.floor(sy))
        y1 = min(y0 + 1, h - 1)
        fy = sy - y0
        for ox in range(out_w):
            sx = min(max((ox + 0.5) * w / out_w - 0.5, 0), w - 1)
            x0 = int(np.floor(sx))
            x1 = min(x0 + 1, w - 1)
            fx = sx - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[oy, ox] = top * (1 - fy) + bottom * fy
    return out


def test_area_is_the_exact_block_mean() -> None:
    """Area resampling by whole factors equals the mean of each block, scaled."""
    frame = RNG.integers(0, 256, (48, 64), dtype=np.uint8)
    out = run(PreprocessSection(resize=(16, 12)), frame)
    expected = frame.reshape(12, 4, 16, 4).mean(axis=(1, 3)) / 255
    assert out.shape == (1, 1, 12, 16)
    np.testing.assert_allclose(out[0, 0], expected, rtol=0, atol=1e-6)


def test_area_with_large_factors_does_not_overflow() -> None:
    """Blocks of more than 257 pixels use a wider accumulator (a white frame stays 1.0)."""
    frame = np.full((64, 64), 255, dtype=np.uint8)
    out = run(PreprocessSection(resize=(2, 2)), frame)
    np.testing.assert_allclose(out, 1.0, atol=1e-6)


def test_area_refuses_fractional_factors_naming_the_key() -> None:
    """Area needs whole-number factors; the error says which keys to change."""
    with pytest.raises(ConfigError, match="model.preprocess: interpolation='area'"):
        build_preprocessor(PreprocessSection(resize=(30, 30)), (48, 64), "Mono8")


def test_bilinear_matches_reference_inside_a_roi() -> None:
    """Bilinear resampling of an ROI matches a per-pixel reference implementation."""
    frame = RNG.integers(0, 256, (60, 80), dtype=np.uint8)
    cfg = PreprocessSection(roi=(5, 7, 50, 40), resize=(23, 17), interpolation="bilinear", scale=1.0)
    out = run(cfg, frame)
    expected = bilinear_reference(frame[7:47, 5:55].astype(np.float64), 23, 17)
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-3)


def test_nearest_picks_source_pixels() -> None:
    """Nearest-neighbour output values are all taken from the ROI at the expected positions."""
    frame = np.arange(40 * 40, dtype=np.uint32).reshape(40, 40).astype(np.uint8)
    out = run(PreprocessSection(resize=(10, 10), interpolation="nearest", scale=1.0), frame)
    idx = ((np.arange(10) + 0.5) * 4).astype(int)
    np.testing.assert_array_equal(out[0, 0], frame[np.ix_(idx, idx)])


def test_color_order_normalisation_and_nhwc() -> None:
    """RGBa8 frames become BGR, normalised per channel, in NHWC layout when asked."""
    frame = np.zeros((4, 4, 4), dtype=np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2], frame[..., 3] = 10, 20, 30, 99  # R, G, B, alpha
    cfg = PreprocessSection(color="bgr", scale=1.0, mean=(1.0, 2.0, 3.0), std=(2.0, 2.0, 2.0), layout="NHWC")
    out = run(cfg, frame, "RGBa8")
    assert out.shape == (1, 4, 4, 3)
    np.testing.assert_allclose(out[0, 0, 0], [(30 - 1) / 2, (20 - 2) / 2, (10 - 3) / 2])


def test_nchw_float16_output() -> None:
    """NCHW float16 inputs are filled channel-first with the requested dtype."""
    frame = np.zeros((4, 4, 3), dtype=np.uint8)
    frame[..., 0] = 255
    out = run(PreprocessSection(color="rgb", layout="NCHW", dtype="float16"), frame, "RGB8")
    assert out.dtype == np.float16 and out.shape == (1, 3, 4, 4)
    assert out[0, 0].min() == 1.0 and out[0, 1:].max() == 0.0


def test_gray_model_on_colour_camera_is_refused() -> None:
    """A gray model on an RGB camera is a configuration error, not a silent conversion."""
    with pytest.raises(ConfigError, match="color='gray' needs Mono8"):
        build_preprocessor(PreprocessSection(), (4, 4, 3), "RGB8")


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("interpolation", ["area", "nearest", "bilinear"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_gray3_replicates_gray_with_per_channel_normalisation(interpolation: str, layout: str) -> None:
    """gray3 puts the gray value of a Mono8 frame in three channels, each with its own mean and std."""
    frame = RNG.integers(0, 256, (48, 64), dtype=np.uint8)
    geometry = {"roi": (4, 2, 56, 40), "resize": (14, 10), "interpolation": interpolation}
    gray = run(PreprocessSection(**geometry), frame)[0, 0].astype(np.float64)
    cfg = PreprocessSection(**geometry, color="gray3", mean=IMAGENET_MEAN, std=IMAGENET_STD, layout=layout)
    out = run(cfg, frame)
    assert out.shape == ((1, 3, 10, 14) if layout == "NCHW" else (1, 10, 14, 3))
    chw = out[0] if layout == "NCHW" else out[0].transpose(2, 0, 1)
    for k in range(3):
        np.testing.assert_allclose(chw[k], (gray - IMAGENET_MEAN[k]) / IMAGENET_STD[k], rtol=0, atol=1e-5)
    assert not np.array_equal(chw[0], chw[2])  # the channels really were normalised apart


def test_gray3_takes_one_mean_and_std_for_all_channels() -> None:
    """gray3 with a single mean and std gives three identical channels."""
    frame = RNG.integers(0, 256, (8, 8), dtype=np.uint8)
    out = run(PreprocessSection(color="gray3", mean=(0.5,), std=(0.25,), dtype="float16"), frame)
    assert out.shape == (1, 3, 8, 8) and out.dtype == np.float16
    np.testing.assert_array_equal(out[0, 0], out[0, 1])
    np.testing.assert_array_equal(out[0, 0], out[0, 2])
    np.testing.assert_allclose(out[0, 0], (frame / 255 - 0.5) / 0.25, atol=4e-3)


def test_gray3_on_a_colour_camera_is_refused_naming_the_key() -> None:
    """gray3 needs Mono8 frames: a colour camera is a configuration error naming color."""
    with pytest.raises(ConfigError, match="model.preprocess.color='gray3' needs Mono8"):
        build_preprocessor(PreprocessSection(color="gray3"), (4, 4, 3), "RGB8")


@pytest.mark.parametrize("color", ["rgb", "bgr"])
def test_colour_model_on_a_mono_camera_points_to_gray3(color: str) -> None:
    """rgb/bgr on Mono8 frames is refused with the key and the gray3 alternative, not an IndexError."""
    with pytest.raises(ConfigError, match=rf"model.preprocess.color='{color}' needs colour frames.*color='gray3'"):
        build_preprocessor(PreprocessSection(color=color), (4, 4), "Mono8")


@pytest.mark.parametrize("color", ["gray3", "rgb"])
def test_per_channel_values_need_one_or_three(color: str) -> None:
    """mean and std take 1 or 3 values for three-channel colours; 2 is refused naming the key."""
    PreprocessSection(color=color, mean=(0.1,), std=(0.2, 0.3, 0.4))
    with pytest.raises(ValueError, match=rf"mean needs 1 or 3 values for color='{color}', got 2"):
        PreprocessSection(color=color, mean=(0.1, 0.2))


def test_float16_output_is_rounded_once() -> None:
    """float16 inputs are the float32 result rounded once to half precision (not rounded twice)."""
    frame = RNG.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    common = {"color": "rgb", "resize": (47, 31), "interpolation": "bilinear", "mean": IMAGENET_MEAN,
              "std": IMAGENET_STD}  # fmt: skip
    out32 = run(PreprocessSection(**common), frame, "RGB8")
    out16 = run(PreprocessSection(**common, dtype="float16"), frame, "RGB8")
    np.testing.assert_array_equal(out16, out32.astype(np.float16))


def test_bilinear_of_a_colour_frame_is_the_bilinear_of_each_channel() -> None:
    """Each channel of a colour frame is resampled as a Mono8 frame of that channel alone is."""
    frame = RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    geometry = {"roi": (5, 7, 50, 40), "resize": (23, 17), "interpolation": "bilinear", "scale": 1.0}
    out = run(PreprocessSection(**geometry, color="rgb"), frame, "RGB8")
    for k in range(3):
        alone = run(PreprocessSection(**geometry), np.ascontiguousarray(frame[..., k]))
        np.testing.assert_array_equal(out[0, k], alone[0, 0])
