"""Benchmark: frame in hand -> reject at the PLC, linegate next to a naive single-threaded script, in one run.

    python tests/bench/bench_coil.py --frames 2000 --blocks 2 [--modes pulse,handshake] [--protocols modbus,s7]
        [--plc-rt-priority N] [--sim-rt-priority N] [--alive-poll-ms 1] [--keep DIR]

``--plc-rt-priority`` overrides the demo config's ``scheduling.plc_rt_priority``; ``--sim-rt-priority`` runs the
PLC simulator SCHED_FIFO (for both sides), as a PLC with its own CPU would be; ``--keep`` keeps every record
(linegate logs, naive output, the simulator's events) for a closer look.

Method. For each protocol and mode one recording PLC simulator (``linegate plc-sim``, :class:`PlcSimProcess`)
is started; then blocks alternate on it: linegate (the :class:`Supervisor` on config/demo.toml, the PLC mode and
protocol changed, moved to the simulator's port, ``max_frames`` = ``--frames``) and the naive script
(linegate.bench.naive through tests/bench/naive_inspect.py, a subprocess: fetch, numpy, ONNX Runtime, synchronous
pymodbus write, one thread),
``--blocks`` times each, so machine noise hits both. Same camera (the simulated GenTL producer, 640x480 Mono8
at 100 fps), same model, same simulator process.

- "in hand" is ``time.monotonic_ns()`` right after Harvesters' fetch returns: linegate's ``t_acquired_ns``
  (Viky has no camera timestamp), the naive script's ``t_in_hand_ns``. The simulator stamps its events with
  ``time.monotonic_ns()`` when it applies a request: the same clock.
- "at the PLC": pulse mode, the rising edge of the reject output (``coil_edge``); handshake mode, the ``result``
  event (the vision block carrying the new sequence number applied). Both sides number parts 1, 2, 3 ... each
  run; blocks never overlap in time, so each block takes the simulator's events inside its own time window and
  matches them by the part id the simulator saw. S7 pulse edges carry no part id: there the n-th reject write
  (in time order) takes the first rising edge at or after the moment it was sent.
- "verdict": linegate's ``t_done_ns`` (verdict handed off to the PLC worker), the naive script's ``t_verdict_ns``.
- The breakdown table splits the coil path of matched rejects: verdict -> first PLC write sent (linegate:
  ``reject_delivered.t_pulse_ns``; naive: ``t_sent_ns``), write sent -> applied at the PLC, and write sent ->
  reply received (linegate: ``confirm_ms``; naive: ``t_on_ns``).
- Vision alive counter (handshake only): the simulator prints no event per vision-block write, so a separate
  process (this script with ``--poll-alive``) reads the vision block's words 0..11 every ``--alive-poll-ms`` and
  notes each change of word 0 (alive) with the result sequence number (word 3), between the block's first and
  last frame (full load; start-up and drain left out). A change without a new sequence number is an alive-only
  write, due ``plc.handshake.alive_ms`` after linegate's previous write of the block; its period is reported
  (resolution: the poll interval, also reported). Only consecutive writes (alive + 1) give a period; writes that
  fell between two polls are counted as missed. The poller runs during the naive blocks too, so both sides see
  the same extra load on the simulator.
- The naive script's "in hand" starts when its fetch returns: a frame that waited in the producer's queue while
  the script was busy does not count that wait (the "camera skipped" column shows when it fell behind).

Percentiles are over all matched rejects of all blocks of one side (about 27% of frames are rejects, so with
2 x 2000 frames p99.9 is about the second-worst reject). Prints Markdown tables; asserts nothing.
The naive script speaks Modbus only: for ``--protocols s7`` only linegate is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import onnxruntime

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linegate.bench.records import Event, Frame, linegate_frames, naive_frames, plc_times  # noqa: E402
from linegate.config import Config, load_config  # noqa: E402
from linegate.config.schema import ModbusSection, PlcSection, S7Section  # noqa: E402
from linegate.demo.runner import PlcSimProcess, free_port, sim_args, with_plc_port  # noqa: E402
from linegate.pipeline.supervisor import Supervisor  # noqa: E402

NAIVE = Path(__file__).resolve().parent / "naive_inspect.py"  # a thin wrapper over linegate.bench.naive


# --- configuration -------------------------------------------------------------------------------------


def bench_config(base: Config, protocol: str, mode: str) -> Config:
    """*base* with the PLC protocol and mode changed (validated again)."""
    plc: dict[str, Any] = base.plc.model_dump()
    plc["protocol"], plc["mode"] = protocol, mode
    if protocol == "s7":
        plc["s7"] = {"host": "127.0.0.1", "port": 102, "reject_byte": 0 if mode == "pulse" else None}
    return base.model_copy(update={"plc": PlcSection.model_validate(plc)})


def reject_output(plc: PlcSection) -> int:
    link = plc.link
    if isinstance(link, ModbusSection):
        return int(link.reject_coil or 0)
    assert isinstance(link, S7Section)
    return int(link.reject_byte or 0)


def set_fifo(pid: int, priority: int) -> None:
    """SCHED_FIFO *priority* for every thread of *pid* (threads it starts later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setscheduler(int(tid), os.SCHED_FIFO, os.sched_param(priority))


# --- the alive-counter poller (a separate process) ----------------------------------------------------


def poll_alive(protocol: str, port: int, base: int, period_ms: float, out: Path) -> int:
    """Read the vision block every *period_ms* until SIGTERM; write the changes of word 0 and poll times."""
    stop = False

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    if protocol == "modbus":
        from pymodbus.client import ModbusTcpClient

        client = ModbusTcpClient("127.0.0.1", port=port, timeout=0.5)
        client.connect()  # type: ignore[no-untyped-call]
        close = client.close

        def read() -> list[int]:
            return list(client.read_holding_registers(base, count=12, device_id=1).registers)
    else:
        from linegate.plc.s7 import S7Link

        link = S7Link(S7Section(host="127.0.0.1", port=port, byte_base=base, timeout_ms=500))
        link.connect()
        close = link.close

        def read() -> list[int]:
            return link.read_words(0, 12)

    polls: list[int] = []
    changes: list[tuple[int, int, int]] = []
    last: tuple[int, int] | None = None
    period_s = period_ms / 1000
    while not stop:
        try:
            words = read()
        except Exception:  # the simulator going away ends the poll
            break
        t = time.monotonic_ns()
        polls.append(t)
        now = (words[0], words[3])
        if now != last:
            changes.append((t, *now))
            last = now
        time.sleep(period_s)
    close()  # type: ignore[no-untyped-call]
    out.write_text(json.dumps({"polls": polls, "changes": changes}))
    return 0


class AlivePoller:
    def __init__(self, protocol: str, port: int, base: int, period_ms: float, out: Path) -> None:
        self.out = out
        self._proc = subprocess.Popen([
            sys.executable, str(Path(__file__).resolve()), "--poll-alive", protocol, "--poll-port", str(port),
            "--poll-base", str(base), "--alive-poll-ms", str(period_ms), "--poll-out", str(out),
        ])

    def stop(self) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        self._proc.terminate()
        self._proc.wait(10)
        data = json.loads(self.out.read_text()) if self.out.exists() else {"polls": [], "changes": []}
        return np.array(data["polls"], dtype=np.int64), [tuple(c) for c in data["changes"]]


# --- one block -----------------------------------------------------------------------------------------


@dataclass
class Block:
    """One run of one side: its frames, its rejects and their timestamps, matched to the PLC's events."""

    side: str
    t0: int
    t1: int
    frames: int = 0
    fps: float = 0.0
    camera_skipped: int = 0
    fail_safe: int = 0
    verdict_ms: list[float] = field(default_factory=list)
    rejects: int = 0
    plc_ms: list[float] = field(default_factory=list)
    to_send_ms: list[float] = field(default_factory=list)
    send_to_plc_ms: list[float] = field(default_factory=list)
    send_to_reply_ms: list[float] = field(default_factory=list)
    unmatched: list[int] = field(default_factory=list)
    t_first: int = 0
    t_last: int = 0
    """First and last frame in hand: the span in which the loop runs at full load."""
    load1: float = 0.0
    """1-minute load average at the block's end."""


def analyse(block: Block, frames: list[Frame], events: Sequence[Event]) -> Block:
    block.frames = len(frames)
    if frames:
        block.t_first, block.t_last = frames[0].t_hand, frames[-1].t_hand
    if len(frames) > 1:
        block.fps = (len(frames) - 1) / ((frames[-1].t_hand - frames[0].t_hand) / 1e9)
        block.camera_skipped = frames[-1].frame_id - frames[0].frame_id + 1 - len(frames)
    block.verdict_ms = [(f.t_verdict - f.t_hand) / 1e6 for f in frames]
    at_plc = plc_times(frames, events)
    for f in frames:
        if not f.reject:
            continue
        block.rejects += 1
        t_plc = at_plc.get(f.part_id)
        if t_plc is None:
            block.unmatched.append(f.part_id)
            continue
        block.plc_ms.append((t_plc - f.t_hand) / 1e6)
        if f.t_sent is not None:
            block.to_send_ms.append((f.t_sent - f.t_verdict) / 1e6)
            block.send_to_plc_ms.append((t_plc - f.t_sent) / 1e6)
            if f.t_reply is not None:
                block.send_to_reply_ms.append((f.t_reply - f.t_sent) / 1e6)
    return block


def window(events: Sequence[Event], block: Block) -> list[Event]:
    return [e for e in events if block.t0 <= int(e["t_ns"]) <= block.t1]


def run_linegate(cfg: Config, frames: int, log: Path) -> tuple[Block, list[Frame]]:
    log.unlink(missing_ok=True)  # the Supervisor appends
    t0 = time.monotonic_ns()
    summary = Supervisor(cfg, log_file=log, log_stdout=False, max_frames=frames).run()
    block = Block("linegate", t0, time.monotonic_ns())
    if summary.problems:
        print(f"  linegate reconciliation problems: {summary.problems}", file=sys.stderr)
    recs, block.fail_safe = linegate_frames(log)
    return block, recs


def run_naive(cfg: Config, frames: int, out: Path) -> tuple[Block, list[Frame]]:
    link = cfg.plc.link
    assert isinstance(link, ModbusSection)
    t0 = time.monotonic_ns()
    subprocess.run([
        sys.executable, str(NAIVE), "--port", str(link.port), "--frames", str(frames), "--out", str(out),
        "--mode", cfg.plc.mode, "--fps", str(cfg.camera.frame_rate_hz), "--reject-coil", str(link.reject_coil or 0),
        "--part-id-register", str(-1 if link.part_id_register is None else link.part_id_register),
        "--register-base", str(link.register_base),
        "--pulse-ms", str(cfg.plc.pulse_ms),
    ], check=True)
    return Block("naive", t0, time.monotonic_ns()), naive_frames(out)


# --- one configuration -------------------------------------------------------------------------------


@dataclass
class ConfigResult:
    protocol: str
    mode: str
    blocks: list[Block]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    alive_ms: float
    alive_periods: dict[str, list[float]] = field(default_factory=dict)
    all_periods: dict[str, list[float]] = field(default_factory=dict)
    missed: dict[str, int] = field(default_factory=dict)
    """Vision-block writes the poller did not see (two writes between two polls)."""
    poll_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))


