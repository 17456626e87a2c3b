"""Benchmark: how the frames of an overload end, by basis (model, dropped, deadline_missed, ...).

    python tests/bench/bench_late_frames.py [--model resnet18] [--fps 85] [--frames 1000] [--rounds 2]
                                            [--parallel N] [--threads N] [--cpus 0,1]

Runs linegate's pipeline (the Supervisor, as ``linegate bench`` does) on the simulated camera at
--fps with a recording PLC simulator, and prints per run the count of each frame basis, the
expected path time warm-up measured, and the in hand -> verdict time of the first frames that
were started but answered after their deadline (``deadline_missed``). Used to compare commits:
run it from each checkout (``PYTHONPATH=<checkout>``), alternating. Asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overload_run import add_options, overload_config, run_once


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(ap, fps=85.0, frames=1000, parallel="auto")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    cfg = overload_config(args)
    if cfg is None:
        return 1
    with tempfile.TemporaryDirectory(prefix="linegate-late-") as tmp:
        for rnd in range(args.rounds):
            records, problems = run_once(cfg, args.frames, Path(tmp) / f"{rnd}.jsonl")
            frames = [r for r in records if r.get("event") == "frame"]
            ready = next((r for r in records if r.get("event") == "engine_ready"), {})
            late = [round(r["total_ms"], 1) for r in frames if r["basis"] == "deadline_missed"]
            total = sorted(r["total_ms"] for r in frames if r["basis"] == "model")
            p50, p99 = (total[int(q * (len(total) - 1))] if total else float("nan") for q in (0.5, 0.99))
            runs = sorted(r["infer_ms"] for r in frames if r["basis"] == "model")
            run_p50 = runs[len(runs) // 2] if runs else float("nan")
            by_model = [r for r in frames if r["basis"] == "model"]
            span_s = (max(r["t_done_ns"] for r in frames) - min(r["t_acquired_ns"] for r in frames)) / 1e9
            print(f"round {rnd}: {args.model} at {args.fps:g} fps, parallel {args.parallel}, {len(frames)} frames, "
                  f"{len(by_model) / span_s:.1f} decided by the model per second, in hand -> verdict of those "
                  f"p50 {p50:.2f} / p99 {p99:.2f} ms, engine run p50 {run_p50:.2f} ms, "
                  f"engine {({k: v for k, v in ready.items() if k in ('threads', 'parallel', 'parallel_threads')})}, "
                  f"by basis {dict(collections.Counter(r['basis'] for r in frames))}, "
                  f"warm-up p99 {ready.get('p99_ms', float('nan')):.1f} ms, budget {cfg.deadline.budget_ms:g} ms, "
                  f"late frames' in hand -> verdict (ms) {late[:10]}, problems {problems or 'none'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
