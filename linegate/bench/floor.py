"""The bare engine floor: the backend's infer on a preallocated, preprocessed input in a tight loop."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from linegate.config import Config


def engine_floor(cfg: Config, runs: int, warm: int = 20) -> npt.NDArray[np.int64]:
    """Each of *runs* infers' duration in ns (after *warm* untimed ones), the model loaded as linegate loads it."""
    from linegate.engine import create_engine
    from linegate.vision.preprocess import build_preprocessor

    shape = (cfg.camera.height, cfg.camera.width)
    pre = build_preprocessor(cfg.model.preprocess, shape, cfg.camera.pixel_format)
    engine = create_engine(cfg.model, pre.spec.shape, pre.spec.dtype)
    with engine:
        pre(np.full(shape, 255, dtype=np.uint8), engine.input)
        engine.warm_up(warm)
        return engine.warm_up(runs)


def floor_runs(p50_s: float, seconds: float = 5.0, least: int = 100, most: int = 2000) -> int:
    """How many runs measure the floor in about *seconds* (between *least* and *most*)."""
    return int(min(most, max(least, seconds / max(p50_s, 1e-6))))
