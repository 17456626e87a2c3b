"""Benchmark: the engine alone at each ``model.parallel``, frames per second (the yardstick for the
pipeline's by-model throughput under overload at that setting).

    python tests/bench/bench_parallel_floor.py [--config engines/resnet18/resnet18.toml]
                                               [--parallel 1,2,4] [--seconds 5] [--rounds 2] [--threads N]

Each setting is loaded as linegate loads it (``threads`` as configured, split between the
sessions) and kept busy for about --seconds (linegate.bench.floor: with several sessions, each
starts again as its run ends); rounds alternate the settings. Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linegate.bench.floor import engine_floor  # noqa: E402
from linegate.bench.scenarios import with_model  # noqa: E402
from linegate.config import load_config  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "engines" / "resnet18" / "resnet18.toml")
    ap.add_argument("--parallel", default="1,2,4")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", default="", help="model.threads (default: the configuration's)")
    args = ap.parse_args()
    base = load_config(args.config)
    if args.threads:
        base = with_model(base, threads=int(args.threads))
    settings = [int(s) for s in args.parallel.split(",")]
    for rnd in range(args.rounds):
        for n in settings:
            cfg = with_model(base, parallel=n)
            probe = engine_floor(cfg, 10, warm=5)
            per_result_s = float(np.median(probe)) / 1e9
            runs = int(min(5000, max(20, args.seconds / max(per_result_s, 1e-6))))
            times = engine_floor(cfg, runs)
            fps = times.size / (float(times.sum()) / 1e9)
            print(f"round {rnd}: {base.model.id} threads={base.model.threads} parallel {n}: {fps:7.1f} frames/s "
                  f"({runs} results)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
