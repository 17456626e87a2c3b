"""Static INT8 quantisation to QDQ: TensorRT-ready (symmetric int8), close to FP32, errors that name the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test models and runs the quantiser")

import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from linegate.engine.quantize import QuantOptions, model_input_name, quantize_qdq, stride_for
from linegate.errors import ConfigError, ModelError

SHAPE = (1, 1, 12, 16)


def conv_classifier(path: Path) -> Path:
    """image -> Conv(2 channels, 3x3) -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> Softmax 'scores'."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (2, 1, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(np.array([0.1, -0.1], dtype=np.float32), "conv_b"),
        numpy_helper.from_array(np.array([[3.0, -2.0], [-1.0, 4.0]], dtype=np.float32), "fc_w"),
        numpy_helper.from_array(np.array([0.2, -0.2], dtype=np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["scores"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def frames(n: int, seed: int) -> Iterator[np.ndarray]:
    """Input tensors like preprocessed frames: values in [0, 1], each frame with its own brightness."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield (rng.uniform(0, 1, SHAPE) * rng.uniform(0.3, 1.0)).astype(np.float32)


def run(path: Path, tensor: np.ndarray) -> np.ndarray:
    """*path* on *tensor*, with Q/DQ as float operations (basic graph optimisation: no int8 kernel fusion)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"image": tensor})[0])


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return np.asarray(numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name)))


def node_inputs_from_dq(model: onnx.ModelProto, node_name: str) -> list[bool]:
    """For each input of *node_name*: is it produced by a DequantizeLinear?"""
    producers = {out: n.op_type for n in model.graph.node for out in n.output}
    node = next(n for n in model.graph.node if n.name == node_name)
    return [producers.get(i) == "DequantizeLinear" for i in node.input if i]


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return conv_classifier(tmp_path_factory.mktemp("q") / "conv.onnx")


@pytest.fixture(scope="module")
def int8(fp32: Path) -> Path:
    out = fp32.with_name("conv.int8.onnx")
    assert quantize_qdq(fp32, out, "image", frames(24, seed=1), 24, QuantOptions()) == 24
    return out


def test_qdq_zero_points_are_zero_and_int8_as_tensorrt_needs(int8: Path) -> None:
    """Every Q/DQ zero point is 0 (TensorRT takes symmetric quantisation only), int8 except int32 biases."""
    model = onnx.load(str(int8))
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) >= 10
    for node in qdq:
        zero_point = initializer(model, node.input[2])
        bias = node.output[0] in ("conv_b", "fc_b")
        assert zero_point.dtype == (np.int32 if bias else np.int8) and not zero_point.any(), node.name


def test_conv_and_gemm_run_on_quantised_inputs_with_per_channel_weights(int8: Path) -> None:
    """Conv and Gemm read every input through DequantizeLinear; the conv weight has one scale per output channel."""
    model = onnx.load(str(int8))
    assert node_inputs_from_dq(model, "conv") == [True, True, True]
    assert node_inputs_from_dq(model, "fc")[:2] == [True, True]
    dq_of = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    conv = next(n for n in model.graph.node if n.name == "conv")
    assert initializer(model, dq_of[conv.input[1]].input[1]).shape == (2,)


def test_per_tensor_option_gives_one_weight_scale(fp32: Path, tmp_path: Path) -> None:
    """--per-tensor: the conv weight's DequantizeLinear has a single scale."""
    out = tmp_path / "pt.onnx"
    quantize_qdq(fp32, out, "image", frames(8, seed=1), 8, QuantOptions(per_channel=False))
    model = onnx.load(str(out))
    dq_of = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    conv = next(n for n in model.graph.node if n.name == "conv")
    assert initializer(model, dq_of[conv.input[1]].input[1]).size == 1


def test_int8_scores_follow_fp32_on_frames_not_calibrated_on(fp32: Path, int8: Path) -> None:
    """On held-out frames INT8 scores are within 0.03 of FP32, and not identical (the model is really quantised)."""
    diffs = [np.abs(run(int8, t) - run(fp32, t)).max() for t in frames(20, seed=2)]
    assert max(diffs) < 0.03
    assert max(diffs) > 0.0


