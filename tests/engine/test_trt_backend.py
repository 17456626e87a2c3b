"""The TensorRT backend against onnxruntime on the same model (runs only where TensorRT is installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

trt = pytest.importorskip(
    "tensorrt", reason="tensorrt is not installed (it cannot be installed on CI or dev machines; this runs on a Jetson)"
)

from linegate.config.schema import ModelSection  # noqa: E402
from linegate.engine import create_engine  # noqa: E402
from linegate.errors import EngineError  # noqa: E402
from tests.engine.onnx_models import expected_scores, linear_classifier  # noqa: E402

SHAPE = (1, 1, 12, 16)


def build_engine(onnx_path: Path, out: Path, dynamic: bool = False) -> Path:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), [parser.get_error(i) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    if dynamic:
        profile = builder.create_optimization_profile()
        profile.set_shape("image", (1, *SHAPE[1:]), (1, *SHAPE[1:]), (4, *SHAPE[1:]))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    assert serialized is not None
    out.write_bytes(bytes(serialized))
    return out


def section(path: Path) -> ModelSection:
    return ModelSection.model_validate(
        {"id": "trt", "backend": "tensorrt", "path": str(path),
         "postprocess": {"classes": ["pass", "reject"], "reject_thresholds": {"reject": 0.5}}}
    )  # fmt: skip


@pytest.mark.parametrize("dynamic", [False, True])
def test_tensorrt_matches_the_reference(tmp_path: Path, dynamic: bool) -> None:
    """An engine built from a small ONNX model gives the same scores as the model's definition."""
    onnx_path = linear_classifier(tmp_path / "m.onnx", SHAPE, dynamic_batch=dynamic)
    engine_path = build_engine(onnx_path, tmp_path / "m.engine", dynamic)
    with create_engine(section(engine_path), SHAPE, np.dtype(np.float32)) as engine:
        for value in (0.2, 0.7):
            engine.input[...] = value
            np.testing.assert_allclose(engine.infer()[0], expected_scores(engine.input), rtol=1e-3)


def test_garbage_engine_file_is_named(tmp_path: Path) -> None:
    """A file that is not an engine for this TensorRT fails with its path and a rebuild hint."""
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"not an engine")
    with pytest.raises(EngineError, match="bad.engine.*rebuild it on this device"):
        create_engine(section(bad), SHAPE, np.dtype(np.float32)).load()
