"""Inference engines behind one contract; backends are imported lazily by name.

The CPU path never imports tensorrt, and the GPU path never imports onnxruntime.
"""

from __future__ import annotations

import importlib

import numpy as np

from linegate.config.schema import ModelSection
from linegate.engine.base import Engine
from linegate.errors import ModelError

BACKENDS: dict[str, str] = {
    "onnxruntime": "linegate.engine.ort_backend:OnnxRuntimeEngine",
    "tensorrt": "linegate.engine.trt_backend:TensorRTEngine",
}


def create_engine(cfg: ModelSection, input_shape: tuple[int, ...], input_dtype: np.dtype[np.floating]) -> Engine:
    """Instantiate (not load) the backend named by ``cfg.backend``."""
    target = BACKENDS[cfg.backend]
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"model.backend={cfg.backend!r} is not available here: {exc}") from exc
    engine_cls: type[Engine] = getattr(module, attr)
    return engine_cls(cfg, input_shape, input_dtype)


__all__ = ["BACKENDS", "Engine", "create_engine"]