def run_config(base: Config, protocol: str, mode: str, args: argparse.Namespace, tmp: Path) -> ConfigResult:
    cfg = bench_config(base, protocol, mode)
    sides = ("linegate", "naive") if protocol == "modbus" else ("linegate",)
    load_before = os.getloadavg()
    sim = PlcSimProcess(free_port(), args=sim_args(cfg.plc))
    if args.sim_rt_priority:
        set_fifo(sim._proc.pid, args.sim_rt_priority)
    cfg = with_plc_port(cfg, sim.port)
    link = cfg.plc.link
    assert link is not None
    poller = None
    if mode == "handshake":
        base_word = link.register_base if isinstance(link, ModbusSection) else link.byte_base
        poller = AlivePoller(protocol, sim.port, base_word, args.alive_poll_ms, tmp / f"alive-{protocol}.json")
    blocks: list[tuple[Block, list[Frame]]] = []
    try:
        for b in range(args.blocks):
            order = sides if b % 2 == 0 else tuple(reversed(sides))
            for side in order:
                print(f"  {protocol} {mode} block {b + 1}/{args.blocks}: {side} ...", file=sys.stderr, flush=True)
                if side == "linegate":
                    block, frames = run_linegate(cfg, args.frames, tmp / f"{protocol}-{mode}-{b}-linegate.jsonl")
                else:
                    block, frames = run_naive(cfg, args.frames, tmp / f"{protocol}-{mode}-{b}-naive.jsonl")
                block.load1 = os.getloadavg()[0]
                blocks.append((block, frames))
                time.sleep(0.3)  # let the simulator's last lines arrive
    finally:
        polled = poller.stop() if poller is not None else None
        sim.stop()
    with (tmp / f"{protocol}-{mode}-plc-sim.jsonl").open("w") as dump:  # what the PLC saw, for a closer look
        dump.writelines(json.dumps(e) + "\n" for e in sorted(sim.edges + sim.results, key=lambda e: int(e["t_ns"])))
    events = sim.results if mode == "handshake" else [
        e for e in sim.edges if e["coil"] == reject_output(cfg.plc) and e["value"] == 1
    ]
    result = ConfigResult(protocol, mode, [analyse(blk, frs, window(events, blk)) for blk, frs in blocks],
                          load_before, os.getloadavg(), cfg.plc.handshake.alive_ms)
    if polled is not None:
        polls, changes = polled
        result.poll_ms = np.diff(polls) / 1e6
        for blk in result.blocks:
            inside = [c for c in changes if blk.t_first <= c[0] <= blk.t_last]  # not start-up, not drain
            for prev, cur in itertools.pairwise(inside):
                if (cur[1] - prev[1]) & 0xFFFF != 1:  # a write fell between two polls: no period to take
                    result.missed[blk.side] = result.missed.get(blk.side, 0) + ((cur[1] - prev[1]) & 0xFFFF) - 1
                    continue
                period = (cur[0] - prev[0]) / 1e6
                result.all_periods.setdefault(blk.side, []).append(period)
                if cur[2] == prev[2]:
                    result.alive_periods.setdefault(blk.side, []).append(period)
    return result


