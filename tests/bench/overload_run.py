"""What the overload benchmarks share: their command-line options and one linegate run of a model at
a camera rate with a recording PLC simulator (as ``linegate bench`` runs it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linegate.bench.runner import run_linegate  # noqa: E402
from linegate.bench.scenarios import bench_config, model_spec, with_model  # noqa: E402
from linegate.config import Config, load_config  # noqa: E402
from linegate.demo.runner import PlcSimProcess, free_port, sim_args, with_plc_port  # noqa: E402


def add_options(ap: argparse.ArgumentParser, fps: float, frames: int, parallel: str) -> None:
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--fps", type=float, default=fps)
    ap.add_argument("--frames", type=int, default=frames)
    ap.add_argument("--parallel", default=parallel, help="model.parallel: auto or N")
    ap.add_argument("--threads", default="", help="model.threads (default: the model's configuration)")
    ap.add_argument("--cpus", default="", help="pin linegate's three workers to these CPUs, e.g. 0,1 "
                    "(scheduling.*_cpus); run the benchmark itself elsewhere with taskset")


def overload_config(args: argparse.Namespace) -> Config | None:
    """The model's bench configuration at --fps with --parallel and --threads; None (said why) when
    the model is not there."""
    spec = model_spec(args.model)
    if spec.config is None:
        print(spec.skipped)
        return None
    threads = {"threads": int(args.threads)} if args.threads else {}
    parallel = args.parallel if args.parallel == "auto" else int(args.parallel)
    cfg = with_model(bench_config(load_config(spec.config), args.fps, 1), parallel=parallel, **threads)
    if args.cpus:
        cpus = tuple(int(c) for c in args.cpus.split(","))
        pinned = {f"{role}_cpus": cpus for role in ("infer", "acquire", "plc")}
        cfg = cfg.model_copy(update={"scheduling": cfg.scheduling.model_copy(update=pinned)})
    return cfg


def run_once(cfg: Config, frames: int, log: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """linegate on *cfg* for *frames* frames beside a fresh PLC simulator: its records and problems."""
    sim = PlcSimProcess(free_port(), args=sim_args(cfg.plc))
    try:
        _window, records, _counters, problems = run_linegate(with_plc_port(cfg, sim.port), frames, log)
    finally:
        sim.stop()
    return records, problems
