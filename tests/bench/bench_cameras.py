"""Benchmark: 1, 2 and 3 cameras on one box, either one linegate instance per camera
(`systemctl start linegate@cam0 linegate@cam1 ...`) or one linegate serving them all
(``[[cameras]]``: one inference worker deciding every camera's frames, batching across them with
``model.max_batch`` > 1).

    python tests/bench/bench_cameras.py [--frames 3000] [--fps 100] [--cameras 1,2,3] [--rounds 1]
        [--layout instances|one|both] [--max-batch 1,3] [--parallel auto,1] [--model demo|resnet18]

Instances: each is a real `linegate run` process on the demo configuration, its own simulated camera
(the Viky producer's devices, serial numbers 0, 1 and 2, streaming at once) and its own PLC
simulator, all started together. One: a single `linegate run` with one ``[[cameras]]`` entry per
device and one PLC simulator (a reject coil and part id registers per camera); with a max batch
above 1 the model runs as a batch-dynamic copy; with max batch 1, each ``model.parallel`` value of
--parallel is run (one-frame sessions taking every camera's frames at once). Per number of cameras
it prints frames per second per camera and in all, frame in hand -> verdict and -> coil ON per
frame over all cameras, the share decided by the model, and the CPU time per frame (user + system
of every process of every instance, from /proc, over a window after all are ready; the PLC
simulators not counted): the per-frame cost.
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linegate.bench.records import frames_of_records, plc_times, read_jsonl, rising_edges  # noqa: E402
from linegate.config import load_config  # noqa: E402
from linegate.demo.runner import PlcSimProcess, free_port, sim_args  # noqa: E402

DEMO = REPO / "config" / "demo.toml"
MODEL = (REPO / "engines" / "demo" / "ball_zone.onnx").resolve()
R18 = REPO / "engines" / "resnet18"


@dataclass(frozen=True)
class Base:
    """A configuration to start from: its file, the lines naming its instance, frame rate and model."""

    path: Path
    model: Path
    name_line: str
    rate_line: str
    model_line: str


BASES = {
    "demo": Base(DEMO, MODEL, 'name = "demo"', "frame_rate_hz = 100.0", 'path = "../engines/demo/ball_zone.onnx"'),
    "resnet18": Base(R18 / "resnet18.toml", (R18 / "resnet18.onnx").resolve(), 'name = "resnet18"',
                     "frame_rate_hz = 10.0", 'path = "resnet18.onnx"'),
}


NO_POLL = """
infer_poll_max_us = 0
plc_poll_max_us = 0
infer_keep_warm = false
"""


def instance_config(
    folder: Path, camera: int, port: int, fps: float, no_poll: bool = False, base: Base = BASES["demo"]
) -> Path:
    """*base*'s configuration for camera *camera*: its own instance name, device and PLC port; *no_poll*:
    the inference and PLC workers sleep until woken (no polling, no warm passes)."""
    text = base.path.read_text()
    if no_poll:
        text = text.replace("[scheduling]\n", "[scheduling]\n" + NO_POLL.lstrip("\n"))
    for old, new in ((base.name_line, f'name = "benchcam{camera}"'),
                     ('serial_number = "0"', f'serial_number = "{camera}"'),
                     (base.rate_line, f"frame_rate_hz = {fps}"),
                     ("port = 5020", f"port = {port}"),
                     (base.model_line, f'path = "{base.model}"')):  # fmt: skip
        assert old in text, old
        text = text.replace(old, new)
    path = folder / f"cam{camera}.toml"
    path.write_text(text)
    return path


TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(roots: list[int]) -> dict[int, float]:
    """User + system CPU seconds of the processes *roots* and all their descendants, now, by pid."""
    out, todo = {}, list(roots)
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) * TICK_S  # utime, stime
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
    return out


def all_ready(logs: list[Path]) -> bool:
    return all(log.exists() and '"linegate_ready"' in log.read_text() for log in logs)


def pct(values: list[float]) -> str:
    if not values:
        return "n=0"
    p50, p99, p999 = np.percentile(values, [50, 99, 99.9])
    return f"p50 {p50:6.3f}  p99 {p99:6.3f}  p99.9 {p999:6.3f}  max {max(values):6.3f}"


@dataclass
class Run:
    """One run of *n* cameras at once: what every instance recorded, and the CPU it took."""

    n: int
    codes: list[int]
    problems: list[str]
    wall_s: float
    cpu_s: float
    frames: int = 0
    window_frames: int = 0
    """Frames decided while the CPU was measured (``cpu_s``)."""
    by_model: int = 0
    verdict_ms: list[float] = field(default_factory=list)
    coil_ms: list[float] = field(default_factory=list)
    fps_each: list[float] = field(default_factory=list)
    cpu_by_role: dict[str, float] = field(default_factory=dict)
    """CPU seconds in the window by process role (acquire, infer, plc, supervisor)."""
    batches: Counter[int] = field(default_factory=Counter)
    """One linegate: frames by the size of the batch they were decided in."""
    engines: list[str] = field(default_factory=list)
    """Each inference worker's engine as loaded (threads, sessions), from its engine_ready record."""

    def report(self, fps: float, frames: int) -> str:
        return "\n".join([
            f"{self.n} camera(s) at {fps:g} fps, {frames} frames each: exit codes {self.codes}",
            f"  fps per camera {', '.join(f'{f:.1f}' for f in self.fps_each)} (in all {self.frames / self.wall_s:.1f} "
            f"frames/s over {self.wall_s:.1f} s wall, start-up included)",
            f"  by the model {self.by_model}/{self.frames}",
            f"  in hand -> verdict   {pct(self.verdict_ms)}  (ms)",
            f"  in hand -> coil ON   {pct(self.coil_ms)}  (ms)",
            f"  CPU per frame {1e3 * self.cpu_s / max(self.window_frames, 1):.3f} ms (every linegate process, "
            f"{self.cpu_s:.1f} s CPU over {self.window_frames} frames after start-up)",
            "  of which " + ", ".join(f"{role} {1e3 * cpu / max(self.window_frames, 1):.3f}"
                                      for role, cpu in sorted(self.cpu_by_role.items())) + " ms",
            *([f"  frames by batch size {dict(sorted(self.batches.items()))}"] if self.batches else []),
            f"  engine as loaded: {'; '.join(sorted(set(self.engines)))}",
            *(f"  problem: {p}" for p in self.problems),
        ])  # fmt: skip


