"""Benchmark: frames decided by the model per second under overload, with and without CPU partitioning.

    python tests/bench/bench_partition.py [--model resnet18] [--threads 14,12] [--reserve 2,4]
                                          [--frames 1500] [--rounds 2] [--fps MAX]

Question: on a many-core machine, does an ONNX Runtime pool that spans every CPU lose throughput to
linegate's own workers (acquisition, PLC, supervisor, and here the simulated camera and PLC), whose
work lands on the pool's cores and makes one pool thread late for every parallel operator? Each
setting runs linegate (oldest_first, one frame at a time) on the simulated camera at --fps (default
the camera's maximum) next to the engine alone at the same thread count, alternated for --rounds:

- "shared": model.threads = T, no affinity (today's default);
- "split R": model.threads = T, the inference worker pinned to CPUs R.., the acquisition and PLC
  workers to CPUs 0..R-1, and this process (the supervisor and the PLC simulator) to 0..R-1 too.

Prints one Markdown table: decided by the model per second, the floor's throughput at that setting
(measured in this process, pinned like the inference worker), their ratio, camera frames lost, and
p50/p99 frame in hand -> verdict. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linegate.bench.floor import engine_floor  # noqa: E402
from linegate.bench.records import rising_edges  # noqa: E402
from linegate.bench.runner import analyse_linegate, run_linegate  # noqa: E402
from linegate.bench.scenarios import bench_config, camera_max_fps, model_spec, with_model  # noqa: E402
from linegate.config import Config, load_config  # noqa: E402
from linegate.demo.runner import PlcSimProcess, free_port, sim_args, with_plc_port  # noqa: E402


def with_split(cfg: Config, reserve: int, cpus: int) -> Config:
    """*cfg* with the inference worker on CPUs reserve.. and the other workers on 0..reserve-1."""
    data = cfg.model_dump()
    low, high = list(range(reserve)), list(range(reserve, cpus))
    data["scheduling"].update(infer_cpus=high, acquire_cpus=low, plc_cpus=low)
    return Config.model_validate(data)


def floor_fps(cfg: Config, runs: int) -> float:
    """The engine alone, in this process, pinned as the inference worker would be."""
    before = os.sched_getaffinity(0)
    if cfg.scheduling.infer_cpus:
        os.sched_setaffinity(0, set(cfg.scheduling.infer_cpus))
    try:
        durations = engine_floor(cfg, runs)
    finally:
        os.sched_setaffinity(0, before)
    return float(1e9 / np.median(durations))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--threads", default="14,12")
    ap.add_argument("--reserve", default="2,4", help="CPUs left to the other workers, one per --threads entry")
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fps", type=float, default=0.0, help="camera rate (default: the camera's maximum)")
    ap.add_argument("--floor-runs", type=int, default=300)
    args = ap.parse_args()

    spec = model_spec(args.model)
    if spec.config is None:
        print(spec.skipped)
        return 1
    cpus = len(os.sched_getaffinity(0))
    base = load_config(spec.config)
    fps = args.fps or camera_max_fps(base)
    settings = []
    for threads, reserve in zip(args.threads.split(","), args.reserve.split(","), strict=True):
        t, r = int(threads), int(reserve)
        shared = with_model(base, threads=t)
        settings += [(f"shared, {t} threads", shared), (f"split {r}, {t} threads", with_split(shared, r, cpus))]
    tmp = Path(tempfile.mkdtemp(prefix="linegate-partition-"))
    rows = []
    home = os.sched_getaffinity(0)
    for rnd in range(args.rounds):
        for name, setting in settings:
            split = bool(setting.scheduling.acquire_cpus)
            if split:  # the supervisor (this process) and the simulator it starts share the low CPUs
                os.sched_setaffinity(0, set(setting.scheduling.acquire_cpus))
            try:
                cfg = bench_config(setting, fps, 1)
                sim = PlcSimProcess(free_port(), args=sim_args(cfg.plc))
                try:
                    cfg = with_plc_port(cfg, sim.port)
                    lg = run_linegate(cfg, args.frames, tmp / f"{rnd}-{len(rows)}.jsonl")
                    time.sleep(0.3)
                finally:
                    sim.stop()
            finally:
                os.sched_setaffinity(0, home)
            assert cfg.plc.modbus is not None
            side = analyse_linegate(*lg, rising_edges(sim.edges, int(cfg.plc.modbus.reject_coil or 0)), fps)
            floor = floor_fps(setting, args.floor_runs)
            rows.append((rnd, name, side, floor))
            print(f"round {rnd} {name}: by model {side.throughput_fps:.1f} fps, floor {floor:.1f} fps, "
                  f"lost {side.lost}, problems {side.problems or 'none'}", file=sys.stderr, flush=True)
    print(f"{args.model} at {fps:g} fps, {args.frames} frames per run, {cpus} CPUs, oldest_first, batch 1\n")
    print("| round | setting | by model fps | floor fps | ratio | camera frames lost | share by model "
          "| in hand -> verdict p50 | p99 |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for rnd, name, side, floor in rows:
        share = side.by_model / max(1, side.camera_frames)
        print(f"| {rnd} | {name} | {side.throughput_fps:.1f} | {floor:.1f} | {side.throughput_fps / floor:.2f} "
              f"| {side.lost} | {share:.1%} | {side.verdict.p50:.2f} | {side.verdict.p99:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
