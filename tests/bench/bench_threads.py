"""Benchmark: ONNX Runtime's run time by intra-op threads and spinning, next to what "auto" picks.

    python tests/bench/bench_threads.py [--runs 200] [--idle-ms 20] [MODEL.onnx ...]

Each setting loads the model through linegate's own ONNX Runtime backend (so the session options
are the ones the line uses), then times --runs runs with --idle-ms of sleep between them (frames
arrive at a rate; a pool that sleeps between frames pays its wake-up every time). Default models:
the demo model and, when it has been exported, engines/resnet18/resnet18.onnx. Prints one Markdown
table per model: p50 and p99 per setting, the best one, and "auto" (threads = "auto",
spinning = "auto") with its ratio to the best p50. Asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from linegate.config.schema import ModelSection
from linegate.engine.ort_backend import OnnxRuntimeEngine
from linegate.engine.threads import cpus_available, intra_op_threads, spinning

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODELS = [ROOT / "engines/demo/ball_zone.onnx", ROOT / "engines/resnet18/resnet18.onnx"]


def load(path: Path, threads: int | str, spin: str) -> OnnxRuntimeEngine:
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value or 1 for d in dims)
    section = ModelSection.model_validate({
        "id": path.stem, "path": str(path), "threads": threads, "spinning": spin,
        "postprocess": {"classes": ["pass", "reject"], "reject_thresholds": {"reject": 0.5}},
    })
    engine = OnnxRuntimeEngine(section, shape, np.dtype(np.float32))
    engine.load()
    engine.input[...] = np.random.default_rng(0).random(shape, dtype=np.float32)
    return engine


def time_runs(engine: OnnxRuntimeEngine, runs: int, idle_s: float) -> np.ndarray:
    for _ in range(10):
        engine.infer()
    out = np.zeros(runs, dtype=np.int64)
    for i in range(runs):
        time.sleep(idle_s)
        t0 = time.monotonic_ns()
        engine.infer()
        out[i] = time.monotonic_ns() - t0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--idle-ms", type=float, default=20.0)
    args = ap.parse_args()
    cpus = cpus_available()
    counts = sorted({1, 2, 4, 8, cpus // 2, cpus - 2, cpus - 1, cpus} - {0})
    counts = [n for n in counts if 1 <= n <= cpus]
    auto_threads = intra_op_threads("auto", cpus)
    auto_spin = spinning("auto", auto_threads, cpus)
    print(f"{cpus} CPUs usable; auto = {auto_threads} threads (a heavy model: {intra_op_threads('auto', cpus, True)}), "
          f"spinning {'on' if auto_spin else 'off'}; "
          f"{args.runs} runs, {args.idle_ms:g} ms idle between runs; times in ms\n")  # fmt: skip
    for path in args.models or [p for p in DEFAULT_MODELS if p.is_file()]:
        rows: list[tuple[str, float, float]] = []
        for n in counts:
            for spin in ("off", "on"):
                if n == 1 and spin == "on":
                    continue  # no pool threads to spin
                engine = load(path, n, spin)
                t = time_runs(engine, args.runs, args.idle_ms / 1000) / 1e6
                engine.close()
                rows.append((f"{n} threads, spin {spin}", float(np.percentile(t, 50)), float(np.percentile(t, 99))))
        engine = load(path, "auto", "auto")
        chosen = engine.settings  # what auto chose for this model (a heavy one may get more threads)
        t = time_runs(engine, args.runs, args.idle_ms / 1000) / 1e6
        engine.close()
        auto = (f"auto ({chosen['threads']} threads, spin {'on' if chosen['spinning'] else 'off'})",
                float(np.percentile(t, 50)), float(np.percentile(t, 99)))  # fmt: skip
        best = min(rows, key=lambda r: r[1])
        print(f"### {path.name}\n\n| setting | p50 | p99 |\n|---|---:|---:|")
        for name, p50, p99 in [*rows, auto]:
            print(f"| {name} | {p50:.3f} | {p99:.3f} |")
        print(f"\nbest: {best[0]} p50 {best[1]:.3f}; auto p50 {auto[1]:.3f} = {auto[1] / best[1]:.2f}x the best\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