def one_config(
    folder: Path, n: int, port: int, fps: float, max_batch: int, no_poll: bool = False, base: Base = BASES["demo"],
    parallel: str = "auto",
) -> Path:
    """*base*'s configuration with one [[cameras]] entry per device (reject coil i, part id registers
    10 + 2i), and ``model.parallel`` = *parallel* where it is a number."""
    path = instance_config(folder, 0, port, fps, no_poll, base)
    text = path.read_text().replace('device = { serial_number = "0" }\n', "")
    if max_batch > 1:
        from linegate.bench.batch_model import batch_dynamic

        model = batch_dynamic(base.model, folder)
        text = text.replace(str(base.model), str(model))
        text = re.sub(r"^(warmup_runs = \d+)", rf"\1\nmax_batch = {max_batch}", text, count=1, flags=re.M)
    elif parallel != "auto":
        text = re.sub(r"^(warmup_runs = \d+)", rf"\1\nparallel = {int(parallel)}", text, count=1, flags=re.M)
    for i in range(n):
        text += (f'\n[[cameras]]\nname = "cam{i}"\ndevice = {{ serial_number = "{i}" }}\n'
                 f"[cameras.plc.modbus]\nreject_coil = {i}\npart_id_register = {10 + 2 * i}\n")  # fmt: skip
    out = folder / f"one-{n}.toml"
    out.write_text(text)
    return out


