"""``linegate plc-sim``: a Modbus TCP PLC simulator (the pymodbus server) printing one JSON line per event.

It holds coils and holding registers on every device id. The first line is
``{"event": "listening", "host", "port", "protocol": "modbus", "mode"}`` (the port actually bound, also for
``--port 0``) so a parent process can wait for it. Then, in both modes, one line per coil value change:
``{"event": "coil_edge", "coil": N, "value": 0|1, "t_ns": monotonic ns, "part_id": P}``, where ``part_id``
is the 32-bit value of the part-id registers (high word first) at that moment.

``--mode handshake`` also runs the simulated PLC program (:mod:`linegate.plc.plc_program`) on every
register write touching the vision block at ``register_base`` and serves the PLC block from its memory,
refreshed at every access; the program's events (``result``, ``duplicate_result``, ``vision_status``)
are printed as they happen. Every ``t_ns`` is ``time.monotonic_ns()`` taken in the pymodbus ``action=``
callback, i.e. when the request is applied. ``--blocks N`` serves N interface blocks, 32 registers apart
from ``register_base`` (several cameras on one PLC), each with its own program; then each program event
carries ``"block": k`` and ``listening`` says ``"blocks": N`` (both only for N > 1).

With an encoder (``--encoder-cps`` > 0), in either mode:

- ``--mode pulse`` serves the PLC block at ``register_base`` too (words 16..23: ``plc_alive``, ``ack_seq``
  0, ``plc_part_id``, ``encoder``, ``recipe``), as handshake mode does, but runs no handshake logic (writes
  to the vision block are stored, nothing more). The part-id registers must not overlap the PLC block.
- every access to the holding registers recomputes the PLC block at that access's ``t_ns``, so a read of
  ``encoder`` (words 20-21, high word first) is the count at the moment of the read, never a cached one;
- the ``listening`` line gains ``"encoder_t0_ns"``, ``"encoder_cps"`` and ``"encoder_start"`` and every
  ``coil_edge`` gains ``"encoder"``, the raw u32 count at its ``t_ns``. The count at any monotonic instant
  ``t`` is ``(encoder_start + floor(encoder_cps * (t - encoder_t0_ns) / 1e9)) mod 2**32``, exactly, with
  ``encoder_cps`` the decimal printed (:meth:`linegate.plc.plc_program.PlcProgram.encoder_at`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, TextIO

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from linegate.plc import interface as itf
from linegate.plc.plc_program import PlcProgram, ProgramConfig

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # a client vanishing mid-request is normal in tests

Mode = Literal["pulse", "handshake"]
FC_WRITE_COIL, FC_WRITE_COILS = 5, 15
FC_WRITE_REGISTER, FC_WRITE_REGISTERS = 6, 16
REGISTER_FCS = frozenset({3, 6, 16, 22, 23})


BLOCK_STRIDE = 32
"""Registers from one interface block to the next with ``blocks`` > 1: the 32 that linegate's config
check keeps between two cameras' blocks on one PLC (:mod:`linegate.config.lanes`)."""
MAX_BLOCKS = 8
"""One per camera at most (``[[cameras]]`` takes up to 8)."""


class SimPortError(Exception):
    """The simulator cannot listen where asked; the message is one line for the user."""


