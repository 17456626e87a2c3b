"""Two engines on the same input tensors: the loaded-engine side of ``compare`` and ``calibrate``.

Engines are linegate's own (:mod:`linegate.engine`), so a comparison runs the model exactly as the
line does: ONNX Runtime for ``.onnx`` files (FP32 or QDQ INT8), TensorRT for ``.engine``/``.plan``
files where TensorRT is installed. Each frame is preprocessed once and the same tensor is copied into
both engines' bound inputs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from linegate.config.schema import ModelSection
from linegate.engine import Engine, create_engine
from linegate.engine.accuracy import Outputs
from linegate.errors import LinegateError, ModelError
from linegate.vision.preprocess import InputSpec

ONNX_SUFFIXES = (".onnx",)
TENSORRT_SUFFIXES = (".engine", ".plan")


def backend_for(path: Path) -> str:
    """The backend that runs *path*, by its suffix."""
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnxruntime"
    if suffix in TENSORRT_SUFFIXES:
        return "tensorrt"
    known = ", ".join((*ONNX_SUFFIXES, *TENSORRT_SUFFIXES))
    raise ModelError(f"{path}: unknown model type {suffix!r} (expected {known})")


def require_onnx(what: str) -> None:
    """The onnx package (the ``toolchain`` extra), or an error saying how to install it."""
    if importlib.util.find_spec("onnx") is None:
        raise LinegateError(f"{what} needs the onnx package: pip install 'linegate[toolchain]'")


def tensorrt_missing() -> str | None:
    """Why TensorRT engines cannot run here, or None when the tensorrt module is importable."""
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT's Python bindings are not installed here (they come with JetPack on the Jetson)"
    return None


def engine_for(
    model: ModelSection, path: Path, spec: InputSpec, threads: int | None = None, *, cpu_int8_kernels: bool = False
) -> Engine:
    """*model*'s settings with *path* and the backend its suffix names; not loaded yet (use ``with``).

    A QDQ ``.onnx`` model runs as :class:`~linegate.engine.quantize.QdqSimulation` (each quantised
    tensor at its exact INT8 value, as TensorRT's explicit quantisation prescribes) unless
    *cpu_int8_kernels*: then through linegate's ONNX Runtime backend, with its fused CPU int8
    kernels, as ``linegate run`` would run it.
    """
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    update: dict[str, object] = {"path": path, "backend": backend_for(path), "parallel": 1}  # one frame at a time
    if threads is not None:
        update["threads"] = threads
    cfg = model.model_copy(update=update)
    engine: Engine
    if cfg.backend == "onnxruntime" and not cpu_int8_kernels and is_qdq(path):
        from linegate.engine.quantize import QdqSimulation

        engine = QdqSimulation(cfg, spec.shape, spec.dtype)
    else:
        engine = create_engine(cfg, spec.shape, spec.dtype)
    return engine


def is_qdq(path: Path) -> bool:
    """Whether the ONNX model at *path* is quantised with QuantizeLinear/DequantizeLinear nodes."""
    require_onnx("reading ONNX models' nodes")
    from linegate.engine.quantize import has_qdq

    return has_qdq(path)


def execution(path: Path, cpu_int8_kernels: bool) -> str:
    """How :func:`engine_for` runs *path*, in words for reports."""
    backend = backend_for(path)
    if backend == "tensorrt":
        return "TensorRT engine"
    if not is_qdq(path):
        return "ONNX Runtime CPU (linegate's onnxruntime backend)"
    if cpu_int8_kernels:
        return "ONNX Runtime CPU int8 kernels (linegate's onnxruntime backend, Q/DQ fused)"
    return "QDQ simulated in ONNX Runtime: Q/DQ as float operations, each quantised tensor at its exact INT8 value"


def run_pair(
    reference: Engine, candidate: Engine, inputs: Iterable[npt.NDArray[np.floating]]
) -> tuple[Outputs, Outputs]:
    """Both engines on each input tensor; one row of flattened output per input for each."""
    ref_rows: list[Outputs] = []
    cand_rows: list[Outputs] = []
    for tensor in inputs:
        np.copyto(reference.input, tensor, casting="same_kind")
        np.copyto(candidate.input, tensor, casting="same_kind")
        ref_rows.append(reference.infer().reshape(-1).astype(np.float32))
        cand_rows.append(candidate.infer().reshape(-1).astype(np.float32))
    if not ref_rows:
        raise ValueError("no input frames")
    ref, cand = np.stack(ref_rows), np.stack(cand_rows)
    if ref.shape != cand.shape:
        raise ModelError(
            f"{candidate.cfg.path}: gives {cand.shape[1]} output values per frame, "
            f"{reference.cfg.path} gives {ref.shape[1]}: not the same model"
        )
    return ref, cand


def check_classes(outputs: Outputs, model_path: Path, classes: tuple[str, ...]) -> None:
    """The output must have one score per configured class (model.postprocess.classes)."""
    if outputs.shape[1] != len(classes):
        raise ModelError(
            f"{model_path}: gives {outputs.shape[1]} output values per frame, model.postprocess.classes names "
            f"{len(classes)} {list(classes)}"
        )
