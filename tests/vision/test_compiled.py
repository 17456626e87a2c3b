"""The compiled preprocessing kernels give the numpy path's tensor bit for bit, in every mode."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from linegate.config.check import check_config
from linegate.config.schema import PreprocessSection
from linegate.errors import ConfigError
from linegate.vision import compiled
from linegate.vision.preprocess import Preprocessor, plan_preprocess
from tests.conftest import DEMO_CONFIG

RNG = np.random.default_rng(11)
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}

CASES: list[tuple[str, tuple[int, ...], str, dict[str, Any]]] = [
    # name, frame shape, pixel format, preprocess settings
    ("demo area 4x4", (480, 640), "Mono8", {"resize": (160, 120)}),
    ("area in a roi", (60, 80), "Mono8", {"roi": (4, 6, 60, 48), "resize": (20, 12), "mean": (0.5,), "std": (0.3,)}),
    ("area wide (uint32 sums)", (64, 96), "Mono8", {"resize": (4, 4)}),
    ("area rgb nhwc", (48, 64, 3), "RGB8", {"resize": (16, 12), "color": "rgb", "layout": "NHWC", **IMAGENET}),
    ("area bgr from rgba", (48, 64, 4), "RGBa8", {"resize": (32, 24), "color": "bgr", **IMAGENET}),
    ("area gray3", (48, 64), "Mono8", {"resize": (16, 12), "color": "gray3", **IMAGENET}),
    ("nearest", (60, 80), "Mono8", {"roi": (5, 7, 50, 40), "resize": (23, 17), "interpolation": "nearest"}),
    ("nearest bgr8 to rgb nhwc", (30, 40, 3), "BGR8",
     {"resize": (13, 9), "interpolation": "nearest", "color": "rgb", "layout": "NHWC"}),
    ("bilinear", (60, 80), "Mono8", {"roi": (5, 7, 50, 40), "resize": (23, 17), "interpolation": "bilinear"}),
    ("bilinear resnet", (480, 640), "Mono8", {"roi": (80, 0, 480, 480), "resize": (224, 224),
                                              "interpolation": "bilinear"}),
    ("bilinear upscale", (20, 30), "Mono8", {"resize": (45, 33), "interpolation": "bilinear", "scale": 1.0}),
    ("bilinear rgb", (64, 96, 3), "RGB8", {"resize": (47, 31), "interpolation": "bilinear", "color": "rgb",
                                            **IMAGENET}),
    ("bilinear gray3 nhwc", (48, 64), "Mono8", {"resize": (14, 10), "interpolation": "bilinear",
                                                 "color": "gray3", "layout": "NHWC", **IMAGENET}),
    ("no resize", (12, 16), "Mono8", {}),
]  # fmt: skip


@pytest.mark.parametrize(("shape", "fmt", "settings"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compiled_equals_numpy_bit_for_bit(shape: tuple[int, ...], fmt: str, settings: dict[str, Any]) -> None:
    """Same plan, random frames: the compiled kernel writes exactly the numpy path's float32 values."""
    plan = plan_preprocess(PreprocessSection(**settings), shape, fmt)
    compiled, plain = Preprocessor(plan, kernel="compiled"), Preprocessor(plan, kernel="numpy")
    assert compiled.compiled and not plain.compiled
    for _ in range(3):
        frame = RNG.integers(0, 256, shape, dtype=np.uint8)
        a = np.full(plan.spec.shape, np.nan, dtype=np.float32)
        b = np.full(plan.spec.shape, np.nan, dtype=np.float32)
        compiled(frame, a)
        plain(frame, b)
        assert not np.isnan(a).any()
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_compiled_writes_one_row_of_a_batch_input() -> None:
    """Into row k of a batch tensor (a view), the other rows untouched."""
    plan = plan_preprocess(PreprocessSection(resize=(16, 12)), (48, 64), "Mono8")
    pre = Preprocessor(plan, kernel="compiled")
    batch = np.zeros((4, *plan.spec.shape[1:]), dtype=np.float32)
    frame = np.full((48, 64), 255, dtype=np.uint8)
    pre(frame, batch[2:3])
    assert (batch[2] == 1.0).all() and not batch[[0, 1, 3]].any()


def test_float16_inputs_take_the_numpy_path() -> None:
    """The kernels write float32 only: a float16 model input is filled by the numpy path."""
    pre = Preprocessor(plan_preprocess(PreprocessSection(dtype="float16"), (8, 8), "Mono8"), kernel="compiled")
    assert not pre.compiled
    out = np.zeros((1, 1, 8, 8), dtype=np.float16)
    pre(np.full((8, 8), 255, dtype=np.uint8), out)
    assert (out == 1.0).all()


def test_a_frame_or_input_of_another_size_is_refused_naming_the_shapes() -> None:
    """The compiled loops do not check bounds, so a frame or a model input of the wrong size is
    refused before them."""
    pre = Preprocessor(plan_preprocess(PreprocessSection(resize=(16, 12)), (48, 64), "Mono8"), kernel="compiled")
    with pytest.raises(ValueError, match=r"frame of shape \(48, 60\) into .* expected \(48, 64, 1\)"):
        pre(np.zeros((48, 60), dtype=np.uint8), np.zeros((1, 1, 12, 16), dtype=np.float32))
    with pytest.raises(ValueError, match=r"input of shape \(1, 1, 6, 8\), expected .* into \(1, 1, 12, 16\)"):
        pre(np.zeros((48, 64), dtype=np.uint8), np.zeros((1, 1, 6, 8), dtype=np.float32))


def _numba_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test double: numba cannot be uninstalled inside a test, so its import is made to fail."""

    def no_numba(_interpolation: str) -> Any:
        raise ImportError("No module named 'numba'")

    monkeypatch.setattr(compiled, "kernel", no_numba)


def test_auto_falls_back_to_numpy_with_the_reason_when_numba_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """kernel = 'auto' still preprocesses (numpy path) and says why; 'compiled' refuses, naming the key."""
    _numba_missing(monkeypatch)
    plan = plan_preprocess(PreprocessSection(resize=(16, 12)), (48, 64), "Mono8")
    pre = Preprocessor(plan, kernel="auto")
    assert not pre.compiled and "No module named 'numba'" in pre.fallback
    out = np.zeros(plan.spec.shape, dtype=np.float32)
    pre(np.full((48, 64), 255, dtype=np.uint8), out)
    assert (out == 1.0).all()
    with pytest.raises(ConfigError, match=r"model.preprocess.kernel = 'compiled'.*No module named 'numba'"):
        Preprocessor(plan, kernel="compiled")


def test_check_config_notes_the_numpy_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """check-config on a machine where numba does not work: valid, with a note naming the key."""
    _numba_missing(monkeypatch)
    report = check_config(DEMO_CONFIG)
    assert not report.problems
    assert any("model.preprocess.kernel = 'auto': numpy path here" in note for note in report.notes), report.notes


def test_check_config_says_the_compiled_path_runs() -> None:
    """Where numba works, check-config says so (with its version): the note to look for on a new machine."""
    report = check_config(DEMO_CONFIG)
    assert not report.problems
    assert any(note.startswith("model.preprocess: one compiled call per frame (numba ") for note in report.notes)
