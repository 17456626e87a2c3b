"""The whole benchmark: for each model, its engine floor, the rates it implies, and each scenario."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from linegate.bench.floor import engine_floor, floor_runs
from linegate.bench.runner import ScenarioResult, run_scenario
from linegate.bench.scenarios import camera_max_fps, model_spec, plan, with_model


def stderr(line: str) -> None:
    print(f"linegate bench: {line}", file=sys.stderr, flush=True)


@dataclass
class Options:
    models: Sequence[str]
    frames: int
    quick: bool = False
    engine: dict[str, object] = field(default_factory=dict)
    """``[model]`` settings that replace each model's own (``--threads``, ``--spinning``)."""
    progress: Callable[[str], None] = field(default=stderr)


def run_suite(opts: Options, tmp: Path) -> tuple[list[ScenarioResult], dict[str, str]]:
    """Every scenario of every model; models that cannot run are returned with the reason."""
    from linegate.config import load_config

    results: list[ScenarioResult] = []
    skipped: dict[str, str] = {}
    floor_seconds = 1.0 if opts.quick else 5.0
    for name in opts.models:
        spec = model_spec(name)
        if spec.config is None:
            skipped[name] = spec.skipped
            opts.progress(f"{name}: {spec.skipped}")
            continue
        base = load_config(spec.config)
        if opts.engine:
            base = with_model(base, **opts.engine)
        p50_s = float(np.median(engine_floor(base, 20))) / 1e9
        runs = floor_runs(p50_s, floor_seconds)
        floor = engine_floor(base, runs)
        p50_s = float(np.median(floor)) / 1e9
        floor_fps = len(floor) / (float(floor.sum()) / 1e9)
        cam_max = camera_max_fps(base)
        opts.progress(f"{name}: engine floor p50 {p50_s * 1e3:.3f} ms ({floor_fps:.0f} fps), camera max "
                      f"{cam_max:g} fps")
        for sc in plan(name, p50_s, floor_fps, cam_max, opts.frames, quick=opts.quick):
            opts.progress(f"{name} {sc.load}: {sc.fps:g} fps, {sc.frames} frames: linegate, naive, floor ...")
            result = run_scenario(base, spec.config, sc, tmp, runs)
            result.floor_plan_p50_ms = p50_s * 1e3
            results.append(result)
    return results, skipped
