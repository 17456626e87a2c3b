"""Tiny ONNX models built in the test, so backend tests need no committed fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def linear_classifier(path: Path, shape: tuple[int, ...] = (1, 1, 12, 16), dynamic_batch: bool = False) -> Path:
    """mean(image) -> logits [10*m - 5, 5 - 10*m] -> softmax, as input 'image' and output 'scores'."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.array([[10.0, -10.0]], dtype=np.float32), "W")
    bias = numpy_helper.from_array(np.array([-5.0, 5.0], dtype=np.float32), "B")
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
    ]
    in_shape: list[int | str] = ["batch", *shape[1:]] if dynamic_batch else list(shape)
    out_shape: list[int | str] = ["batch", 2] if dynamic_batch else [shape[0], 2]
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, out_shape)],
        [weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def expected_scores(image: np.ndarray) -> np.ndarray:
    m = float(image.mean())
    logits = np.array([10 * m - 5, 5 - 10 * m])
    e = np.exp(logits - logits.max())
    return e / e.sum()


def constant_classifier(path: Path, shape: tuple[int, ...], scores: tuple[float, float]) -> Path:
    """Ignores the image: always the given two scores (as input 'image', output 'scores')."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["z", "table"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2])],
        [
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
            numpy_helper.from_array(np.array([scores], dtype=np.float32), "table"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
