"""Command line: parses arguments and maps errors to exit codes (see EXIT_CODES)."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import linegate
from linegate.config import Config, load_config
from linegate.errors import ConfigError, LinegateError
from linegate.service.instance_lock import InstanceLocked

EX_OK = 0
EX_FAILED = 1
EX_USAGE = 2
EX_CONFIG = 78

DESCRIPTION = """\
linegate inspects every part on a production line: it takes each frame from a GenICam camera,
decides pass or reject within a fixed deadline with an ONNX Runtime (CPU) or TensorRT (GPU) model,
signals rejects to the PLC (Modbus TCP or Siemens S7) and logs one JSON record per frame.
In production it runs as the systemd service `linegate` (systemctl start|stop|reload|status
linegate; journalctl -u linegate)."""

EXIT_CODES = """\
exit codes:
  0   clean stop; check-config: the configuration is valid; status: inspecting; reload: applied
  1   runtime failure: start-up failed, the worker restart limit was reached, or the counters did
      not reconcile (systemd restarts linegate); a bounded run (--max-frames) that ended with a
      fault still present or with rejects that did not reach the PLC; check-config --probe: camera
      or PLC not reachable; status: not inspecting (fault); reload: refused, nothing changed
  2   wrong command line (this usage message), or plc-sim cannot use its port; reload: no answer
  3   status / reload: linegate is not running
  78  configuration error: an invalid file, or a model that cannot be loaded or does not fit the
      configuration (EX_CONFIG: systemd does not restart it; fix what the message names, check it
      with `linegate check-config FILE`, then `systemctl restart linegate`)"""


SIMULATED_DEVICES = 3
"""The simulated producer (Viky) streams this many devices at once: serial numbers 0, 1, 2."""


def _cameras(text: str) -> int:
    """demo --cameras: 1 to the simulated producer's devices."""
    if text not in [str(n) for n in range(1, SIMULATED_DEVICES + 1)]:
        raise argparse.ArgumentTypeError(
            f"expected 1, 2 or 3 (the simulated producer has {SIMULATED_DEVICES} devices), got {text!r}"
        )
    return int(text)


