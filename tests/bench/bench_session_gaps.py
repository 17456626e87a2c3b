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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overload_run import add_options, overload_config, run_once


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(ap, fps=200.0, frames=3000, parallel="2")
    args = ap.parse_args()
    cfg = overload_config(args)
    if cfg is None:
        return 1
    with tempfile.TemporaryDirectory(prefix="linegate-gaps-") as tmp:
        records, problems = run_once(cfg, args.frames, Path(tmp) / "run.jsonl")
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