def run_cameras(
    n: int, frames: int, fps: float, folder: Path, no_poll: bool = False, one: bool = False, max_batch: int = 1,
    base: Base = BASES["demo"], parallel: str = "auto",
) -> Run:
    plc = load_config(DEMO).plc
    if one:
        sims = [PlcSimProcess(free_port(), args=[*sim_args(plc), "--part-id-register", "10", "--part-id-stride", "2"])]
    else:
        sims = [PlcSimProcess(free_port(), args=sim_args(plc)) for _ in range(n)]
    logs = [folder / f"n{n}-cam{i}.jsonl" for i in range(1 if one else n)]
    for log in logs:
        log.unlink(missing_ok=True)
    t0 = time.monotonic()
    try:
        if one:
            configs = [one_config(folder, n, sims[0].port, fps, max_batch, no_poll, base, parallel)]
        else:
            configs = [instance_config(folder, i, sims[i].port, fps, no_poll, base) for i in range(n)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "linegate", "run", "--config", str(configs[i]),
                 "--max-frames", str(frames), "--log-file", str(logs[i])],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            for i in range(len(configs))
        ]  # fmt: skip
        # CPU per frame over a steady window: from every instance ready to 80% of the frames' time.
        while not all_ready(logs) and time.monotonic() - t0 < 120:
            time.sleep(0.2)
        window = (time.monotonic_ns(), tree_cpu_s([p.pid for p in procs]))
        time.sleep(0.8 * frames / fps)
        window_end = (time.monotonic_ns(), tree_cpu_s([p.pid for p in procs]))
        codes = [p.wait(timeout=120 + 3 * frames / fps) for p in procs]
        cpu = {pid: window_end[1][pid] - window[1].get(pid, 0.0) for pid in window_end[1]}
        run = Run(n, codes, [], time.monotonic() - t0, sum(cpu.values()))
        run.problems = [(p.stderr.read() if p.stderr else "")[-400:] for p, c in zip(procs, codes, strict=True) if c]
        time.sleep(0.3)  # the simulators' last lines
    finally:
        for sim in sims:
            sim.stop()
    # (records, simulator, coil) per camera: one log per instance, or one log split by camera
    streams = []
    for log, sim in zip(logs, sims, strict=True):
        records = read_jsonl(log)
        run.engines += [f"threads {r.get('threads')}, parallel {r.get('parallel', 1)}"
                        for r in records if r.get("event") == "engine_ready"]  # fmt: skip
        for r in records:  # which worker each pid was (its worker_started record), the rest: supervisor
            if r.get("event") == "worker_started" and int(r["pid"]) in cpu:
                run.cpu_by_role[r["role"]] = run.cpu_by_role.get(r["role"], 0.0) + cpu.pop(int(r["pid"]))
        if one:
            run.batches = Counter(int(r.get("batch", 1)) for r in records if r.get("event") == "frame")
            for i in range(n):
                streams.append(([r for r in records if r.get("camera") in (None, f"cam{i}")], sim, i))
        else:
            streams.append((records, sim, 0))
    for records, sim, coil in streams:
        got, _ = frames_of_records(records)
        run.frames += len(got)
        run.window_frames += sum(window[0] <= f.t_verdict < window_end[0] for f in got)
        run.by_model += sum(f.basis == "model" for f in got)
        run.verdict_ms += [(f.t_verdict - f.t_hand) / 1e6 for f in got]
        at = plc_times(got, rising_edges(sim.edges, coil))
        run.coil_ms += [(at[f.part_id] - f.t_hand) / 1e6 for f in got if f.reject and f.part_id in at]
        if len(got) > 1:
            run.fps_each.append((len(got) - 1) / ((got[-1].t_hand - got[0].t_hand) / 1e9))
    run.cpu_by_role["supervisor"] = sum(cpu.values())
    return run


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=3000, help="frames per camera")
    ap.add_argument("--fps", type=float, default=100.0)
    ap.add_argument("--cameras", default="1,2,3")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the whole sequence (alternating order)")
    ap.add_argument("--layout", default="instances", choices=("instances", "one", "both"),
                    help="instances: one linegate per camera; one: one linegate with [[cameras]]; both: each run twice")
    ap.add_argument("--model", default="demo", choices=sorted(BASES),
                    help="resnet18: engines/resnet18 (export it first, see its README)")
    ap.add_argument("--max-batch", default="1", help="one linegate: model.max_batch values to run, e.g. 1,3")
    ap.add_argument("--parallel", default="auto", help="one linegate, max_batch 1: model.parallel values, e.g. auto,1")
    ap.add_argument("--polling", default="on", choices=("on", "off", "both"),
                    help="off: scheduling.infer_poll_max_us = plc_poll_max_us = 0, infer_keep_warm = false; "
                    "both: each run twice, on then off")
    args = ap.parse_args()
    order = [int(c) for c in args.cameras.split(",")]
    modes = {"on": [False], "off": [True], "both": [False, True]}[args.polling]
    batches = [int(b) for b in args.max_batch.split(",")]
    ones = [(True, b, p) for b in batches for p in (args.parallel.split(",") if b == 1 else ["1"])]
    layouts = {"instances": [(False, 1, "auto")], "one": ones, "both": [(False, 1, "auto"), *ones]}[args.layout]
    with tempfile.TemporaryDirectory(prefix="bench-cameras-") as tmp:
        for round_ in range(args.rounds):
            for n in order if round_ % 2 == 0 else order[::-1]:
                for no_poll in modes:
                    for one, batch, parallel in layouts:
                        run = run_cameras(n, args.frames, args.fps, Path(tmp), no_poll, one, batch, BASES[args.model],
                                          parallel)  # fmt: skip
                        how = f"one linegate, max_batch {batch}, parallel {parallel}" if one else "one per camera"
                        print(f"[{how}; polling {'off' if no_poll else 'on'}] " + run.report(args.fps, args.frames),
                              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
