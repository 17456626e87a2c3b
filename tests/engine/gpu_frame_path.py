"""The GPU frame path's last step, for the TensorRT tests: an image copied to the engine's device
input, then ``enqueue_on_device_input`` (needs cuda-python and a GPU)."""

from __future__ import annotations

from typing import Any

import numpy as np


def device_scores(engine: Any, image: np.ndarray) -> np.ndarray:
    """*image* copied to the device input, the engine run on it there; its output (a copy)."""
    from linegate.engine import cuda_memory as cm

    host = cm.PinnedBuffer(image.nbytes)
    try:
        host.array(image.shape, image.dtype)[...] = image
        cm.copy_h2d_async(engine.device_input, host.ptr, image.nbytes, engine.stream)
        engine.enqueue_on_device_input(engine.stream)
        engine.stream.synchronize()
        return np.array(engine.output)
    finally:
        host.close()
