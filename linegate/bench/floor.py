"""The bare engine floor: the backend's infer on a preallocated, preprocessed input in a tight loop."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from linegate.config import Config


def engine_floor(cfg: Config, runs: int, warm: int = 20) -> npt.NDArray[np.int64]:
    """Each of *runs* infers' duration in ns (after *warm* untimed ones), the model loaded as linegate
    loads it; with ``model.max_batch`` > 1, each a run of that many rows."""
    from linegate.engine import create_engine
    from linegate.vision.preprocess import build_preprocessor

    shape = (cfg.camera.height, cfg.camera.width)
    pre = build_preprocessor(cfg.model.preprocess, shape, cfg.camera.pixel_format)
    engine = create_engine(cfg.model, pre.spec.shape, pre.spec.dtype)
    with engine:
        rows = engine.max_batch
        for row in range(rows):
            pre(np.full(shape, 255, dtype=np.uint8), engine.input_row(row))
        if rows == 1:
            engine.warm_up(warm)
            return engine.warm_up(runs)
        durations = np.zeros(warm + runs, dtype=np.int64)
        for i in range(durations.size):
            t0 = time.monotonic_ns()
            engine.infer_batch(rows)
            durations[i] = time.monotonic_ns() - t0
        return durations[warm:]


def floor_runs(p50_s: float, seconds: float = 5.0, least: int = 100, most: int = 2000) -> int:
    """How many runs measure the floor in about *seconds* (between *least* and *most*)."""
    return int(min(most, max(least, seconds / max(p50_s, 1e-6))))
