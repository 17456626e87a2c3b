"""Tiny ONNX models for the TensorRT tests: any input shape (fixed or symbolic), optionally quantized (Q/DQ)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

Dim = int | str


def pooled_classifier(path: Path, dims: Sequence[Dim], *, qdq: bool = False, name: str = "image") -> Path:
    """mean over height and width -> 2 softmax scores; input *name* of *dims* (NCHW, one channel).

    String dimensions are symbolic (dynamic). With *qdq* the input passes QuantizeLinear and
    DequantizeLinear (int8, scale 1/127) first: an explicitly quantized model as ``linegate calibrate``
    writes them.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.array([[10.0, -10.0]], dtype=np.float32), "W"),
        numpy_helper.from_array(np.array([-5.0, 5.0], dtype=np.float32), "B"),
    ]
    nodes = []
    source = name
    if qdq:
        inits += [
            numpy_helper.from_array(np.array(1.0 / 127.0, dtype=np.float32), "q_scale"),
            numpy_helper.from_array(np.array(0, dtype=np.int8), "q_zero"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", [name, "q_scale", "q_zero"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "q_scale", "q_zero"], ["dq"]),
        ]
        source = "dq"
    nodes += [
        helper.make_node("GlobalAveragePool", [source], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "pooled",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [dims[0], 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def expected_scores(image: np.ndarray) -> np.ndarray:
    """The model's scores for each item of a batch, computed in float64."""
    m = image.reshape(image.shape[0], -1).astype(np.float64).mean(axis=1)
    logits = np.stack([10 * m - 5, 5 - 10 * m], axis=1)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
