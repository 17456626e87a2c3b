"""Command line: the only place that maps errors to exit codes (0 clean, 78 config error, else non-zero)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from linegate.config import Config, load_config
from linegate.errors import ConfigError, LinegateError

EX_CONFIG = 78
EX_SOFTWARE = 70


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linegate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the inspection pipeline")
    run.add_argument("--config", required=True, type=Path)
    run.add_argument("--max-frames", type=_positive, help="stop after acquiring N frames")
    run.add_argument("--log-file", type=Path, help="also write the JSON records to this file")

    demo = sub.add_parser("demo", help="run the whole pipeline on the simulated camera and PLC")
    demo.add_argument("--config", type=Path, help="default: config/demo.toml of this checkout")
    demo.add_argument("--max-frames", type=_positive, default=1000)
    demo.add_argument("--log-file", type=Path, default=Path("linegate-demo.jsonl"))

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("path", type=Path)

    sim = sub.add_parser("plc-sim", help="run a Modbus TCP PLC simulator that prints each coil edge")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=5020)
    sim.add_argument("--part-id-register", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check-config":
            cfg = load_config(args.path)
            print(f"{args.path}: ok (model {cfg.model.id!r}, {cfg.model.backend}, PLC {cfg.plc.protocol})")
            return 0
        if args.command == "plc-sim":
            from linegate.plc.sim import run_plc_sim

            return run_plc_sim(args.host, args.port, part_id_register=args.part_id_register)
        if args.command == "demo":
            from linegate.demo.runner import run_demo

            return run_demo(args.config, max_frames=args.max_frames, log_file=args.log_file)
        return _run(load_config(args.config), args.config, args.max_frames, args.log_file)
    except ConfigError as exc:
        print(f"linegate: configuration error:\n{exc}", file=sys.stderr)
        return EX_CONFIG
    except LinegateError as exc:
        print(f"linegate: {exc}", file=sys.stderr)
        return 1


def _run(cfg: Config, config_path: Path, max_frames: int | None, log_file: Path | None) -> int:
    from linegate.pipeline.supervisor import Supervisor
    from linegate.report import print_summary

    summary = Supervisor(cfg, config_path=config_path, log_file=log_file, max_frames=max_frames).run()
    print_summary(summary, sys.stderr)
    return summary.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
