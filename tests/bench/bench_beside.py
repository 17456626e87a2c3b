"""Benchmark: what the engine alone can do on this machine while a camera streams, the yardstick
for linegate's throughput under overload.

    python tests/bench/bench_beside.py [--config engines/resnet18/resnet18.toml] [--fps 200]
                                       [--max-batch 1,2] [--runs 600]

For each ``model.max_batch`` (2 and more: one-frame sessions side by side, ``batch_by =
"sessions"``), the model's engine runs in a tight loop (linegate.bench.floor) twice: on a quiet
machine, then beside the demo pipeline with its camera at --fps (simulated camera, acquisition
worker, ring, the demo model's inference worker, PLC worker and a recording PLC simulator: the
load a camera at that rate puts on the CPUs, with an engine that needs almost none). Prints frames
per second of each and their ratio. On a machine with few cores the camera's share of the CPUs is
what linegate's overload throughput should be read against: the demo's load is a little lighter
than linegate's own under overload (its rejects are a quarter of the frames, not every frame the
ring drops), so the figure beside is an upper bound. Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linegate.bench.floor import engine_floor  # noqa: E402
from linegate.config import Config, load_config  # noqa: E402
from linegate.demo.runner import PlcSimProcess, free_port, sim_args, with_plc_port  # noqa: E402
from linegate.pipeline.supervisor import Supervisor  # noqa: E402

SETTLE_S = 6.0
"""The demo pipeline's start (workers spawned, engine warmed) before the engine is timed beside it."""


def fps_of(cfg: Config, runs: int) -> float:
    durations = engine_floor(cfg, runs, warm=20)
    return cfg.model.max_batch * 1e9 / float(np.median(durations))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=Path, default=REPO / "engines" / "resnet18" / "resnet18.toml")
    ap.add_argument("--fps", type=float, default=200.0)
    ap.add_argument("--max-batch", default="1,2", help="comma-separated; 2 and more: sessions side by side")
    ap.add_argument("--runs", type=int, default=600)
    args = ap.parse_args()

    base = load_config(args.config)
    demo = load_config(REPO / "config" / "demo.toml")
    demo = demo.model_copy(update={"camera": demo.camera.model_copy(update={"frame_rate_hz": args.fps})})
    print(f"engine {base.model.id} ({base.model.backend}) alone, quiet and beside the demo pipeline "
          f"at {args.fps:g} fps")
    for size in (int(s) for s in args.max_batch.split(",")):
        model = base.model.model_copy(update={"max_batch": size, "batch_by": "sessions" if size > 1 else "dimension"})
        cfg = base.model_copy(update={"model": model})
        quiet = fps_of(cfg, args.runs)
        sim = PlcSimProcess(free_port(), args=sim_args(demo.plc))
        out: dict[str, float] = {}

        def timed_beside(cfg: Config = cfg, out: dict[str, float] = out) -> None:
            time.sleep(SETTLE_S)
            out["fps"] = fps_of(cfg, args.runs)
            out["done"] = time.monotonic()

        timer = threading.Thread(target=timed_beside)
        timer.start()
        frames = int(args.fps * (SETTLE_S + 4 + args.runs * size / quiet * 3))  # outlasts the timed runs
        try:  # the Supervisor handles signals: it runs on the main thread, the engine beside it
            summary = Supervisor(
                with_plc_port(demo, sim.port), log_file=Path(tempfile.mkdtemp()) / "demo.jsonl",
                log_stdout=False, max_frames=frames,
            ).run()  # fmt: skip
            pipeline_ended = time.monotonic()
        finally:
            timer.join()
            sim.stop()
        overlap = "timed while the pipeline ran" if out.get("done", 0) < pipeline_ended else "PIPELINE ENDED FIRST"
        problems = "; ".join(summary.problems) or "none"
        label = f"sessions {size}" if size > 1 else "batch 1"
        print(f"{label:10s} quiet {quiet:7.1f} frames/s   beside the camera {out.get('fps', 0):7.1f} frames/s   "
              f"ratio {out.get('fps', 0) / quiet:.2f}   ({overlap}; pipeline problems: {problems})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
