"""``linegate demo``: the real pipeline on the simulated camera, with a simulated PLC it starts itself.

The only differences from production are in the configuration: the ``builtin:viky`` producer, the
demo ONNX model, and a PLC address pointing at the ``linegate plc-sim`` process started here.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import linegate
from linegate.config import Config, load_config
from linegate.config.lanes import lanes_of
from linegate.config.schema import ModbusSection, PlcSection, S7Section
from linegate.errors import ConfigError, LinegateError

PACKAGED_DEMO_CONFIG = Path(__file__).resolve().parent / "data" / "config" / "demo.toml"
"""Where an installed wheel has the demo's configuration (setup.py copies it there, with its model)."""
CHECKOUT_DEMO_CONFIG = Path(linegate.__file__).resolve().parents[1] / "config" / "demo.toml"
"""Where a checkout (an editable install) has it."""
DEMO_CONFIG = PACKAGED_DEMO_CONFIG if PACKAGED_DEMO_CONFIG.is_file() else CHECKOUT_DEMO_CONFIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PlcSimProcess:
    """``python -m linegate.plc.sim`` as a child process; collects the events it prints.

    *compact* (the demo, which may run for hours): keep only the part ids of rising edges and of
    results (8 bytes each) instead of every event, so memory grows by bytes, not dicts, per reject.
    """

    def __init__(self, port: int, part_id_register: int = 0, args: Sequence[str] = (), compact: bool = False) -> None:
        self.port = port
        self.compact = compact
        self.rising: dict[int, array[int]] = {}
        """compact: part ids of each coil's rising edges."""
        self.result_part_ids: array[int] = array("q")
        """compact: part ids of the results the simulated PLC took."""
        self.edges: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self.duplicates: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.listening: dict[str, Any] | None = None
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "linegate.plc.sim",
                "--port",
                str(port),
                *(["--part-id-register", str(part_id_register)] if "--part-id-register" not in args else []),
                *args,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._listening.wait(15):
            self.stop()
            raise LinegateError(f"plc-sim did not start listening on 127.0.0.1:{port}")

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "listening":
                self.listening = event
                self._listening.set()
            elif self.compact:
                if event.get("event") == "coil_edge" and event["value"] == 1:
                    self.rising.setdefault(int(event["coil"]), array("q")).append(int(event["part_id"]))
                elif event.get("event") == "result":
                    self.result_part_ids.append(int(event["part_id"]))
            elif event.get("event") == "coil_edge":
                self.edges.append(event)
            elif event.get("event") == "result":
                self.results.append(event)
            elif event.get("event") == "duplicate_result":
                self.duplicates.append(event)
            elif event.get("event") == "vision_status":
                self.statuses.append(event)

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(2)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL: the PLC vanishes without closing its connections cleanly."""
        self._proc.kill()
        self._proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the PLC hangs with its connections open."""
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._proc.send_signal(signal.SIGCONT)

    def rising_part_ids(self, coil: int) -> list[int]:
        if self.compact:
            return list(self.rising.get(coil, ()))
        return [int(e["part_id"]) for e in self.edges if e["coil"] == coil and e["value"] == 1]

    def parts_seen(self, plc: PlcSection) -> list[int]:
        """Part ids the simulated PLC took, once per pulse (pulse) or per new result (handshake)."""
        if plc.mode == "handshake":
            return list(self.result_part_ids) if self.compact else [int(e["part_id"]) for e in self.results]
        link = plc.link
        output = link.reject_coil if isinstance(link, ModbusSection) else getattr(link, "reject_byte", None)
        return self.rising_part_ids(int(output or 0))


def plc_knows_part_ids(plc: PlcSection) -> bool:
    """Whether each reject carries its part id to the PLC: handshake results always do; pulse mode
    only on Modbus with ``part_id_register`` (S7 pulse mode has no part-id bytes)."""
    link = plc.link
    return plc.mode == "handshake" or (isinstance(link, ModbusSection) and link.part_id_register is not None)


def sim_args(plc: PlcSection) -> list[str]:
    """``linegate plc-sim`` arguments that serve what *plc* expects."""
    args = ["--protocol", plc.protocol, "--mode", plc.mode]
    link = plc.link
    if isinstance(link, ModbusSection):
        args += ["--part-id-register", str(link.part_id_register or 0), "--register-base", str(link.register_base)]
    elif isinstance(link, S7Section):
        args += ["--db", str(link.db), "--byte-base", str(link.byte_base)]
        for key in ("reject_byte", "fault_byte"):
            if getattr(link, key) is not None:
                args += [f"--{key.replace('_', '-')}", str(getattr(link, key))]
    return args


