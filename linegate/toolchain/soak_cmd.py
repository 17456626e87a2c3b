"""``linegate soak``: run the real pipeline for a long time (one hour by default) and report memory
growth, deadline misses, drops, restarts and the reconciliation at the end.

linegate runs as a child process exactly as the service runs it and is stopped with SIGTERM, as
``systemctl stop`` does; a sampler reads each process's memory from /proc and the live counters
from the state file. Exit 0 when the soak meets every criterion, 1 naming the ones it failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from linegate.soak.duration import duration_arg
from linegate.toolchain.arg_types import decimal, whole

SUMMARY = "run the pipeline for a long time (default 1 h) and report memory growth, misses and reconciliation"
DESCRIPTION = (
    "Run `linegate run` as a child process for --duration after it is ready (default: the demo configuration "
    "with the demo's simulated camera and PLC simulator, as `linegate demo` runs them; with --config your "
    "configuration, its camera and PLC), sampling every --sample-s seconds the RSS and PSS of the supervisor "
    "and each worker (acquire, infer, plc) from /proc and the live counters from the state file, then stop it "
    "with SIGTERM as systemd does. Prints and writes (soak.md, soak.json in --out, beside the run's JSON records) "
    "a Markdown report: duration, frames acquired/decided/dropped, fps, deadline misses, worker restarts, rejects "
    "delivered/undelivered, the reconciliation, end-to-end latency p50/p99/max, and per process the memory after "
    "warm-up (READY + min(60 s, 10% of the run)), at the end, the growth and the least-squares growth rate in "
    "MB/h. Exit 0 when linegate stopped cleanly and reconciled, with no worker restart, deadline misses within "
    "--max-misses and total memory growth below --max-growth-mb-per-h; else 1, naming each failed criterion."
)
DEFAULT_DURATION = "1h"
DEFAULT_SAMPLE_S = 10.0
DEFAULT_MAX_GROWTH = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", metavar="FILE", type=Path, default=None,
        help="configuration to soak, with its camera and PLC (default: the demo configuration and the demo's "
        "PLC simulator)")
    add("--duration", metavar="TIME", type=duration_arg, default=DEFAULT_DURATION,
        help="how long to inspect after READY: 1h, 30m, 90s, 1h30m (default: %(default)s)")
    add("--sample-s", metavar="S", type=decimal(0.1, what="seconds"), default=DEFAULT_SAMPLE_S,
        help="seconds between samples (default: %(default)s)")
    add("--out", metavar="DIR", type=Path, default=Path("linegate-soak"),
        help="folder for soak.md, soak.json, the run's JSON records (about 0.6 kB a frame) and its stderr "
        "(default: %(default)s)")
    add("--max-misses", metavar="N", type=whole(0), default=0,
        help="deadline misses (missed + unreachable) allowed (default: %(default)s)")
    add("--max-growth-mb-per-h", metavar="MB", type=decimal(0.0, open_ends=True), default=DEFAULT_MAX_GROWTH,
        help="total memory growth allowed, MB per hour (PSS where readable, else RSS) (default: %(default)s)")
    add("--instance", metavar="NAME", default=None,
        help="run under this instance.name: its own state file and shared memory (default: the configuration's)")


def run(args: argparse.Namespace) -> int:
    from linegate.soak.report import Criteria, figures, render_markdown
    from linegate.soak.session import JSON, MARKDOWN, SoakPlan, run_soak

    plan = SoakPlan(args.config, float(args.duration), args.sample_s, args.out, args.instance)
    outcome = run_soak(plan, echo=lambda line: print(line, flush=True))
    out = figures(outcome, Criteria(args.max_misses, args.max_growth_mb_per_h))
    out["files"].update({"report": str(args.out / MARKDOWN), "json": str(args.out / JSON)})
    text = render_markdown(out)
    (args.out / MARKDOWN).write_text(text, encoding="utf-8")
    record = {**out, "sample_records": [s.as_dict() for s in outcome.samples]}
    (args.out / JSON).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print()
    print(text, end="", flush=True)
    for failure in out["failures"]:
        print(f"linegate soak: failed: {failure}", file=sys.stderr)
    return 0 if out["passed"] else 1
