"""One scenario: a recording PLC simulator, then linegate, the naive script and the engine floor on it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.bench.floor import engine_floor, sessions_at_load
from linegate.bench.records import (
    Event,
    Frame,
    frames_of_records,
    in_window,
    naive_frames,
    plc_times,
    read_jsonl,
    rising_edges,
)
from linegate.bench.scenarios import Scenario, bench_config, with_model
from linegate.bench.stats import Dist
from linegate.config import Config

STAGES = ("write_ms", "queued_ms", "preprocess_ms", "infer_ms", "postprocess_ms", "handoff_ms")
"""linegate's per-frame stage columns, in pipeline order (their sum is ``total_ms``)."""
MISSES = ("deadline_missed", "deadline_unreachable")
NAIVE_TIME_FACTOR = 1.2
"""The naive script stops after this x the time the camera takes to send the scenario's frames."""
BEHIND = 0.95
"""A side whose frames came in below this share of the rate set fell behind the camera (see :func:`lost`)."""


@dataclass
class Side:
    """One side's figures in one scenario (times in ms)."""

    side: str
    frames: int
    """linegate: acquired; naive: fetched; floor: runs."""
    by_model: int
    camera_frames: int
    """Frames the camera sent meanwhile (the share's denominator): fetched + lost."""
    throughput_fps: float
    achieved_fps: float
    verdict: Dist
    coil: Dist = field(default_factory=lambda: Dist.of([]))
    rejects: int = 0
    at_plc: int = 0
    plc_duplicates: int = 0
    undelivered: int = 0
    deadline_misses: int = 0
    dropped: int = 0
    answered_late: int = 0
    """linegate: frames the model was started on that answered after the deadline (``deadline_missed``)."""
    lost: int = 0
    problems: list[str] = field(default_factory=list)
    verdict_ms: list[float] = field(default_factory=list, repr=False)
    coil_ms: list[float] = field(default_factory=list, repr=False)
    t_s: list[float] = field(default_factory=list, repr=False)
    """linegate: each modelled frame's acquisition time, s from the first frame (for the stage plot)."""
    stages: dict[str, list[float]] = field(default_factory=dict, repr=False)
    floor_beside: tuple[float, float] | None = None
    """Overload, linegate: the engine alone at this side's batch size, frames per second measured
    right before and right after it (a cloud host's speed drifts within a run)."""

    RAW = ("verdict_ms", "coil_ms", "t_s", "stages")

    @property
    def fail_safe(self) -> int:
        return self.frames - self.by_model if self.side.startswith("linegate") else 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name in self.RAW:
                continue
            value = getattr(self, name)
            out[name] = value.as_dict() if isinstance(value, Dist) else value
        out["fail_safe"] = self.fail_safe
        return out


@dataclass
class ScenarioResult:
    scenario: Scenario
    sides: list[Side]
    budget_ms: float = 0.0
    floor_plan_p50_ms: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        s = self.scenario
        return {"model": s.model, "load": s.load, "fps": s.fps, "frames": s.frames, "note": s.note,
                "budget_ms": self.budget_ms, "floor_plan_p50_ms": self.floor_plan_p50_ms, "notes": self.notes,
                "sides": [side.as_dict() for side in self.sides]}


