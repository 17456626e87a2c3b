"""The bare engine floor: the backend's infer on a preallocated, preprocessed input in a tight loop."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from linegate.config import Config
from linegate.config.schema import runnable_model
from linegate.engine import Engine


def engine_floor(cfg: Config, runs: int, warm: int = 20) -> npt.NDArray[np.int64]:
    """Each of *runs* infers' duration in ns (after *warm* untimed ones), the model loaded as linegate
    loads it; with ``model.max_batch`` > 1, each a run of that many rows. With ``model.parallel`` set
    to a number > 1 the sessions run at once, each starting again as its run ends, and the figures are
    the intervals between results (they add up to the time taken: the engine's throughput, not one
    run's time); "auto" is timed as one frame at a time on the main session, what a frame alone gets."""
    from linegate.engine import create_engine
    from linegate.vision.preprocess import build_preprocessor

    shape = (cfg.camera.height, cfg.camera.width)
    pre = build_preprocessor(cfg.model.preprocess, shape, cfg.camera.pixel_format)
    model = runnable_model(cfg, cfg.model)
    if model.parallel == "auto":
        model = model.model_copy(update={"parallel": 1})
    engine = create_engine(model, pre.spec.shape, pre.spec.dtype)
    with engine:
        rows = engine.max_batch
        for row in range(rows):
            pre(np.full(shape, 255, dtype=np.uint8), engine.input_row(row))
        if engine.parallel > 1:
            return _parallel_intervals(engine, runs, warm)
        if rows == 1:
            engine.warm_up(warm)
            return engine.warm_up(runs)
        durations = np.zeros(warm + runs, dtype=np.int64)
        for i in range(durations.size):
            t0 = time.monotonic_ns()
            engine.infer_batch(rows)
            durations[i] = time.monotonic_ns() - t0
        return durations[warm:]


def sessions_at_load(cfg: Config) -> int:
    """How many ``model.parallel`` sessions linegate's engine gets for *cfg* (``"auto"`` is decided
    by timing the model at load, so the engine is loaded here)."""
    from linegate.engine import create_engine
    from linegate.vision.preprocess import build_preprocessor

    pre = build_preprocessor(cfg.model.preprocess, (cfg.camera.height, cfg.camera.width), cfg.camera.pixel_format)
    with create_engine(runnable_model(cfg, cfg.model), pre.spec.shape, pre.spec.dtype) as engine:
        return engine.parallel


def _parallel_intervals(engine: Engine, runs: int, warm: int) -> npt.NDArray[np.int64]:
    """``model.parallel``: every session kept busy on the engine's input until *warm* + *runs* runs
    ended; the intervals between the last *runs* ends."""
    from linegate.engine.parallel_runs import ParallelRuns

    frame_runs = engine.frame_runs()
    for run in frame_runs:
        run.input[...] = engine.input
    runner = ParallelRuns([run.run for run in frame_runs], wake=lambda: None, name="linegate-floor")
    ends: list[int] = []
    started = 0
    try:
        while len(ends) < warm + runs:
            while runner.next_idle() is not None and started < warm + runs:
                runner.start()
                started += 1
            for _i, t_end, failed in runner.finished(60.0):
                if failed is not None:
                    raise failed
                ends.append(t_end)
    finally:
        runner.close()
    ends.sort()
    kept = np.array(ends[max(0, warm - 1) :], dtype=np.int64)
    return (kept[1:] - kept[:-1]).astype(np.int64)


def floor_runs(p50_s: float, seconds: float = 5.0, least: int = 100, most: int = 2000) -> int:
    """How many runs measure the floor in about *seconds* (between *least* and *most*)."""
    return int(min(most, max(least, seconds / max(p50_s, 1e-6))))