def _frames(text: str) -> int:
    """--max-frames: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of frames (1 or more), got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of frames (1 or more), got {value}")
    return value


def _whole(text: str) -> int:
    """A whole number (range checks, if any, come later with their own message)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _number(text: str) -> float:
    """A decimal number."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _timed_value(text: str) -> tuple[float, int]:
    ms, sep, value = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(ms), int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MS:N (e.g. 1500:2), got {text!r}") from None


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, description: str
) -> argparse.ArgumentParser:
    """A sub-command whose --help ends with the exit codes."""
    return sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, width=100),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_instance_options(parser: argparse.ArgumentParser) -> None:
    """Which running linegate a service command talks to."""
    parser.add_argument("--instance", metavar="NAME", default=None,
                        help="instance.name of the configuration (default: the only one running)")
    parser.add_argument("--config", metavar="FILE", type=Path, default=None,
                        help="take the instance name from this configuration file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linegate",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {linegate.__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")

    run = _command(
        sub,
        "run",
        "run the inspection pipeline (what the systemd unit starts)",
        "Run the inspection pipeline until SIGTERM/SIGINT (a second one forces the stop) or --max-frames; "
        "SIGHUP reloads the configuration. Records go to stdout (the journal) and to --log-file.",
    )
    run.add_argument("--config", metavar="FILE", required=True, type=Path,
                     help="configuration file (the service uses /etc/linegate/linegate.toml)")
    run.add_argument("--max-frames", metavar="N", type=_frames, default=None,
                     help="stop after acquiring N frames (default: run until stopped)")
    run.add_argument("--log-file", metavar="FILE", type=Path, default=None,
                     help="also write the JSON records to FILE (default: logging.file of the configuration, if set)")

    demo = _command(
        sub,
        "demo",
        "run the whole pipeline on a simulated camera and PLC (no hardware needed)",
        "Run the real pipeline on the simulated GenTL camera shipped with the genicam package, with the demo "
        "model and a simulated PLC started here; prints a live line each second and a reconciled summary.",
    )
    demo.add_argument("--config", metavar="FILE", type=Path, default=None,
                      help="configuration to run (default: the demo configuration shipped with linegate)")
    demo.add_argument("--max-frames", metavar="N", type=_frames, default=1000,
                      help="stop after N frames (default: %(default)s)")
    demo.add_argument("--cameras", metavar="N", type=_cameras, default=1,
                      help="N of the simulated producer's devices (1-3) in one linegate, each its own reject "
                      "coil (default: %(default)s)")
    demo.add_argument("--log-file", metavar="FILE", type=Path, default=Path("linegate-demo.jsonl"),
                      help="write the JSON records to FILE (default: %(default)s in the current directory)")

    status = _command(
        sub,
        "status",
        "show the running service's state (exit 0 only while it inspects)",
        "Show the running linegate's state for maintenance: inspecting or FAULT and why, uptime, fps, rejects "
        "delivered and undelivered, deadline misses, the last worker restart and its reason. Exit 0 while it "
        "inspects, 1 while it does not (fault or starting), 3 when it is not running: usable as a health check.",
    )
    _add_instance_options(status)
    status.add_argument("--all", action="store_true",
                        help="every running instance (one per camera on a station); exit 0 only if each inspects")
    reload = _command(
        sub,
        "reload",
        "reload the running service's configuration and wait for the outcome",
        "Send SIGHUP to the running linegate and wait until it has applied the configuration (exit 0) or "
        "refused it (exit 1, the reason is printed; nothing changed). The unit's ExecReload= runs this, so "
        "`systemctl reload linegate` returns only then. Exit 3 when it is not running, 2 without an answer "
        "within --timeout.",
    )
    _add_instance_options(reload)
    reload.add_argument("--timeout", metavar="S", type=_number, default=25.0,
                        help="seconds to wait for the outcome (default: %(default)s; keep it below the unit's "
                        "TimeoutSec)")

    check = _command(
        sub,
        "check-config",
        "check a configuration file, its model and (with --probe) its camera and PLC",
        "Check FILE as `linegate run` would use it, without the camera or the PLC: every key, each model's "
        "preprocessing for the camera's frames, and the model itself, loaded and run once on a blank frame "
        "(ONNX models on the CPU; TensorRT engines only where TensorRT is installed, elsewhere the file is "
        "checked to be a readable engine). Prints 'ok' and what was checked, or one line per problem naming "
        "the file and the key.",
    )
    check.add_argument("path", metavar="FILE", type=Path, help="configuration file")
    check.add_argument("--probe", action="store_true",
                       help="also open and configure the camera (within 30 s) and connect to the PLC and read "
                       "from it (within 3 s plus the configured timeouts; nothing is written); fails while "
                       "a running linegate holds the camera")

    _add_plc_sim_parser(sub)
    _add_plc_interface_parser(sub)
    _add_toolchain_parsers(sub)
    return parser


def _toolchain_module(command: str) -> Any:
    import importlib

    from linegate.toolchain import COMMANDS

    return importlib.import_module(COMMANDS[command])


def _add_toolchain_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """build-engine, inspect-engine, calibrate, compare, capture (linegate.toolchain)."""
    from linegate.toolchain import COMMANDS

    for command in COMMANDS:
        module = _toolchain_module(command)
        module.add_arguments(_command(sub, command, module.SUMMARY, module.DESCRIPTION))


def _printing(args: argparse.Namespace) -> int:
    """A command that prints for a person, often into `| head` or `| less`: a reader that closes
    early ends it quietly, as with any shell tool, instead of with a traceback."""
    try:
        return _plc_interface(args) if args.command == "plc-interface" else _service_command(args)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit fails no more
        return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args.path, args.probe)
        if args.command == "plc-sim":
            return _plc_sim(args)
        if args.command in ("plc-interface", "status", "reload"):
            return _printing(args)
        from linegate.toolchain import COMMANDS

        if args.command in COMMANDS:
            return int(_toolchain_module(args.command).run(args))
        if args.command == "demo":
            from linegate.demo.runner import run_demo

            return run_demo(args.config, max_frames=args.max_frames, log_file=args.log_file, cameras=args.cameras)
        return _run(load_config(args.config), args.config, args.max_frames, args.log_file)
    except InstanceLocked as exc:  # one clear line: another run of this instance is live
        print(f"linegate: {exc}", file=sys.stderr)
        return EX_CONFIG
    except ConfigError as exc:
        print(f"linegate: configuration error:\n{exc}", file=sys.stderr)
        return EX_CONFIG
    except LinegateError as exc:
        print(f"linegate: {exc}", file=sys.stderr)
        return EX_FAILED


def _service_command(args: argparse.Namespace) -> int:
    """`status` / `reload` against the running service (see linegate.service.commands)."""
    from linegate.service.commands import reload_command, status_all_command, status_command

    if args.command == "status" and args.all:
        return status_all_command(sys.stdout, sys.stderr)
    instance = args.instance
    if instance is None and args.config is not None:
        instance = load_config(args.config).instance.name
    if args.command == "status":
        return status_command(instance, sys.stdout, sys.stderr)
    return reload_command(instance, sys.stdout, sys.stderr, args.timeout)


def _check_config(path: Path, probe: bool) -> int:
    """Print 'ok' and what was checked (stdout), or one line per problem (stderr); see EXIT_CODES."""
    from linegate.config.check import check_config

    report = check_config(path, probe=probe)
    if report.problems:
        print("linegate: configuration error:", *report.problems, sep="\n", file=sys.stderr)
    if report.unreachable:
        print("linegate: not reachable now:", *report.unreachable, sep="\n", file=sys.stderr)
    if report.exit_code == EX_OK and report.config is not None:
        cfg = report.config
        print(f"{path}: ok (model {cfg.model.id!r}, {cfg.model.backend}, PLC {cfg.plc.protocol})")
        for note in report.notes:
            print(f"  {note}")
    return report.exit_code


def _run(cfg: Config, config_path: Path, max_frames: int | None, log_file: Path | None) -> int:
    from linegate.pipeline.supervisor import Supervisor
    from linegate.report import print_summary

    if not sys.stdout.isatty():  # the service: JSON records to stdout (journald) and the log file
        summary = Supervisor(cfg, config_path=config_path, log_file=log_file, max_frames=max_frames).run()
    else:  # a person at a terminal: one live line a second; the JSON records go to a file
        from linegate.counters import Snapshot
        from linegate.pipeline.summary import live_line

        log_file = log_file or cfg.logging.file or Path(f"linegate-{cfg.instance.name}.jsonl")
        print(f"linegate: records in {log_file}; live summary each second (Ctrl-C stops)", flush=True)
        previous: list[Snapshot] = []

        def tick(snapshot: Snapshot, elapsed: float) -> None:
            print(live_line(snapshot, elapsed, previous[-1] if previous else None, 1.0), flush=True)
            previous[:] = [snapshot]

        summary = Supervisor(
            cfg, config_path=config_path, log_file=log_file, log_stdout=False, max_frames=max_frames, on_tick=tick
        ).run()
    print_summary(summary, sys.stderr)
    return summary.exit_code


# --- plc-sim and plc-interface ---------------------------------------------------------------------------


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
    add("--port", metavar="PORT", type=_whole, default=None,
        help="TCP port; 0 picks a free one, printed in the listening line (default: 5020 for modbus, 1102 for s7)")
    add("--part-id-register", metavar="N", type=_whole, default=0,
        help="modbus: holding registers N, N+1 reported as each coil edge's part id (default: %(default)s)")
    add("--part-id-stride", metavar="S", type=_whole, default=0,
        help="modbus: coil C's part id is at registers N + C*S (several cameras, each its own coil and part id "
        "register; default: %(default)s, every coil reads N)")
    add("--register-base", metavar="N", type=_whole, default=0,
        help="modbus handshake (or pulse with --encoder-cps): holding register of interface word 0 "
        "(default: %(default)s)")
    add("--blocks", metavar="N", type=_whole, default=1,
        help="handshake (or pulse with --encoder-cps): N interface blocks, one per camera, each with its own "
        "simulated program: modbus at --register-base + 32k, s7 at --byte-base + 64k (k = 0..N-1, as [[cameras]] "
        "places them); their events carry 'block': k (default: %(default)s)")
    add("--db", metavar="N", type=_whole, default=100, help="s7: data block number (default: %(default)s)")
    add("--byte-base", metavar="N", type=_whole, default=0,
        help="s7 handshake (or pulse with --encoder-cps): byte of interface word 0 in the DB (default: %(default)s)")
    add("--reject-byte", metavar="N", type=_whole, default=None,
        help="s7: DB byte reported as the reject output (default: 0 in pulse mode if neither byte is given)")
    add("--fault-byte", metavar="N", type=_whole, default=None,
        help="s7: DB byte reported as the fault output (default: 1 in pulse mode if neither byte is given)")
    add("--ack-delay-ms", metavar="MS", type=_number, default=0.0,
        help="handshake: delay before the PLC writes ack_seq (default: %(default)s)")
    add("--ignore-ack-share", metavar="SHARE", type=_number, default=0.0,
        help="handshake: share 0..1 of acks never written, evenly spread, to exercise re-sends (default: %(default)s)")
    add("--plc-alive-ms", metavar="MS", type=_number, default=100.0,
        help="handshake (or pulse with --encoder-cps): plc_alive counts up this often; 0 freezes it "
        "(default: %(default)s)")
    add("--plc-part-id", metavar="N", type=_whole, default=0,
        help="handshake (or pulse with --encoder-cps): first plc_part_id offered; 0 = none (default: %(default)s)")
    add("--part-period-ms", metavar="MS", type=_number, default=0.0,
        help="handshake (or pulse with --encoder-cps): plc_part_id advances by 1 this often; 0 = fixed "
        "(default: %(default)s)")
    add("--encoder-cps", metavar="CPS", type=_number, default=0.0,
        help="encoder counts per second, wrapping at 2**32; > 0 also serves the PLC block in pulse mode, and "
        "the count at monotonic t is (start + floor(cps * (t - encoder_t0_ns) / 1e9)) mod 2**32 "
        "(default: %(default)s)")
    add("--encoder-start", metavar="N", type=_whole, default=0,
        help="encoder count at the simulator's start (encoder_t0_ns), 0..2**32-1 (default: %(default)s)")
    add("--recipe-at", metavar="MS:N", type=_timed_value, action="append", default=[],
        help="handshake: the recipe word becomes N at MS ms after start (repeatable, in time order) "
        "(default: none)")
    add("--recipe", metavar="N", type=_whole, default=0,
        help="handshake (or pulse with --encoder-cps): recipe number in the PLC block (default: %(default)s)")
    add("--control-at", metavar="MS:N", type=_timed_value, action="append", default=[],
        help="handshake: the control word becomes N at MS ms after start (bit 0 offline, bit 1 clear error; "
        "repeatable, in time order) (default: none)")
    add("--timeline-from", choices=("start", "connect", "ready"), default="start",
        help="handshake: --recipe-at and --control-at count from the simulator's start, linegate's first "
        "vision block (connect), or its first one with the ready bit (inspecting) (default: %(default)s)")


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
            control_changes=tuple(args.control_at),
            timeline_from=args.timeline_from,
        )
        if args.protocol == "s7":
            from linegate.plc.s7_sim import run_s7_sim

            return run_s7_sim(args.host, port, db=args.db, byte_base=args.byte_base, reject_byte=args.reject_byte,
                              fault_byte=args.fault_byte, mode=args.mode, program=program, blocks=args.blocks)
        return run_plc_sim(args.host, port, part_id_register=args.part_id_register, mode=args.mode,
                           register_base=args.register_base, program=program, part_id_stride=args.part_id_stride,
                           blocks=args.blocks)
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