def with_plc_port(cfg: Config, port: int) -> Config:
    """*cfg* with the PLC peer moved to 127.0.0.1:*port*."""
    link = cfg.plc.link
    assert link is not None
    moved = link.model_copy(update={"host": "127.0.0.1", "port": port})
    return cfg.model_copy(update={"plc": cfg.plc.model_copy(update={cfg.plc.protocol: moved})})


def with_cameras(cfg: Config, n: int) -> Config:
    """*cfg* (pulse mode over Modbus, one camera) as *n* ``[[cameras]]`` over the simulated producer's
    devices: camera i is serial number i, its reject coil i and its part id registers 2i, 2i + 1."""
    link = cfg.plc.link
    if not isinstance(link, ModbusSection) or cfg.plc.mode != "pulse" or cfg.cameras:
        raise ConfigError("--cameras: the demo's several cameras need a one-camera configuration in pulse mode "
                          f"over Modbus (this one: {cfg.plc.protocol} {cfg.plc.mode}"
                          f"{', with [[cameras]]' if cfg.cameras else ''})")  # fmt: skip
    data = cfg.model_dump()
    del data["camera"]["device"]
    data["plc"]["modbus"]["fault_coil"] = None  # each camera would need its own: the demo has none
    data["cameras"] = [
        {"name": f"cam{i}", "device": {"serial_number": str(i)},
         "plc": {"modbus": {"reject_coil": i, "part_id_register": 2 * i}}}
        for i in range(n)
    ]  # fmt: skip
    return Config.model_validate(data)


def run_demo(config: Path | None, *, max_frames: int, log_file: Path, cameras: int = 1) -> int:
    """Run the demo and print a live line each second and a reconciled final summary; *cameras* > 1:
    that many of the simulated devices in one linegate (``[[cameras]]``), each its own reject coil."""
    from linegate.counters import Count, Snapshot
    from linegate.pipeline.summary import live_line
    from linegate.pipeline.supervisor import Supervisor
    from linegate.report import print_summary

    if config is None and not DEMO_CONFIG.is_file():
        raise ConfigError(
            f"the demo's configuration is missing (neither {PACKAGED_DEMO_CONFIG} nor {CHECKOUT_DEMO_CONFIG}): "
            "reinstall linegate, or pass --config"
        )
    cfg = load_config(config or DEMO_CONFIG)
    if cameras > 1:
        cfg = with_cameras(cfg, cameras)
        sim = PlcSimProcess(free_port(), args=[*sim_args(cfg.plc), "--part-id-stride", "2"], compact=True)
    else:
        sim = PlcSimProcess(free_port(), args=sim_args(cfg.plc), compact=True)
    cfg = with_plc_port(cfg, sim.port)
    log_file.unlink(missing_ok=True)
    print(
        f"linegate demo: camera {cfg.camera.width}x{cfg.camera.height} {cfg.camera.pixel_format} "
        f"(simulated GenTL producer), model {cfg.model.id} ({cfg.model.backend}), budget "
        f"{cfg.deadline.budget_ms} ms, PLC simulator on 127.0.0.1:{sim.port}, {max_frames} frames"
        + (f" from each of {cameras} cameras" if cameras > 1 else ""),
        flush=True,
    )
    previous: Snapshot | None = None
    last = time.monotonic()

    def tick(snapshot: Snapshot, elapsed: float) -> None:
        nonlocal previous, last
        now = time.monotonic()
        print(live_line(snapshot, elapsed, previous, now - last), flush=True)
        previous, last = snapshot, now

    try:
        summary = Supervisor(cfg, log_file=log_file, log_stdout=False, max_frames=max_frames, on_tick=tick).run()
    finally:
        time.sleep(0.2)  # let the simulator print the last edges
        sim.stop()
    print_summary(summary, sys.stdout)
    # each camera's reject output against what linegate delivered for that camera
    outputs = [("", cfg.plc, summary.counters)]
    if summary.cameras:
        outputs = [(lane.name, lane.cfg.plc, counts)
                   for lane, (_, counts) in zip(lanes_of(cfg), summary.cameras, strict=True)]  # fmt: skip
    mismatch = False
    for name, plc, counts in outputs:
        seen = sim.parts_seen(plc)
        delivered = counts[Count.PLC_DELIVERED]
        what = "reject pulses" if plc.mode == "pulse" else "acknowledged results"
        by_part = plc_knows_part_ids(plc)
        parts = f"for {len(set(seen))} parts" if by_part else "(this PLC output carries no part ids: counted only)"
        camera = f" from camera {name}" if name else ""
        print(f"  plc-sim  saw {len(seen)} {what}{camera} {parts} (linegate delivered {delivered})")
        mismatch = mismatch or len(seen) != delivered or (by_part and len(set(seen)) != len(seen))
    print(f"  records  {log_file}")
    if mismatch:
        print("  MISMATCH the PLC did not see each delivered reject exactly once")
        return max(summary.exit_code, 1)
    return summary.exit_code
