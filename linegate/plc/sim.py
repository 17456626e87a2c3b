"""``linegate plc-sim``: a Modbus TCP PLC simulator that prints every coil edge (the pymodbus server).

It holds coils and holding registers on every device id, and prints one JSON line per coil value
change: ``{"event": "coil_edge", "coil": N, "value": 0|1, "t_ns": monotonic ns, "part_id": P}``,
where ``part_id`` is the 32-bit value of the part-id registers (high word first) at that moment.
The first line is ``{"event": "listening", ...}`` so a parent process can wait for it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import TextIO

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # a client vanishing mid-request is normal in tests

FC_WRITE_COIL, FC_WRITE_COILS = 5, 15
FC_WRITE_REGISTER, FC_WRITE_REGISTERS = 6, 16


class EdgeRecorder:
    """Tracks coil and register values from write requests and prints coil edges."""

    def __init__(self, out: TextIO, part_id_register: int, coils: int, registers: int) -> None:
        self.out = out
        self.part_id_register = part_id_register
        self.coils = [False] * (-(-coils // 16) * 16)  # whole 16-bit registers of coils
        self.registers = [0] * registers

    def part_id(self) -> int:
        r = self.part_id_register
        return (self.registers[r] << 16) | self.registers[r + 1]

    async def on_access(
        self,
        function_code: int,
        _start_address: int,
        address: int,
        count: int,
        _current: list[int],
        values: list[int] | list[bool] | None,
    ) -> None:
        """pymodbus calls this for every valid access, before a write is applied."""
        if values is None:
            return
        if function_code in (FC_WRITE_REGISTER, FC_WRITE_REGISTERS):
            for i, value in enumerate(values[:count]):
                self.registers[address + i] = int(value)
        elif function_code in (FC_WRITE_COIL, FC_WRITE_COILS):
            for i, value in enumerate(values[:count]):
                coil, new = address + i, bool(value)
                if self.coils[coil] != new:
                    self.coils[coil] = new
                    self.emit(coil, new)

    def emit(self, coil: int, value: bool) -> None:
        event = {"event": "coil_edge", "coil": coil, "value": int(value), "t_ns": time.monotonic_ns()}
        event["part_id"] = self.part_id()
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()


def build_device(recorder: EdgeRecorder) -> SimDevice:
    """One device answering on every unit id, with separate coil and register blocks."""
    coils = [SimData(0, count=len(recorder.coils) // 16, values=False, datatype=DataType.BITS)]
    registers = [SimData(0, count=len(recorder.registers), values=0, datatype=DataType.REGISTERS)]
    inputs = [SimData(0, count=1, values=False, datatype=DataType.BITS)]
    input_registers = [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)]
    return SimDevice(id=0, simdata=(coils, inputs, registers, input_registers), action=recorder.on_access)


async def serve_plc_sim(
    host: str,
    port: int,
    *,
    out: TextIO,
    part_id_register: int = 0,
    coils: int = 64,
    registers: int = 64,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve until cancelled; calls *ready* with the port once listening."""
    if not 0 <= part_id_register < registers - 1:
        raise ValueError(f"part_id_register {part_id_register} needs two registers inside 0..{registers - 1}")
    recorder = EdgeRecorder(out, part_id_register, coils, registers)
    server = ModbusTcpServer(build_device(recorder), address=(host, port))
    await server.serve_forever(background=True)
    out.write(json.dumps({"event": "listening", "host": host, "port": port}) + "\n")
    out.flush()
    if ready is not None:
        ready(port)
    try:
        await asyncio.Event().wait()
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


def run_plc_sim(host: str, port: int, *, part_id_register: int = 0, out: TextIO = sys.stdout) -> int:
    """Run in the foreground until SIGINT or SIGTERM; returns the exit code."""

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve_plc_sim(host, port, out=out, part_id_register=part_id_register)

    asyncio.run(main())
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="linegate plc-sim")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5020)
    parser.add_argument("--part-id-register", type=int, default=0)
    args = parser.parse_args()
    raise SystemExit(run_plc_sim(args.host, args.port, part_id_register=args.part_id_register))
