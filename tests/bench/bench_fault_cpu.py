"""Benchmark: CPU used by each linegate process while a fault lasts (a fault must not cost a CPU).

    python tests/bench/bench_fault_cpu.py [--seconds 6]

For each scenario, one `linegate run` of the demo config (simulated camera at 100 fps) with the fault
in place from the start (PLC away: nothing listens on its port; PLC hung: the simulator frozen with
SIGSTOP once linegate runs; PLC refuses its blocks: handshake mode with register_base 65000 against a
simulator serving them at 100; camera away: a serial number no device has). After 4 s, each process's
user + system CPU time is read from /proc over ``--seconds`` and printed as a share of one CPU,
per role (the pids are those of the run's ``worker_started`` records). Prints numbers; asserts
nothing. Before the fix of 2026-11-30, the PLC worker took 59-95% of a CPU with the PLC away or hung
in handshake mode, encoder tracking and (hung) pulse mode.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linegate.demo.runner import PlcSimProcess, free_port  # noqa: E402
from tests.pipeline.harness import demo_config_file  # noqa: E402

HANDSHAKE = {'mode = "pulse"': 'mode = "handshake"'}
ENCODER = '\n[plc.tracking]\nby = "encoder"\nejector_counts = 2000\ntolerance_counts = 200\n'


@dataclass
class Scenario:
    name: str
    plc: str  # "up", "away" (nothing listens) or "hung" (simulator stopped with SIGSTOP)
    replace: dict[str, str] = field(default_factory=dict)
    append: str = ""


SCENARIOS = [
    Scenario("healthy, pulse", "up"),
    Scenario("PLC away, pulse", "away"),
    Scenario("PLC away, handshake", "away", HANDSHAKE),
    Scenario("PLC away, pulse + encoder", "away", append=ENCODER),
    Scenario("PLC hung, pulse", "hung"),
    Scenario("PLC hung, handshake", "hung", HANDSHAKE),
    Scenario("PLC refuses its blocks", "up", {**HANDSHAKE, "register_base = 100 ": "register_base = 65000 "}),
    Scenario("camera away", "up", {'device = { serial_number = "0" }': 'device = { serial_number = "999" }'}),
]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_by_role(log: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "linegate_starting":
            out["supervisor"] = record["pid"]
        elif record.get("event") == "worker_started":
            out[record["role"]] = record["pid"]
    return out


def measure(s: Scenario, tmp: Path, seconds: float) -> dict[str, float]:
    port = free_port()
    config, _instance = demo_config_file(tmp, port, s.replace, s.append)
    sim = None
    if s.plc != "away":
        mode = "handshake" if s.replace.get('mode = "pulse"') else "pulse"
        sim = PlcSimProcess(port, args=["--mode", mode, "--register-base", "100"])
    log = tmp / f"{config.stem}.jsonl"
    run = subprocess.Popen(
        [sys.executable, "-m", "linegate", "run", "--config", str(config), "--log-file", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(4)
        if sim is not None and s.plc == "hung":
            sim.pause()
        pids = pids_by_role(log)
        before = {role: cpu_s(pid) for role, pid in pids.items()}
        time.sleep(seconds)
        after = {role: cpu_s(pid) for role, pid in pids.items()}
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(60)
        if sim is not None:
            sim.resume()
            sim.stop()
    return {role: (after[role] - before[role]) / seconds for role in pids}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()
    roles = ["supervisor", "acquire", "infer", "plc"]
    print(f"CPU per process over {args.seconds:g} s, % of one CPU ({os.cpu_count()} CPUs)")
    print(f"{'scenario':28}" + "".join(f"{r:>12}" for r in roles))
    with tempfile.TemporaryDirectory() as tmp:
        for s in SCENARIOS:
            share = measure(s, Path(tmp), args.seconds)
            print(f"{s.name:28}" + "".join(f"{share.get(r, float('nan')) * 100:11.0f}%" for r in roles), flush=True)


if __name__ == "__main__":
    main()
