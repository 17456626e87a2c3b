"""``linegate bench``: linegate vs a naive synchronous script vs the bare engine floor, in one run."""

from __future__ import annotations

import argparse
import shlex
import socket
import sys
import tempfile
from pathlib import Path

from linegate.toolchain.arg_types import whole

SUMMARY = "measure linegate, a naive synchronous script and the bare engine floor; a Markdown table and plots"
DESCRIPTION = (
    "For each model (the demo; ResNet-18 where engines/resnet18/resnet18.onnx has been exported in a checkout) "
    "at a sustainable rate and under overload, run on the simulated camera and one recording PLC simulator: "
    "linegate's real pipeline, the naive single-threaded script (python -m linegate.bench.naive) and the engine "
    "alone in a tight loop. Prints a Markdown table (frame in hand -> verdict and -> reject coil ON at the PLC: "
    "p50/p99/p99.9/max; throughput; share decided by the model; deadline misses; frames lost) and writes "
    "results.md, results.json and PNG plots (latency histograms, linegate's stage breakdown over time; needs "
    "matplotlib: pip install 'linegate[bench]'). The full run takes minutes and needs a quiet machine. "
    "Exit 0, or 1 when a side broke an invariant (unreconciled counters, the naive script failed)."
)
QUICK_FRAMES = 1000
FULL_FRAMES = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--quick", action="store_true",
        help=f"the demo model at its sustainable rate only ({QUICK_FRAMES} frames unless --frames): about 30 s, "
        "for CI")
    add("--frames", metavar="N", type=whole(10), default=None,
        help=f"frames per side and scenario (default: {FULL_FRAMES}, --quick {QUICK_FRAMES}; capped so that "
        "one side runs 90 s at most)")
    add("--models", metavar="LIST", default=None,
        help="comma-separated models: demo, resnet18 (default: both; --quick: demo)")
    add("--out", metavar="DIR", type=Path, default=None,
        help="where results.md, results.json and the PNGs go (default: in a checkout, "
        "benchmarks/results/<hostname>; else ./linegate-bench; --quick: <tmp>/linegate-bench-quick)")
    add("--no-plots", action="store_true", help="write no PNG plots")
    add("--threads", metavar="N", type=whole(1, 64), default=None,
        help="model.threads for linegate and the floor instead of each model's own (e.g. to make a model slower "
        "than the camera's maximum rate on a many-core machine)")
    add("--spinning", choices=("auto", "on", "off"), default=None,
        help="model.spinning for linegate and the floor instead of each model's own")


def default_out(quick: bool) -> Path:
    """--out's default: never the committed results for --quick."""
    from linegate.bench.scenarios import CHECKOUT

    if quick:
        return Path(tempfile.gettempdir()) / "linegate-bench-quick"
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "benchmarks").is_dir():
        host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname()) or "this-machine"
        return CHECKOUT / "benchmarks" / "results" / host
    return Path.cwd() / "linegate-bench"


def command_line(args: argparse.Namespace, models: list[str], frames: int, out: Path) -> str:
    """The command as it ran, every option spelled out (the output folder relative to the checkout or cwd)."""
    from linegate.bench.scenarios import CHECKOUT

    shown = out.resolve()
    for root in (CHECKOUT, Path.cwd()):
        if shown.is_relative_to(root):
            shown = shown.relative_to(root)
            break
    parts = ["linegate", "bench", *(["--quick"] if args.quick else []), "--frames", str(frames),
             "--models", ",".join(models), "--out", str(shown), *(["--no-plots"] if args.no_plots else []),
             *(["--threads", str(args.threads)] if args.threads else []),
             *(["--spinning", args.spinning] if args.spinning else [])]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from linegate.bench import machine, plots, report
    from linegate.bench.scenarios import MODELS
    from linegate.bench.suite import Options, run_suite, stderr

    models = (args.models or ("demo" if args.quick else ",".join(MODELS))).split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"linegate bench: unknown model(s) {', '.join(unknown)} (known: {', '.join(MODELS)})", file=sys.stderr)
        return 2
    frames = args.frames or (QUICK_FRAMES if args.quick else FULL_FRAMES)
    out: Path = args.out or default_out(args.quick)
    command = command_line(args, models, frames, out)
    facts = machine.facts()
    with tempfile.TemporaryDirectory(prefix="linegate-bench-") as tmp:
        engine = {k: v for k, v in (("threads", args.threads), ("spinning", args.spinning)) if v is not None}
        results, skipped = run_suite(Options(models, frames, args.quick, engine=engine), Path(tmp))
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if not args.no_plots:
        if why := plots.matplotlib_missing():
            stderr(f"no plots: {why}")
        else:
            written = plots.write_plots(results, out)
    report.write(out, results, skipped, facts, command, written)
    print(report.table(results, skipped))
    print()
    print("\n".join(report.notes(results)))
    print(f"\nresults: {out / 'results.md'}, {out / 'results.json'}" + (f", {len(written)} plots" if written else ""))
    broken = [s for r in results for s in r.sides if s.problems]
    return 1 if broken else 0