class JsonLines:
    """Writes one JSON object per line and flushes; safe from several threads."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._lock = threading.Lock()

    def __call__(self, event: Mapping[str, object]) -> None:
        line = json.dumps(event) + "\n"
        with self._lock, contextlib.suppress(BrokenPipeError, ValueError):  # the reader went away
            self.out.write(line)
            self.out.flush()


def check_port(port: int) -> None:
    """Raise SimPortError unless *port* is a TCP port number (0 = any free port)."""
    if not 0 <= port <= 65535:
        raise SimPortError(f"port {port} is out of range (0..65535; 0 picks a free port)")


def bind_problem(host: str, port: int) -> str | None:
    """Why listening on *host*:*port* fails now, as one line; None if a bind succeeds.

    The probe binds without SO_REUSEPORT, so a port held by any listener (even one that set
    SO_REUSEPORT, like snap7's server) is reported as in use.
    """
    check_port(port)
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        return f"cannot listen on {host!r}: unknown host ({exc})"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use"
            if exc.errno == errno.EACCES:
                return (f"no permission to listen on port {port} on {host} "
                        "(ports below 1024 need root or CAP_NET_BIND_SERVICE)")
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"cannot listen on {host}: not an address of this machine"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


class EdgeRecorder:
    """Tracks coil and register values from requests, prints coil edges, serves the PLC block from *program*.

    *handshake*: feed vision-block writes to the program (its result logic); otherwise (pulse mode with an
    encoder) the program only serves the PLC block.
    """

    def __init__(
        self,
        emit: Callable[[Mapping[str, object]], None],
        part_id_register: int,
        coils: int,
        registers: int,
        *,
        program: PlcProgram | None = None,
        register_base: int = 0,
        handshake: bool = True,
        part_id_stride: int = 0,
        more_programs: Sequence[PlcProgram] = (),
    ) -> None:
        self.emit_event = emit
        self.part_id_register = part_id_register
        self.part_id_stride = part_id_stride
        """Coil c's part id is at part_id_register + c * stride (several cameras, one coil and register pair each)."""
        self.coils = [False] * (-(-coils // 16) * 16)  # whole 16-bit registers of coils
        self.registers = [0] * registers
        self.program = program
        self.handshake = handshake
        self.blocks = [(register_base + k * BLOCK_STRIDE, p) for k, p in enumerate(
            [program, *more_programs] if program is not None else [])]  # fmt: skip
        """(register base, program) of each interface block: block k at register_base + k * BLOCK_STRIDE."""
        last = self.blocks[-1][0] if self.blocks else register_base
        if program is not None and last + itf.TOTAL_WORDS > registers:
            raise ValueError(f"register_base {last} leaves no room for the {itf.TOTAL_WORDS}-word interface")

    def part_id(self, coil: int = 0) -> int:
        r = self.part_id_register + coil * self.part_id_stride
        if r + 1 >= len(self.registers):
            return 0
        return (self.registers[r] << 16) | self.registers[r + 1]

    async def on_access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current: list[int],
        values: list[int] | list[bool] | None,
    ) -> None:
        """pymodbus calls this for every valid access, before a write is applied."""
        t_ns = time.monotonic_ns()
        if function_code in (FC_WRITE_COIL, FC_WRITE_COILS) and values is not None:
            for i, value in enumerate(values[:count]):
                coil, new = address + i, bool(value)
                if self.coils[coil] != new:
                    self.coils[coil] = new
                    self.emit(coil, new, t_ns)
            return
        if function_code not in REGISTER_FCS:
            return
        wrote = function_code in (FC_WRITE_REGISTER, FC_WRITE_REGISTERS) and values is not None
        if wrote and values is not None:
            for i, value in enumerate(values[:count]):
                self.registers[address + i] = int(value)
                current[address + i - start_address] = int(value)  # pymodbus applies the same right after
        several = len(self.blocks) > 1
        for k, (register_base, program) in enumerate(self.blocks):
            base = register_base - start_address
            touches_vision = address < register_base + itf.VISION_WORDS and address + count > register_base
            if self.handshake and wrote and touches_vision:
                for event in program.on_vision_block(current[base : base + itf.VISION_WORDS], t_ns):
                    self.emit_event({**event, "block": k} if several else event)
            plc = base + itf.PLC_OFFSET
            current[plc : plc + itf.PLC_WORDS] = program.scan(t_ns)

    def emit(self, coil: int, value: bool, t_ns: int | None = None) -> None:
        stamp = time.monotonic_ns() if t_ns is None else t_ns
        event: dict[str, object] = {"event": "coil_edge", "coil": coil, "value": int(value), "t_ns": stamp,
                                    "part_id": self.part_id(coil)}
        if self.program is not None and self.program.has_encoder:
            event["encoder"] = self.program.encoder_at(stamp)
        self.emit_event(event)


def build_device(recorder: EdgeRecorder) -> SimDevice:
    """One device answering on every unit id, with separate coil and register blocks."""
    coils = [SimData(0, count=len(recorder.coils), values=False, datatype=DataType.BITS)]  # count: bits
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
    mode: Mode = "pulse",
    register_base: int = 0,
    program: ProgramConfig | None = None,
    ready: Callable[[int], None] | None = None,
    part_id_stride: int = 0,
    blocks: int = 1,
) -> None:
    """Serve until cancelled; calls *ready* with the bound port once listening. Raises SimPortError.

    *blocks* > 1: that many interface blocks, block k at ``register_base + k * BLOCK_STRIDE`` (one per
    camera, as ``[[cameras]]`` places them), each with its own PLC program; their events carry ``block``.
    """
    config = program or ProgramConfig()
    serves_plc_block = mode == "handshake" or config.encoder_cps > 0
    if not 1 <= blocks <= MAX_BLOCKS:
        raise ValueError(f"blocks {blocks} must be within 1..{MAX_BLOCKS}")
    if serves_plc_block:
        registers = max(registers, register_base + (blocks - 1) * BLOCK_STRIDE + itf.TOTAL_WORDS)
    if not 0 <= part_id_register < registers - 1:
        raise ValueError(f"part_id_register {part_id_register} needs two registers inside 0..{registers - 1}")
    last_base = 65535 - itf.TOTAL_WORDS - (blocks - 1) * BLOCK_STRIDE
    if not 0 <= register_base <= last_base:
        raise ValueError(f"register_base {register_base} must be within 0..{last_base}")
    for k in range(blocks):
        plc_first = register_base + k * BLOCK_STRIDE + itf.PLC_OFFSET
        if mode == "pulse" and serves_plc_block and part_id_register + 2 > plc_first \
                and part_id_register < plc_first + itf.PLC_WORDS:
            raise ValueError(f"part_id_register {part_id_register} overlaps the PLC block at registers "
                             f"{plc_first}..{plc_first + itf.PLC_WORDS - 1} (register_base {register_base})")
    problem = bind_problem(host, port)
    if problem is not None:
        raise SimPortError(problem)
    emit = JsonLines(out)
    t0_ns = time.monotonic_ns()
    plc = PlcProgram(config, t0_ns) if serves_plc_block else None
    more = [PlcProgram(config, t0_ns) for _ in range(blocks - 1)] if serves_plc_block else []
    recorder = EdgeRecorder(emit, part_id_register, coils, registers, program=plc, register_base=register_base,
                            handshake=mode == "handshake", part_id_stride=part_id_stride, more_programs=more)
    server = ModbusTcpServer(build_device(recorder), address=(host, port))
    try:
        await server.serve_forever(background=True)
    except RuntimeError as exc:  # pymodbus hides the OSError; probe again for the reason
        raise SimPortError(bind_problem(host, port) or f"cannot listen on {host}:{port}") from exc
    listener = server.transport
    bound = int(listener.sockets[0].getsockname()[1]) if isinstance(listener, asyncio.Server) else port
    listening: dict[str, object] = {"event": "listening", "host": host, "port": bound, "protocol": "modbus",
                                    "mode": mode, **({"blocks": blocks} if blocks > 1 else {})}
    if plc is not None and plc.has_encoder:
        listening.update(plc.encoder_origin())
    emit(listening)
    if ready is not None:
        ready(bound)
    try:
        await asyncio.Event().wait()
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


def run_plc_sim(
    host: str,
    port: int,
    *,
    part_id_register: int = 0,
    out: TextIO = sys.stdout,
    mode: Mode = "pulse",
    register_base: int = 0,
    program: ProgramConfig | None = None,
    part_id_stride: int = 0,
    blocks: int = 1,
) -> int:
    """Run in the foreground until SIGINT or SIGTERM; returns the exit code. Raises SimPortError."""

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve_plc_sim(host, port, out=out, part_id_register=part_id_register, mode=mode,
                                register_base=register_base, program=program, part_id_stride=part_id_stride,
                                blocks=blocks)

    asyncio.run(main())
    return 0


if __name__ == "__main__":  # python -m linegate.plc.sim [plc-sim options]: the same as `linegate plc-sim`
    import importlib

    raise SystemExit(importlib.import_module("linegate.cli").main(["plc-sim", *sys.argv[1:]]))
