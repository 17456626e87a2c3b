"""Benchmark: end-to-end latency of the real pipeline on the demo config, next to the bare engine floor.

    python tests/bench/bench_pipeline.py [--frames 10000] [--fps 100] [--budget-ms 50] [--out FILE]

End-to-end runs from the frame's acquisition time (host clock at fetch; the camera's timestamp where
it has one) to the moment its verdict was handed off, so a loop lagging the camera cannot hide it.
Overhead = end-to-end minus that frame's own engine time. The engine floor is the backend's infer on
a preallocated input in a tight loop, measured in this same run before and after the pipeline.
Prints numbers; asserts nothing (timing goals do not belong in unit tests on noisy machines).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linegate.bench.floor import engine_floor as bench_floor  # noqa: E402
from linegate.config import Config, load_config  # noqa: E402
from linegate.demo.runner import PlcSimProcess, free_port, with_plc_port  # noqa: E402
from linegate.pipeline.supervisor import Supervisor  # noqa: E402


def engine_floor(cfg: Config, runs: int) -> np.ndarray:
    """Each run's duration: infer on the bound input, nothing else (linegate.bench.floor)."""
    return bench_floor(cfg, runs, warm=100)


def pct(values: np.ndarray, qs: tuple[float, ...] = (50, 99, 99.9)) -> str:
    if values.size == 0:
        return "n=0"
    p = np.percentile(values, qs)
    return "  ".join(f"p{q:g} {v:7.3f}" for q, v in zip(qs, p, strict=True)) + f"  max {values.max():7.3f}  (ms)"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=Path, default=REPO / "config" / "demo.toml")
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--fps", type=float, default=100.0)
    ap.add_argument("--budget-ms", type=float, default=50.0)
    ap.add_argument("--out", type=Path, help="keep the JSON records here")
    ap.add_argument("--infer-rt-priority", type=int, help="override scheduling.infer_rt_priority (0: normal scheduler)")
    args = ap.parse_args()

    cfg = load_config(args.config)
    camera = cfg.camera.model_copy(update={"frame_rate_hz": args.fps})
    deadline = cfg.deadline.model_copy(update={"budget_ms": args.budget_ms})
    cfg = cfg.model_copy(update={"camera": camera, "deadline": deadline})
    if args.infer_rt_priority is not None:
        sched = cfg.scheduling.model_copy(update={"infer_rt_priority": args.infer_rt_priority})
        cfg = cfg.model_copy(update={"scheduling": sched})
    log_path = args.out or Path(tempfile.mkdtemp()) / "bench.jsonl"

    floor_before = engine_floor(cfg, 2000) / 1e6
    sim = PlcSimProcess(free_port(), cfg.plc.modbus.part_id_register or 0)
    try:
        cfg = with_plc_port(cfg, sim.port)
        t0 = time.monotonic()
        summary = Supervisor(cfg, log_file=log_path, log_stdout=False, max_frames=args.frames).run()
        wall = time.monotonic() - t0
    finally:
        sim.stop()
    floor_after = engine_floor(cfg, 2000) / 1e6

    frames = [r for r in map(json.loads, log_path.read_text().splitlines()) if r.get("event") == "frame"]
    decided = [r for r in frames if "infer_ms" in r]
    col = {
        k: np.array([r[k] for r in decided], dtype=np.float64)
        for k in (
            "total_ms",
            "write_ms",
            "queued_ms",
            "loop_wait_ms",
            "preprocess_ms",
            "infer_ms",
            "postprocess_ms",
            "handoff_ms",
        )
    }
    modelled = np.array([r["basis"] == "model" for r in decided])
    overhead = col["total_ms"][modelled] - col["infer_ms"][modelled]
    s = summary.counters.as_record()
    print(
        f"linegate pipeline benchmark: {cfg.camera.width}x{cfg.camera.height} {cfg.camera.pixel_format} at "
        f"{args.fps:g} fps set, budget {args.budget_ms:g} ms, model {cfg.model.id} ({cfg.model.backend}), "
        f"inference SCHED_FIFO priority {cfg.scheduling.infer_rt_priority}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(
        f"frames: acquired {s['acquired']}, decided {s['decided']}, dropped {s['dropped']}, "
        f"records {len(frames)}, achieved {s['acquired'] / wall:.1f} fps over {wall:.1f} s"
    )
    print(
        f"deadline misses: {s['deadline_missed']} missed + {s['deadline_unreachable']} unreachable "
        f"of {s['decided']} ({args.budget_ms:g} ms budget); camera frames lost {s['camera_lost']}"
    )
    print(
        f"rejects: {s['rejected']}, delivered {s['plc_delivered']}, undelivered "
        f"{s['plc_undelivered'] + s['plc_queue_full']}; PLC pulses seen by the simulator "
        f"{len(sim.rising_part_ids(cfg.plc.modbus.reject_coil))}"
    )
    print(f"reconciliation problems: {summary.problems or 'none'}")
    print()
    print(f"end-to-end (acquired -> verdict handed off) {pct(col['total_ms'])}")
    print(f"overhead = end-to-end - engine            {pct(overhead)}")
    for stage in ("write_ms", "queued_ms", "preprocess_ms", "infer_ms", "postprocess_ms", "handoff_ms"):
        print(f"  stage {stage[:-3]:<34} {pct(col[stage])}")
    print(f"  (loop idle waiting for the frame)        {pct(col['loop_wait_ms'])}")
    print(f"engine floor (tight loop), before         {pct(floor_before)}")
    print(f"engine floor (tight loop), after          {pct(floor_after)}")
    if not args.out:
        log_path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
