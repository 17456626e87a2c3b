"""Benchmark: the inference loop with the PLC hung vs healthy (same run), and crash-to-recovery times.

    python tests/bench/bench_faults.py [--phase-s 20] [--kills 3] [--out DIR]

One `linegate run` on the demo config (simulated camera at 100 fps, real Modbus PLC simulator).
Phase 1: PLC healthy. Phase 2: the PLC frozen with SIGSTOP (every call times out, rejects are held
then reported). Phase 3: PLC resumed. For each phase it prints the p50/p99 of the frames' end-to-end
latency (acquisition to verdict handed off) and of the loop's own work (end-to-end minus queueing),
and the p99 ratio hung/healthy (goal: within 10%).

Then it kills each worker with SIGKILL `--kills` times and prints the time from the kill to full
operation again: inference -> the first model verdict after the kill; acquisition -> the first
model verdict on a frame acquired after the kill; PLC -> the first pulse delivered after the kill.
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linegate.demo.runner import PlcSimProcess, free_port  # noqa: E402
from tests.pipeline.harness import LinegateRun, assert_every_frame_and_reject_accounted  # noqa: E402


def pct(values: list[float]) -> str:
    if not values:
        return "n=0"
    p50, p99 = np.percentile(values, [50, 99])
    return f"n={len(values):5d}  p50 {p50:6.3f}  p99 {p99:6.3f}  max {max(values):7.3f} ms"


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else float("nan")


def frames_between(recs: list[dict[str, Any]], t0: int, t1: int) -> list[dict[str, Any]]:
    return [r for r in recs if r["event"] == "frame" and t0 <= r["t_acquired_ns"] < t1 and r["basis"] == "model"]


def loop_ms(r: dict[str, Any]) -> float:
    """The inference loop's own work for a frame: pre-process, engine, post-process, hand-off."""
    return float(r["preprocess_ms"] + r["infer_ms"] + r["postprocess_ms"] + r["handoff_ms"])


def first_after(recs: list[dict[str, Any]], event: str, t_kill: int, key: str, **match: Any) -> int | None:
    times = [int(r[key]) for r in recs if r["event"] == event and all(r[k] == v for k, v in match.items())]
    times = [x for x in times if x > t_kill]
    return min(times) if times else None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase-s", type=float, default=20.0)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--out", type=Path, help="keep the run's records in this directory")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="linegate-bench-faults-"))
    out.mkdir(parents=True, exist_ok=True)
    sim = PlcSimProcess(free_port(), part_id_register=0)
    run = LinegateRun(out, sim.port, {"[logging]": "[supervisor]\nrestart_limit = 100\n\n[logging]"})
    try:
        run.wait_frames(200)
        t = [time.monotonic_ns()]
        time.sleep(args.phase_s)
        t.append(time.monotonic_ns())
        sim.pause()
        time.sleep(args.phase_s)
        t.append(time.monotonic_ns())
        sim.resume()
        time.sleep(args.phase_s)
        t.append(time.monotonic_ns())
        kills: list[tuple[str, int]] = []
        for _ in range(args.kills):
            for role in ("infer", "acquire", "plc"):
                restarts = len(run.events("worker_recovered"))
                pid = run.pid_of(role)
                t_kill = time.monotonic_ns()
                os.kill(pid, signal.SIGKILL)
                kills.append((role, t_kill))
                run.wait_event("worker_recovered", count=restarts + 1, timeout_s=60)
                time.sleep(2.0)
        run.stop()
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
        sim.stop()
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs)

    print(f"PLC hung vs healthy, {args.phase_s:.0f} s each, 640x480 Mono8 at 100 fps (records: {run.log})")
    names = ("healthy", "PLC hung (SIGSTOP)", "PLC resumed")
    e2e, loop = {}, {}
    for name, t0, t1 in zip(names, t[:-1], t[1:], strict=True):
        frames = frames_between(recs, t0, t1)
        e2e[name] = [float(r["total_ms"]) for r in frames]
        loop[name] = [loop_ms(r) for r in frames]
        rejects = sum(r["verdict"] == "reject" for r in frames)
        print(f"  {name:20s} end-to-end {pct(e2e[name])}")
        print(f"  {'':20s} loop work  {pct(loop[name])}  rejects {rejects}")
    healthy, hung = names[0], names[1]
    print(
        f"  p99 ratio hung/healthy: end-to-end {p99(e2e[hung]) / p99(e2e[healthy]):.3f}, "
        f"loop work {p99(loop[hung]) / p99(loop[healthy]):.3f} (goal <= 1.10)"
    )
    summary = run.events("run_summary")[0]
    print(
        f"  rejects delivered {summary['plc_delivered']}, undelivered {summary['plc_undelivered']} "
        f"(held then reported while the PLC was hung), deadline misses "
        f"{summary['deadline_missed'] + summary['deadline_unreachable']}"
    )

    print(f"\nCrash to full operation again (SIGKILL, {args.kills} x each worker):")
    recovery: dict[str, list[float]] = {"infer": [], "acquire": [], "plc": []}
    for role, t_kill in kills:
        if role == "plc":
            back = first_after(recs, "reject_delivered", t_kill, "t_pulse_ns")
        elif role == "infer":
            back = first_after(recs, "frame", t_kill, "t_done_ns", basis="model")
        else:
            done = [r for r in recs if r["event"] == "frame" and r["t_acquired_ns"] > t_kill and r["basis"] == "model"]
            back = min((int(r["t_done_ns"]) for r in done), default=None)
        if back is not None:
            recovery[role].append((back - t_kill) / 1e6)
    for role, values in recovery.items():
        print(f"  {role:8s} {', '.join(f'{v:7.1f}' for v in values)} ms")
    frames = [r for r in recs if r["event"] == "frame"]
    fail_safe = sum(r["basis"] != "model" for r in frames)
    print(f"  frames {len(frames)}, fail-safe {fail_safe} (those caught by the kills), all reconciled")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
