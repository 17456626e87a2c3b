"""Benchmark: how busy ``model.parallel``'s sessions are under overload, and what they wait for.

    python tests/bench/bench_session_gaps.py [--model resnet18] [--fps 200] [--frames 3000]
                                             [--parallel 2] [--threads N]

Runs linegate's pipeline (as ``linegate bench`` does) on the simulated camera at --fps with a
recording PLC simulator, then reads the frame records: per session, the share of the time its
runs took (a run starts after the frame's preprocessing and ends when the session's thread
returns), the gaps between one run's end and the next run's start on it, and the preprocessing
time (less a staged frame's wait for a session), which is part of each gap unless the frame was
staged. Frames decided alone on the main session are listed as session None. Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linegate.bench.runner import run_linegate  # noqa: E402
from linegate.bench.scenarios import bench_config, model_spec, with_model  # noqa: E402
from linegate.config import load_config  # noqa: E402
from linegate.demo.runner import PlcSimProcess, free_port, sim_args, with_plc_port  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--fps", type=float, default=200.0)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--threads", default="", help="model.threads (default: the model's configuration)")
    args = ap.parse_args()
    spec = model_spec(args.model)
    if spec.config is None:
        print(spec.skipped)
        return 1
    threads = {"threads": int(args.threads)} if args.threads else {}
    cfg = with_model(bench_config(load_config(spec.config), args.fps, 1), parallel=args.parallel, **threads)
    sim = PlcSimProcess(free_port(), args=sim_args(cfg.plc))
    try:
        cfg = with_plc_port(cfg, sim.port)
        with tempfile.TemporaryDirectory(prefix="linegate-gaps-") as tmp:
            _window, records, _counters, problems = run_linegate(cfg, args.frames, Path(tmp) / "run.jsonl")
    finally:
        sim.stop()
    frames = [r for r in records if r.get("event") == "frame" and r["basis"] == "model"]
    print(f"{args.model} at {args.fps:g} fps, parallel {args.parallel}, threads {args.threads or 'as configured'}: "
          f"{len(frames)} of {args.frames} frames by the model; problems {problems or 'none'}")
    for session in sorted({r.get("session") for r in frames}, key=lambda s: (s is None, s)):
        mine = sorted((r for r in frames if r.get("session") == session), key=lambda r: r["t_picked_ns"])
        if len(mine) < 10:
            continue
        starts = np.array([r["t_picked_ns"] + r["preprocess_ms"] * 1e6 for r in mine])
        ends = starts + np.array([r["infer_ms"] * 1e6 for r in mine])
        gaps = (starts[1:] - ends[:-1]) / 1e6
        print(f"session {session}: {len(mine)} frames, busy {(ends - starts).sum() / (ends[-1] - starts[0]):.3f}, "
              f"run p50 {np.median(ends - starts) / 1e6:.2f} ms, gap p50 {np.median(gaps):.3f} / p90 "
              f"{np.percentile(gaps, 90):.3f} / mean {gaps.mean():.3f} ms, preprocess p50 "
              f"{np.median([r['preprocess_ms'] - r.get('staged_ms', 0.0) for r in mine]):.3f} ms, staged "
              f"{sum('staged_ms' in r for r in mine)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
