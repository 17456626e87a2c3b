"""A batch-dynamic copy of an ONNX model for the bench's batching side (``model.max_batch``).

A model exported with a fixed batch of 1 often has a batch-agnostic graph (convolutions, pooling,
Flatten, Gemm): marking dimension 0 of its input and output symbolic is then enough. The copy is
used only if ONNX Runtime gives each row of a batch the scores of that row run alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BATCH_CHECK_ROWS = 3


def batch_dynamic(model: Path, out_dir: Path) -> Path:
    """*model* itself if its batch dimension is already dynamic, else a checked copy in *out_dir*.

    Raises ValueError naming the model when no batch-dynamic copy can be made or checked.
    """
    import onnxruntime as ort

    from linegate.engine.ort_backend import fixed_batch

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    if not fixed_batch(*session.get_inputs(), *session.get_outputs()):
        return model
    try:
        import onnx
    except ImportError:
        raise ValueError(f"{model}: fixed batch dimension, and the onnx package (pip install 'linegate[bench]') "
                         "is not installed to make a batch-dynamic copy") from None
    proto = onnx.load(str(model))
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    out = out_dir / f"{model.stem}-batch.onnx"
    onnx.save(proto, str(out))
    _check_rows(model, out)
    return out


def _check_rows(model: Path, copy: Path) -> None:
    """Each row of a batch run of *copy* equals *model* on that row alone (else ValueError)."""
    import onnxruntime as ort

    one = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    try:
        many = ort.InferenceSession(str(copy), providers=["CPUExecutionProvider"])
    except Exception as exc:  # the graph fixes the batch somewhere (e.g. a Reshape to 1 x N)
        raise ValueError(f"{model}: its graph is not batch-agnostic ({exc})") from None
    inp = one.get_inputs()[0]
    rng = np.random.default_rng(0)
    rows = rng.random((BATCH_CHECK_ROWS, *inp.shape[1:]), dtype=np.float32)
    alone = np.concatenate([one.run(None, {inp.name: rows[i : i + 1]})[0] for i in range(BATCH_CHECK_ROWS)])
    try:
        batched = many.run(None, {inp.name: rows})[0]
    except Exception as exc:
        raise ValueError(f"{model}: its graph is not batch-agnostic ({exc})") from None
    if batched.shape != alone.shape or not np.allclose(batched, alone, rtol=1e-4, atol=1e-5):
        raise ValueError(f"{model}: a batch of {BATCH_CHECK_ROWS} does not give each row its own scores")