# --- report --------------------------------------------------------------------------------------------


def pcts(values: Sequence[float], qs: Sequence[float] = (50, 99, 99.9)) -> list[str]:
    if not values:
        return ["-"] * (len(qs) + 1)
    arr = np.asarray(values, dtype=np.float64)
    return [f"{v:.3f}" for v in np.percentile(arr, qs)] + [f"{arr.max():.3f}"]


def joined(blocks: Sequence[Block], side: str, attr: str) -> list[float]:
    return [v for b in blocks if b.side == side for v in getattr(b, attr)]


def report(results: Sequence[ConfigResult], args: argparse.Namespace, cfg: Config) -> None:
    print(f"## linegate vs naive script: frame in hand -> reject at the PLC ({args.frames} frames x {args.blocks} "
          f"blocks per side)\n")
    print(f"Camera {cfg.camera.width}x{cfg.camera.height} {cfg.camera.pixel_format} at {cfg.camera.frame_rate_hz:g} "
          f"fps (simulated GenTL producer), model {cfg.model.id} (onnxruntime {onnxruntime.__version__}), "
          f"pulse {cfg.plc.pulse_ms:g} ms, linegate inference SCHED_FIFO {cfg.scheduling.infer_rt_priority}, "
          f"PLC worker {cfg.scheduling.plc_rt_priority} (the naive script: normal priority), PLC simulator "
          f"{f'SCHED_FIFO {args.sim_rt_priority}' if args.sim_rt_priority else 'normal priority'}; "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}. Times in ms.\n")
    print("| protocol | mode | side | frames | fps | camera skipped | rejects | at PLC | in hand -> PLC p50 | p99 "
          "| p99.9 | max | in hand -> verdict p50 | p99 | p99.9 | max |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        for side in ("linegate", "naive"):
            bl = [b for b in r.blocks if b.side == side]
            if not bl:
                continue
            frames = sum(b.frames for b in bl)
            fps = np.mean([b.fps for b in bl])
            matched = sum(len(b.plc_ms) for b in bl)
            row = [r.protocol, r.mode, side, str(frames), f"{fps:.1f}", str(sum(b.camera_skipped for b in bl)),
                   str(sum(b.rejects for b in bl)), str(matched),
                   *pcts(joined(bl, side, "plc_ms")), *pcts(joined(bl, side, "verdict_ms"))]
            print("| " + " | ".join(row) + " |")
    print("\n### Where the coil path's time goes (matched rejects)\n")
    print("| protocol | mode | side | verdict -> write sent p50 | p99 | max | write sent -> at PLC p50 | p99 | max "
          "| write sent -> reply p50 | p99 | max |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        for side in ("linegate", "naive"):
            bl = [b for b in r.blocks if b.side == side]
            if not bl:
                continue
            cols = []
            for attr in ("to_send_ms", "send_to_plc_ms", "send_to_reply_ms"):
                cols += [c for i, c in enumerate(pcts(joined(bl, side, attr))) if i != 2]
            print("| " + " | ".join([r.protocol, r.mode, side, *cols]) + " |")
    alive = [r for r in results if r.mode == "handshake"]
    if alive:
        print("\n### Vision alive counter at the PLC, linegate at full load (handshake)\n")
        print("| protocol | side | alive-only periods | p50 | p99 | p99.9 | max | nominal | block writes seen | missed "
              "| poll interval p50 | p99 | max |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in alive:
            periods = r.alive_periods.get("linegate", [])
            poll = pcts(list(r.poll_ms))
            print("| " + " | ".join([r.protocol, "linegate", str(len(periods)), *pcts(periods), f"{r.alive_ms:g}",
                                     str(len(r.all_periods.get("linegate", []))), str(r.missed.get("linegate", 0)),
                                     poll[0], poll[1], poll[3]])
                  + " |")
    print("\n### Load average (1, 5, 15 min) before and after each configuration\n")
    for r in results:
        b, a = r.load_before, r.load_after
        ends = ", ".join(f"{blk.side} {blk.load1:.2f}" for blk in r.blocks)
        print(f"- {r.protocol} {r.mode}: before {b[0]:.2f} {b[1]:.2f} {b[2]:.2f}, after {a[0]:.2f} {a[1]:.2f} "
              f"{a[2]:.2f}; 1-min load at each block's end: {ends}")
    problems = [(r.protocol, r.mode, b.side, len(b.unmatched), b.fail_safe) for r in results for b in r.blocks
                if b.unmatched or b.fail_safe]
    for protocol, mode, side, unmatched, fail_safe in problems:
        print(f"- {protocol} {mode} {side}: {unmatched} rejects not seen at the PLC, {fail_safe} fail-safe verdicts")
    if any(r.protocol == "s7" for r in results):
        print("- s7: linegate only (the naive script speaks Modbus only)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=REPO / "config" / "demo.toml")
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--modes", default="pulse,handshake")
    ap.add_argument("--protocols", default="modbus")
    ap.add_argument("--alive-poll-ms", type=float, default=1.0)
    ap.add_argument("--plc-rt-priority", type=int, help="override scheduling.plc_rt_priority (0: normal scheduler)")
    ap.add_argument("--sim-rt-priority", type=int, default=0,
                    help="run the PLC simulator SCHED_FIFO at this priority, as a PLC with its own CPU (0: off)")
    ap.add_argument("--keep", type=Path, help="keep the records (linegate logs, naive output) in this folder")
    ap.add_argument("--no-part-id", action="store_true",
                    help="pulse mode: no part-id register on either side (the coil write alone)")
    ap.add_argument("--poll-alive", choices=("modbus", "s7"), help=argparse.SUPPRESS)
    ap.add_argument("--poll-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--poll-base", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--poll-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.poll_alive:
        return poll_alive(args.poll_alive, args.poll_port, args.poll_base, args.alive_poll_ms, args.poll_out)

    base = load_config(args.config)
    if args.plc_rt_priority is not None:
        sched = base.scheduling.model_copy(update={"plc_rt_priority": args.plc_rt_priority})
        base = base.model_copy(update={"scheduling": sched})
    if args.no_part_id:
        modbus = base.plc.modbus.model_copy(update={"part_id_register": None}) if base.plc.modbus else None
        base = base.model_copy(update={"plc": base.plc.model_copy(update={"modbus": modbus})})
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench-coil-"))
    tmp.mkdir(parents=True, exist_ok=True)
    results = [
        run_config(base, protocol, mode, args, tmp)
        for protocol in args.protocols.split(",")
        for mode in args.modes.split(",")
    ]
    report(results, args, base)
    print(f"\nrecords: {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