def test_excluded_node_stays_float(fp32: Path, tmp_path: Path) -> None:
    """A node named in exclude_nodes keeps float weights and bias; the other nodes are still quantised."""
    out = tmp_path / "ex.onnx"
    quantize_qdq(fp32, out, "image", frames(8, seed=1), 8, QuantOptions(exclude_nodes=("fc",)))
    model = onnx.load(str(out))
    assert node_inputs_from_dq(model, "fc")[1:] == [False, False]
    assert node_inputs_from_dq(model, "conv") == [True, True, True]


def test_every_calibration_frame_counts_towards_the_ranges(fp32: Path, tmp_path: Path) -> None:
    """The brightest frame sets the input range even when it comes first of 70 (merged in strides, none dropped)."""

    def set_of_70() -> Iterator[np.ndarray]:
        yield np.full(SHAPE, 1.0, dtype=np.float32)
        for _ in range(69):
            yield np.full(SHAPE, 0.1, dtype=np.float32)

    out = tmp_path / "ranges.onnx"
    assert quantize_qdq(fp32, out, "image", set_of_70(), 70, QuantOptions()) == 70
    scale = float(initializer(onnx.load(str(out)), "image_scale"))
    assert scale == pytest.approx(1.0 / 127.0, rel=1e-6)


def test_stride_divides_the_frame_count() -> None:
    """Strided calibration takes the largest stride up to 32 that divides the count (1 for a prime count)."""
    assert [stride_for(n) for n in (600, 601, 10, 64, 1)] == [30, 1, 10, 32, 1]


def test_fewer_frames_than_announced_is_an_error(fp32: Path, tmp_path: Path) -> None:
    """A frame source that runs dry early is an error naming the model and both counts, and leaves no model."""
    with pytest.raises(ModelError, match=r"conv\.onnx: calibration got 3 frames, expected 5"):
        quantize_qdq(fp32, tmp_path / "x.onnx", "image", frames(3, seed=1), 5, QuantOptions())
    assert not (tmp_path / "x.onnx").exists()


def test_no_frames_is_an_error_naming_the_model(fp32: Path, tmp_path: Path) -> None:
    """Quantising with an empty calibration set is refused, naming the model."""
    with pytest.raises(ModelError, match=r"conv\.onnx: no calibration frames"):
        quantize_qdq(fp32, tmp_path / "x.onnx", "image", iter([]), 0, QuantOptions())
    assert not (tmp_path / "x.onnx").exists()


def test_unreadable_frame_error_is_passed_through(fp32: Path, tmp_path: Path) -> None:
    """A calibration file that cannot be read surfaces as its own error (naming that file), not as a model error."""

    def broken() -> Iterator[np.ndarray]:
        yield from frames(2, seed=1)
        raise ConfigError("frame-0003.png: not a readable image")

    with pytest.raises(ConfigError, match=r"frame-0003\.png") as info:
        quantize_qdq(fp32, tmp_path / "x.onnx", "image", broken(), 3, QuantOptions())
    assert not isinstance(info.value, ModelError)


def test_not_a_model_is_refused_naming_the_file(tmp_path: Path) -> None:
    """A file that is not an ONNX model is refused by name, when reading its input and when quantising."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match=r"bad\.onnx: not a readable ONNX model"):
        model_input_name(bad, None)
    with pytest.raises(ModelError, match=r"bad\.onnx: cannot quantise"):
        quantize_qdq(bad, tmp_path / "x.onnx", "image", frames(2, seed=1), 2, QuantOptions())


def test_input_name_is_the_only_input_or_the_configured_one(fp32: Path) -> None:
    """The single input is found by itself; a configured name that is not an input names the real ones."""
    assert model_input_name(fp32, None) == "image"
    assert model_input_name(fp32, "image") == "image"
    with pytest.raises(ModelError, match=r"conv\.onnx: model.input_name='img' is not an input of the model \['image'"):
        model_input_name(fp32, "img")


def test_symbolic_batch_dimension_is_kept(tmp_path: Path) -> None:
    """A model exported with a dynamic batch quantises on batch-1 frames and keeps its symbolic batch."""
    from tests.engine.onnx_models import linear_classifier

    fp32 = linear_classifier(tmp_path / "dyn.onnx", dynamic_batch=True)
    out = tmp_path / "dyn.int8.onnx"
    assert quantize_qdq(fp32, out, "image", frames(4, seed=1), 4, QuantOptions()) == 4
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 1, 12, 16]
