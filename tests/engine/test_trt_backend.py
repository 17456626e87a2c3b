"""The TensorRT backend against onnxruntime on the same model (runs only where TensorRT is installed)."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

trt = pytest.importorskip(
    "tensorrt",
    reason="tensorrt is not installed (it cannot be installed on CI or dev machines; this test runs on a Jetson)",
)
pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test models")
ort = pytest.importorskip("onnxruntime")

from linegate.config.schema import ModelSection  # noqa: E402
from linegate.engine import create_engine  # noqa: E402
from linegate.errors import EngineError  # noqa: E402
from tests.engine.onnx_models import linear_classifier  # noqa: E402

SHAPE = (1, 1, 12, 16)
F32 = np.dtype(np.float32)


def build_engine(onnx_path: Path, out: Path, dynamic: bool = False, max_batch: int = 4) -> Path:
    """Build an FP32 engine with TensorRT's builder API (what trtexec --onnx --saveEngine does)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    if dynamic:
        profile = builder.create_optimization_profile()
        profile.set_shape("image", (1, *SHAPE[1:]), (1, *SHAPE[1:]), (max_batch, *SHAPE[1:]))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    assert serialized is not None, "build_serialized_network failed"
    out.write_bytes(bytes(serialized))
    # Release the builder (and its logger registration) before the backend creates its runtime.
    del serialized, config, parser, network, builder
    gc.collect()
    return out


def section(path: Path) -> ModelSection:
    return ModelSection.model_validate(
        {"id": "trt", "backend": "tensorrt", "path": str(path),
         "postprocess": {"classes": ["pass", "reject"], "reject_thresholds": {"reject": 0.5}}}
    )  # fmt: skip


def reference(onnx_path: Path, image: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"image": image})[0])


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic-batch"])
def test_tensorrt_matches_onnxruntime(tmp_path: Path, dynamic: bool) -> None:
    """An engine built from a small ONNX model gives onnxruntime's scores on the same inputs."""
    onnx_path = linear_classifier(tmp_path / "m.onnx", SHAPE, dynamic_batch=dynamic)
    engine_path = build_engine(onnx_path, tmp_path / "m.engine", dynamic)
    rng = np.random.default_rng(7)
    with create_engine(section(engine_path), SHAPE, F32) as engine:
        first = engine.infer()
        assert first.shape == (1, 2) and first.dtype == np.float32
        for mean in (0.3, 0.45, 0.7):
            engine.input[...] = rng.uniform(0.0, 2 * mean, SHAPE)
            want = reference(onnx_path, engine.input.copy())
            out = engine.infer()
            assert out is first  # the bound output buffer, every time
            np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-6)


def test_shape_outside_the_profile_is_refused(tmp_path: Path) -> None:
    """A preprocessor batch beyond the engine's optimisation profile fails at load with the profile."""
    onnx_path = linear_classifier(tmp_path / "m.onnx", SHAPE, dynamic_batch=True)
    engine_path = build_engine(onnx_path, tmp_path / "m.engine", dynamic=True, max_batch=2)
    engine = create_engine(section(engine_path), (3, *SHAPE[1:]), F32)
    with pytest.raises(EngineError, match=r"m\.engine.*outside the engine's optimisation profile"):
        engine.load()


def test_static_shape_mismatch_is_refused(tmp_path: Path) -> None:
    """A preprocessor shape the static engine cannot take is refused, naming both shapes."""
    engine_path = build_engine(linear_classifier(tmp_path / "m.onnx", SHAPE), tmp_path / "m.engine")
    engine = create_engine(section(engine_path), (1, 1, 24, 32), F32)
    with pytest.raises(EngineError, match=r"input 'image' has shape \[1, 1, 12, 16\].*\[1, 1, 24, 32\]"):
        engine.load()


def test_dtype_mismatch_is_refused(tmp_path: Path) -> None:
    """A float16 preprocessor for a float32 engine is refused at load."""
    engine_path = build_engine(linear_classifier(tmp_path / "m.onnx", SHAPE), tmp_path / "m.engine")
    engine = create_engine(section(engine_path), SHAPE, np.dtype(np.float16))
    with pytest.raises(EngineError, match="float32.*float16"):
        engine.load()


def test_garbage_engine_file_is_named(tmp_path: Path) -> None:
    """A file that is not an engine for this TensorRT fails with its path and a rebuild hint."""
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"not an engine")
    with pytest.raises(EngineError, match=r"bad\.engine.*rebuild it on this device"):
        create_engine(section(bad), SHAPE, F32).load()