def run_scenario(base: Config, config_path: Path, sc: Scenario, tmp: Path, floor_runs: int) -> ScenarioResult:
    """linegate, then the naive script, on one simulator; then the engine floor."""
    from linegate.demo.runner import PlcSimProcess, free_port, sim_args, with_plc_port

    cfg = bench_config(base, sc.fps, 1)
    sim = PlcSimProcess(free_port(), args=sim_args(cfg.plc))
    cfg = with_plc_port(cfg, sim.port)
    name = f"{sc.model}-{sc.load}"
    other = batched = batched_cfg = by_parallel = parallel_cfg = None
    batch_problem = parallel_problem = ""
    overload = sc.load == "overload"
    # The other side of the setting the engine runs with ("auto" resolved at load): one session or two.
    other_parallel = (PARALLEL if sessions_at_load(cfg) == 1 else 1) if overload else 1
    brief_runs = max(20, floor_runs // 3)

    def linegate_side(side_cfg: Config, log: str) -> tuple[LinegateRun, tuple[float, float] | None]:
        """One linegate run; under overload with the engine alone measured right before and after."""
        runs = max(10, brief_runs // side_cfg.model.max_batch)
        before = floor_fps(side_cfg, runs) if overload else 0.0
        out = run_linegate(side_cfg, sc.frames, tmp / log)
        time.sleep(0.3)  # let the simulator's last lines arrive
        return out, (before, floor_fps(side_cfg, runs)) if overload else None

    try:
        lg = linegate_side(cfg, f"{name}-linegate.jsonl")
        if overload:  # the measured choice of deadline.backlog: the other order too
            alternate = with_backlog(cfg, OTHER_BACKLOG[cfg.deadline.backlog])
            other = linegate_side(alternate, f"{name}-linegate-{alternate.deadline.backlog}.jsonl")
            batched_cfg, batch_problem = with_batching(cfg, BATCH, tmp)
            if batched_cfg is not None:
                batched = linegate_side(batched_cfg, f"{name}-linegate-batch.jsonl")
            parallel_cfg, parallel_problem = with_parallel(cfg, other_parallel)
            if parallel_cfg is not None:
                by_parallel = linegate_side(parallel_cfg, f"{name}-linegate-parallel.jsonl")
        nv = run_naive(cfg, config_path, sc.frames, tmp / f"{name}-naive.jsonl")
        time.sleep(0.3)
    finally:
        sim.stop()
    assert cfg.plc.modbus is not None
    edges = rising_edges(sim.edges, int(cfg.plc.modbus.reject_coil or 0))
    sides = [analyse_linegate(*lg[0], edges, sc.fps, floor_beside=lg[1])]
    if other is not None:
        alternate_side = analyse_linegate(*other[0], edges, sc.fps, floor_beside=other[1])
        alternate_side.side = f"linegate {OTHER_BACKLOG[cfg.deadline.backlog]}"
        sides[0].side = f"linegate {cfg.deadline.backlog}"
        sides.append(alternate_side)
    if batched is not None:
        batched_side = analyse_linegate(*batched[0], edges, sc.fps, floor_beside=batched[1])
        batched_side.side = f"linegate batch {BATCH}"
        sides.append(batched_side)
    if by_parallel is not None:
        parallel_side = analyse_linegate(*by_parallel[0], edges, sc.fps, floor_beside=by_parallel[1])
        parallel_side.side = f"linegate parallel {other_parallel}"
        sides.append(parallel_side)
    sides.append(analyse_naive(*nv, edges, sc.fps, cfg.deadline.budget_ms))
    sides.append(analyse_floor(engine_floor(cfg, floor_runs)))
    if batched_cfg is not None:
        sides.append(analyse_floor(engine_floor(batched_cfg, max(10, floor_runs // BATCH)), BATCH))
    sessions_cfg, _ = with_parallel(cfg, PARALLEL)
    if overload and sessions_cfg is not None:
        sides.append(analyse_floor(engine_floor(sessions_cfg, floor_runs), 1, f"floor parallel {PARALLEL}"))
    result = ScenarioResult(sc, sides, cfg.deadline.budget_ms)
    if batch_problem:
        result.notes.append(f"no batching side: {batch_problem}")
    if parallel_problem:
        result.notes.append(f"no parallel side: {parallel_problem}")
    return result


LinegateRun = tuple[tuple[int, int], list[Event], dict[str, int], list[str]]
"""A linegate side's time window, records, final counters and problems."""

BATCH = 4
"""``model.max_batch`` of the overload scenario's batching side (over the model's batch dimension)."""
PARALLEL = 2
"""``model.parallel`` of the overload scenario's side that decides a backlog on one-frame sessions
at once, each taking the next waiting frame as its run ends (the model as it is), where the
engine runs one (``parallel = 1``, or "auto" for a light model); otherwise that side is
``parallel 1`` (one frame at a time).
The floor row ``floor parallel 2`` is the engine alone on that many sessions."""


def with_batching(cfg: Config, batch: int, tmp: Path) -> tuple[Config | None, str]:
    """*cfg* deciding backlogs oldest first in batches of up to *batch*, on a batch-dynamic copy of
    its model (:mod:`linegate.bench.batch_model`); ``(None, why)`` where none can be made."""
    from linegate.bench.batch_model import batch_dynamic

    if cfg.model.backend != "onnxruntime":
        return None, f"the bench batches ONNX Runtime models only (model.backend = {cfg.model.backend!r})"
    try:
        path = batch_dynamic(cfg.model.path, tmp)
        return with_model(with_backlog(cfg, "oldest_first"), path=path, max_batch=batch, batch_by="dimension"), ""
    except ValueError as exc:  # no batch-dynamic copy, or a configuration linegate refuses to batch
        return None, str(exc)


def with_parallel(cfg: Config, sessions: int) -> tuple[Config | None, str]:
    """*cfg* deciding up to *sessions* frames at once (``model.parallel``); ``(None, why)`` where
    that cannot run."""
    if cfg.model.backend != "onnxruntime":
        return None, f"parallel sessions are ONNX Runtime's (model.backend = {cfg.model.backend!r})"
    try:
        return with_model(cfg, parallel=sessions), ""
    except ValueError as exc:  # a configuration linegate refuses to run in parallel
        return None, str(exc)


OTHER_BACKLOG = {"oldest_first": "newest_first", "newest_first": "oldest_first"}


def with_backlog(cfg: Config, backlog: str) -> Config:
    """*cfg* deciding a backlog in the other order (``deadline.backlog``)."""
    return cfg.model_copy(update={"deadline": cfg.deadline.model_copy(update={"backlog": backlog})})


def run_linegate(cfg: Config, frames: int, log: Path) -> LinegateRun:
    """The Supervisor for *frames* frames: its time window, records, final counters and problems."""
    from linegate.pipeline.supervisor import Supervisor

    log.unlink(missing_ok=True)  # the Supervisor appends
    t0 = time.monotonic_ns()
    summary = Supervisor(cfg, log_file=log, log_stdout=False, max_frames=frames).run()
    window = (t0, time.monotonic_ns())
    return window, read_jsonl(log), summary.counters.as_record(), list(summary.problems)


def run_naive(cfg: Config, config_path: Path, frames: int, out: Path) -> tuple[tuple[int, int], list[Frame], str]:
    """``python -m linegate.bench.naive`` on the same camera rate, model and simulator."""
    link = cfg.plc.modbus
    assert link is not None
    fps = cfg.camera.frame_rate_hz or 100.0
    command = [
        sys.executable, "-m", "linegate.bench.naive", "--config", str(config_path), "--port", str(link.port),
        "--frames", str(frames), "--out", str(out), "--mode", "pulse", "--fps", str(fps),
        "--reject-coil", str(link.reject_coil or 0),
        "--part-id-register", str(-1 if link.part_id_register is None else link.part_id_register),
        "--register-base", str(link.register_base), "--pulse-ms", str(cfg.plc.pulse_ms),
        "--seconds", f"{NAIVE_TIME_FACTOR * frames / fps + 2:.1f}",
    ]
    limit = 120 + 2 * NAIVE_TIME_FACTOR * frames / fps
    t0 = time.monotonic_ns()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=limit)
        problem = "" if proc.returncode == 0 else f"naive script exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
    except subprocess.TimeoutExpired:
        problem = f"naive script killed after {limit:.0f} s"
    return (t0, time.monotonic_ns()), naive_frames(out) if out.exists() else [], problem


def matched_coil(frames: Sequence[Frame], events: Sequence[Event]) -> tuple[list[float], int, int]:
    """In hand -> coil ON (ms) of each reject the PLC saw, how many it saw, and part ids it saw twice or more."""
    at = plc_times(frames, events)
    coil = [(at[f.part_id] - f.t_hand) / 1e6 for f in frames if f.reject and f.part_id in at]
    seen = Counter(int(e["part_id"]) for e in events)
    return coil, len(coil), sum(1 for n in seen.values() if n > 1)


def analyse_linegate(window: tuple[int, int], records: list[Event], counters: dict[str, int],
                     problems: list[str], edges: Sequence[Event], fps: float,
                     floor_beside: tuple[float, float] | None = None) -> Side:
    frames, _ = frames_of_records(records)
    frames.sort(key=lambda f: f.t_hand)
    coil, at_plc, dups = matched_coil(frames, in_window(edges, *window))
    modelled = [r for r in records if r.get("event") == "frame" and r["basis"] == "model"]
    t_first = frames[0].t_hand if frames else 0
    missing = counters["camera_lost"] + shortfall(frames, fps)
    side = Side(
        "linegate", counters["acquired"], len(modelled), counters["acquired"] + missing,
        rate(len(modelled), frames), achieved(frames), Dist.of(verdicts(frames)), Dist.of(coil),
        rejects=sum(f.reject for f in frames), at_plc=at_plc, plc_duplicates=dups,
        undelivered=counters["plc_undelivered"] + counters["plc_queue_full"],
        deadline_misses=sum(f.basis in MISSES for f in frames), dropped=sum(f.basis == "dropped" for f in frames),
        answered_late=sum(f.basis == "deadline_missed" for f in frames),
        lost=missing, problems=list(problems),
        verdict_ms=verdicts(frames), coil_ms=coil,
        t_s=[(r["t_acquired_ns"] - t_first) / 1e9 for r in modelled],
        stages={k: [float(r[k]) for r in modelled] for k in STAGES},
        floor_beside=floor_beside,
    )
    if len(frames) != side.frames:
        side.problems.append(f"{len(frames)} frame records for {side.frames} frames acquired")
    return side


def analyse_naive(window: tuple[int, int], frames: list[Frame], problem: str, edges: Sequence[Event],
                  fps: float, budget_ms: float) -> Side:
    coil, at_plc, dups = matched_coil(frames, in_window(edges, *window))
    gaps = frames[-1].frame_id - frames[0].frame_id + 1 - len(frames) if frames else 0
    lost = gaps + shortfall(frames, fps)
    return Side(
        "naive", len(frames), len(frames), len(frames) + lost, rate(len(frames), frames), achieved(frames),
        Dist.of(verdicts(frames)), Dist.of(coil), rejects=sum(f.reject for f in frames), at_plc=at_plc,
        plc_duplicates=dups, deadline_misses=late(frames, budget_ms), lost=lost,
        problems=[problem] if problem else [], verdict_ms=verdicts(frames), coil_ms=coil,
    )


def floor_fps(cfg: Config, runs: int) -> float:
    """The engine alone at *cfg*'s batch size: frames per second over *runs* runs."""
    durations = engine_floor(cfg, runs)
    return cfg.model.max_batch * durations.size / (float(durations.sum()) / 1e9)


def analyse_floor(durations_ns: npt.NDArray[np.int64], batch: int = 1, name: str = "") -> Side:
    """The bare engine: its run times, and frames per second (*batch* frames a run)."""
    ms = (durations_ns / 1e6).tolist()
    total_s = float(durations_ns.sum()) / 1e9
    n = len(ms) * batch
    fps = n / total_s if total_s else 0.0
    name = name or ("floor" if batch == 1 else f"floor batch {batch}")
    return Side(name, n, n, n, fps, fps, Dist.of(ms), verdict_ms=ms)


def verdicts(frames: Sequence[Frame]) -> list[float]:
    return [(f.t_verdict - f.t_hand) / 1e6 for f in frames]


def rate(count: int, frames: Sequence[Frame]) -> float:
    """*count* per second over the span from the first frame in hand to the last verdict."""
    if not frames:
        return 0.0
    span = (max(f.t_verdict for f in frames) - min(f.t_hand for f in frames)) / 1e9
    return count / span if span > 0 else 0.0


def achieved(frames: Sequence[Frame]) -> float:
    """Frames in hand per second (first to last in hand)."""
    if len(frames) < 2:
        return 0.0
    span = (frames[-1].t_hand - frames[0].t_hand) / 1e9
    return (len(frames) - 1) / span if span > 0 else 0.0


def shortfall(frames: Sequence[Frame], fps: float) -> int:
    """Frames a free-running camera would have sent that this side never took in.

    The simulated camera waits for a slow reader instead of dropping frames (no frame-id gaps), so
    a side that fell behind (frames in hand at less than ``BEHIND`` x the rate set) is charged the
    difference between the frames sent at the rate set over its span and those it took in. A real
    camera drops them (gaps, counted separately)."""
    rate = achieved(frames)
    if len(frames) < 2 or rate >= BEHIND * fps:
        return 0
    span_s = (frames[-1].t_hand - frames[0].t_hand) / 1e9
    return max(0, round(span_s * fps) + 1 - len(frames))


def late(frames: Sequence[Frame], budget_ms: float) -> int:
    """Naive frames whose verdict came more than the budget after the frame was in hand.

    The naive script's "in hand" starts when its fetch returns: a frame that waited in the driver's
    queue does not count that wait (there is no camera timestamp to measure it by). Falling behind
    shows instead as throughput below the rate set and, once the driver's buffers are full, as lost
    frames (frame-id gaps)."""
    return sum((f.t_verdict - f.t_hand) / 1e6 > budget_ms for f in frames)
