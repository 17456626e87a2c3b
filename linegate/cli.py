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


def _recipe_change(text: str) -> tuple[float, int]:
    ms, sep, recipe = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(ms), int(recipe)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MS:N (e.g. 1500:2), got {text!r}") from None


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

    _add_plc_sim_parser(sub)
    _add_plc_interface_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check-config":
            cfg = load_config(args.path)
            print(f"{args.path}: ok (model {cfg.model.id!r}, {cfg.model.backend}, PLC {cfg.plc.protocol})")
            return 0
        if args.command == "plc-sim":
            return _plc_sim(args)
        if args.command == "plc-interface":
            return _plc_interface(args)
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


# --- plc-sim and plc-interface ---------------------------------------------------------------------------

EX_USAGE = 2


def _add_plc_sim_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser(
        "plc-sim",
        help="run a PLC simulator (Modbus TCP or S7) printing one JSON line per event",
        description="A PLC simulator printing one JSON line per event: first 'listening' (with the bound port), "
        "then 'coil_edge' (pulse outputs) and, in handshake mode, the simulated PLC program's 'result', "
        "'duplicate_result' and 'vision_status'. With --encoder-cps > 0 the PLC block (encoder, plc_alive, ...) "
        "is served in pulse mode too, 'listening' gains encoder_t0_ns, encoder_cps and encoder_start, and each "
        "'coil_edge' gains 'encoder'. Stops with exit 0 on SIGINT/SIGTERM; a port that cannot be "
        "used is one line on stderr and exit 2.",
    )
    add = sim.add_argument
    add("--protocol", choices=("modbus", "s7"), default="modbus",
        help="modbus (pymodbus server) or s7 (python-snap7 server) (default: %(default)s)")
    add("--mode", choices=("pulse", "handshake"), default="pulse",
        help="pulse: report output edges; handshake: also run the PLC side of docs/plc-interface.md "
        "(default: %(default)s)")
    add("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    add("--port", metavar="PORT", type=int, default=None,
        help="TCP port; 0 picks a free one, printed in the listening line (default: 5020 for modbus, 1102 for s7)")
    add("--part-id-register", metavar="N", type=int, default=0,
        help="modbus: holding registers N, N+1 reported as each coil edge's part id (default: %(default)s)")
    add("--register-base", metavar="N", type=int, default=0,
        help="modbus handshake (or pulse with --encoder-cps): holding register of interface word 0 "
        "(default: %(default)s)")
    add("--db", metavar="N", type=int, default=100, help="s7: data block number (default: %(default)s)")
    add("--byte-base", metavar="N", type=int, default=0,
        help="s7 handshake (or pulse with --encoder-cps): byte of interface word 0 in the DB (default: %(default)s)")
    add("--reject-byte", metavar="N", type=int, default=None,
        help="s7: DB byte reported as the reject output (default: 0 in pulse mode if neither byte is given)")
    add("--fault-byte", metavar="N", type=int, default=None,
        help="s7: DB byte reported as the fault output (default: 1 in pulse mode if neither byte is given)")
    add("--ack-delay-ms", metavar="MS", type=float, default=0.0,
        help="handshake: delay before the PLC writes ack_seq (default: %(default)s)")
    add("--ignore-ack-share", metavar="SHARE", type=float, default=0.0,
        help="handshake: share 0..1 of acks never written, evenly spread, to exercise re-sends (default: %(default)s)")
    add("--plc-alive-ms", metavar="MS", type=float, default=100.0,
        help="handshake (or pulse with --encoder-cps): plc_alive counts up this often; 0 freezes it "
        "(default: %(default)s)")
    add("--plc-part-id", metavar="N", type=int, default=0,
        help="handshake (or pulse with --encoder-cps): first plc_part_id offered; 0 = none (default: %(default)s)")
    add("--part-period-ms", metavar="MS", type=float, default=0.0,
        help="handshake (or pulse with --encoder-cps): plc_part_id advances by 1 this often; 0 = fixed "
        "(default: %(default)s)")
    add("--encoder-cps", metavar="CPS", type=float, default=0.0,
        help="encoder counts per second, wrapping at 2**32; > 0 also serves the PLC block in pulse mode, and "
        "the count at monotonic t is (start + floor(cps * (t - encoder_t0_ns) / 1e9)) mod 2**32 "
        "(default: %(default)s)")
    add("--encoder-start", metavar="N", type=int, default=0,
        help="encoder count at the simulator's start (encoder_t0_ns), 0..2**32-1 (default: %(default)s)")
    add("--recipe-at", metavar="MS:N", type=_recipe_change, action="append", default=[],
        help="handshake: the recipe word becomes N at MS ms after start (repeatable, in time order) "
        "(default: none)")
    add("--recipe", metavar="N", type=int, default=0,
        help="handshake (or pulse with --encoder-cps): recipe number in the PLC block (default: %(default)s)")


def _plc_sim(args: argparse.Namespace) -> int:
    """Run the simulator; a port or option that cannot be used is one line on stderr and exit 2."""
    from linegate.plc.plc_program import ProgramConfig
    from linegate.plc.sim import SimPortError, check_port, run_plc_sim

    port = args.port if args.port is not None else (5020 if args.protocol == "modbus" else 1102)
    try:
        check_port(port)
        program = ProgramConfig(
            ack_delay_ms=args.ack_delay_ms,
            ignore_ack_share=args.ignore_ack_share,
            alive_ms=args.plc_alive_ms,
            part_id_start=args.plc_part_id,
            part_period_ms=args.part_period_ms,
            encoder_cps=args.encoder_cps,
            encoder_start=args.encoder_start,
            recipe=args.recipe,
            recipe_changes=tuple(args.recipe_at),
        )
        if args.protocol == "s7":
            from linegate.plc.s7_sim import run_s7_sim

            return run_s7_sim(args.host, port, db=args.db, byte_base=args.byte_base, reject_byte=args.reject_byte,
                              fault_byte=args.fault_byte, mode=args.mode, program=program)
        return run_plc_sim(args.host, port, part_id_register=args.part_id_register, mode=args.mode,
                           register_base=args.register_base, program=program)
    except (SimPortError, ValueError) as exc:
        print(f"linegate plc-sim: {exc}", file=sys.stderr)
        return EX_USAGE


def _add_plc_interface_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doc = sub.add_parser(
        "plc-interface",
        help="print the PLC interface document (Markdown: register map, DB layout, rules)",
        description="Print docs/plc-interface.md: every word linegate and the PLC exchange, with Modbus and S7 "
        "addresses for the given configuration.",
    )
    doc.add_argument("--config", type=Path, default=None, help="take register_base, db, byte_base and the pulse "
                     "outputs from this file's [plc] section (default: none: register_base 0, db 100, byte_base 0)")


def _plc_interface(args: argparse.Namespace) -> int:
    from linegate.plc.interface_doc import render_for, render_interface_doc

    text = render_interface_doc() if args.config is None else render_for(load_config(args.config).plc)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
