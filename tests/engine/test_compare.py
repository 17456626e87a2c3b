"""Two engines on the same tensors: backend by file type, QDQ simulation, row-aligned outputs, clear errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from linegate.config.schema import ModelSection
from linegate.engine.compare import backend_for, check_classes, engine_for, execution, run_pair, tensorrt_missing
from linegate.engine.ort_backend import OnnxRuntimeEngine
from linegate.errors import ModelError
from linegate.vision.preprocess import InputSpec
from tests.engine.onnx_models import expected_scores, linear_classifier

pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test models")

SPEC = InputSpec((1, 1, 12, 16), np.dtype(np.float32))


def section(path: Path) -> ModelSection:
    post = {"classes": ["pass", "reject"], "reject_thresholds": {"reject": 0.5}}
    return ModelSection.model_validate({"id": "m", "path": str(path), "postprocess": post})


def scaled_classifier(path: Path, k: float) -> Path:
    """mean(image) -> logits [k*m - k/2, k/2 - k*m] -> softmax (k = 10 is linear_classifier)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.array([[k, -k]], dtype=np.float32), "W"),
        numpy_helper.from_array(np.array([-k / 2, k / 2], dtype=np.float32), "B"),
    ]
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "scaled",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(SPEC.shape))],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tensors(levels: list[float]) -> list[np.ndarray]:
    return [np.full(SPEC.shape, v, dtype=np.float32) for v in levels]


def test_backend_by_file_type() -> None:
    """.onnx runs in ONNX Runtime, .engine and .plan in TensorRT; anything else is refused by name."""
    assert backend_for(Path("m.onnx")) == "onnxruntime"
    assert backend_for(Path("m.ENGINE")) == "tensorrt"
    assert backend_for(Path("m.plan")) == "tensorrt"
    with pytest.raises(ModelError, match=r"m\.pt: unknown model type '\.pt'"):
        backend_for(Path("m.pt"))


def test_tensorrt_missing_says_why_exactly_when_it_cannot_be_imported() -> None:
    """The skip reason is given when (and only when) the tensorrt module cannot be found."""
    missing = tensorrt_missing()
    assert (missing is not None) == (importlib.util.find_spec("tensorrt") is None)
    if missing is not None:
        assert "JetPack" in missing


def test_same_model_twice_gives_identical_rows(tmp_path: Path) -> None:
    """One row per input for each engine, equal to the model's known scores, identical between the two."""
    path = linear_classifier(tmp_path / "a.onnx")
    levels = [0.1, 0.45, 0.9]
    with engine_for(section(path), path, SPEC) as a, engine_for(section(path), path, SPEC) as b:
        ref, cand = run_pair(a, b, tensors(levels))
    assert ref.shape == (3, 2)
    np.testing.assert_array_equal(ref, cand)
    for row, t in zip(ref, tensors(levels), strict=True):
        np.testing.assert_allclose(row, expected_scores(t), rtol=1e-5)


def test_different_models_give_their_own_scores(tmp_path: Path) -> None:
    """A candidate with another gain gives its own scores for the very same inputs."""
    ref_path = scaled_classifier(tmp_path / "k10.onnx", 10.0)
    cand_path = scaled_classifier(tmp_path / "k12.onnx", 12.0)
    with engine_for(section(ref_path), ref_path, SPEC) as a, engine_for(section(ref_path), cand_path, SPEC) as b:
        ref, cand = run_pair(a, b, tensors([0.4]))
    reject = lambda k: 1 / (1 + np.exp(-2 * k * (0.5 - 0.4)))  # noqa: E731
    np.testing.assert_allclose([ref[0, 1], cand[0, 1]], [reject(10.0), reject(12.0)], rtol=1e-5)


def test_qdq_model_is_simulated_unless_cpu_kernels_are_asked_for(tmp_path: Path) -> None:
    """A QDQ model runs as the float simulation by default and through linegate's ORT backend on request."""
    from linegate.engine.quantize import QdqSimulation, QuantOptions, quantize_qdq

    fp32 = linear_classifier(tmp_path / "m.onnx")
    qdq = tmp_path / "m.int8.onnx"
    quantize_qdq(fp32, qdq, "image", tensors([0.0, 0.3, 0.6, 1.0]), 4, QuantOptions())
    cfg = section(fp32)
    assert isinstance(engine_for(cfg, qdq, SPEC), QdqSimulation)
    assert isinstance(engine_for(cfg, qdq, SPEC, cpu_int8_kernels=True), OnnxRuntimeEngine)
    assert isinstance(engine_for(cfg, fp32, SPEC), OnnxRuntimeEngine)
    assert "exact INT8" in execution(qdq, False) and "int8 kernels" in execution(qdq, True)
    with engine_for(cfg, fp32, SPEC) as a, engine_for(cfg, qdq, SPEC) as b:
        ref, cand = run_pair(a, b, tensors([0.2, 0.8]))
    assert 0 < np.abs(ref - cand).max() < 0.02


def test_missing_model_and_class_count_mismatch_are_named(tmp_path: Path) -> None:
    """A missing candidate file and an output that does not match the configured classes name the file."""
    path = linear_classifier(tmp_path / "a.onnx")
    with pytest.raises(ModelError, match=r"nope\.onnx: model file not found"):
        engine_for(section(path), tmp_path / "nope.onnx", SPEC)
    with pytest.raises(ModelError, match=r"a\.onnx: gives 2 output values per frame, .* names 3"):
        check_classes(np.zeros((4, 2)), path, ("ok", "scratch", "dent"))


def test_no_inputs_is_an_error(tmp_path: Path) -> None:
    """Comparing on no frames at all is refused rather than reported as a perfect match."""
    path = linear_classifier(tmp_path / "a.onnx")
    with engine_for(section(path), path, SPEC) as a, engine_for(section(path), path, SPEC) as b, \
            pytest.raises(ValueError, match="no input frames"):
        run_pair(a, b, [])
