"""``linegate plc-sim --protocol s7``: a Siemens S7 PLC simulator (python-snap7's server) printing JSON lines.

One data block ``db`` is served (ISO-on-TCP, any rack/slot). The first line is
``{"event": "listening", "host", "port", "protocol": "s7", "mode", "db"}`` (the port actually bound).

- ``pulse``: one line per change 0 <-> 1 of a flag byte (``reject_byte``, ``fault_byte``, bytes 0 and 1 if
  neither is given; any non-zero byte counts as 1):
  ``{"event": "coil_edge", "coil": <byte offset>, "value": 0|1, "t_ns", "part_id": 0}``
  (S7 pulse mode has no part-id address, so ``part_id`` is always 0).
- ``handshake``: the simulated PLC program (:mod:`linegate.plc.plc_program`) runs on every write touching
  the vision block at ``byte_base`` (its events are printed; ``blocks`` > 1: one program per block, 64 bytes
  apart, its events carrying ``"block": k``); the PLC block is written into the DB at every
  write and by a scan thread every ``scan_ms`` (default 5 ms, like a PLC cycle). Flag bytes are watched only
  if given and outside the interface block.
- with an encoder (``encoder_cps`` > 0), in either mode: pulse mode serves the PLC block at ``byte_base`` too
  (written by the scan thread; no handshake logic: vision-block writes are stored, nothing more; a flag byte
  inside the PLC block is refused), the ``listening`` line gains ``"encoder_t0_ns"``, ``"encoder_cps"`` and
  ``"encoder_start"`` and every ``coil_edge`` gains ``"encoder"`` (the raw u32 count at its ``t_ns``), as in
  the Modbus simulator (:mod:`linegate.plc.sim`). Unlike there, an S7 read of the encoder sees the count of
  the last scan, at most ``scan_ms`` old (as of a real PLC's DB).

How writes are observed: python-snap7 3.3.0's server calls its events callback (``EVC_DATA_WRITE``, with the
area, DB number, start and length) in the client's handler thread right after the bytes are in the DB and
before the reply is sent. ``t_ns`` is ``time.monotonic_ns()`` taken there: every write is seen (no polling,
no missed short pulses) and stamped within microseconds of being applied. Reads are served from the DB as it
is, so what a read sees of the PLC block is at most one scan (``scan_ms``) old.

python-snap7's server mishandles bit writes and multi-item writes (see docs): write whole bytes and words.
"""

from __future__ import annotations

import logging
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TextIO

from snap7.server import EVC_DATA_WRITE, Server
from snap7.type import SrvArea, SrvEvent

from linegate.plc import interface as itf
from linegate.plc.plc_program import PlcProgram, ProgramConfig
from linegate.plc.sim import JsonLines, Mode, SimPortError, bind_problem

logging.getLogger("snap7").setLevel(logging.CRITICAL)  # clients vanishing mid-request are normal in tests

BLOCK_BYTES = 2 * itf.TOTAL_WORDS
BLOCK_STRIDE = 64
"""Bytes from one interface block to the next with ``blocks`` > 1: the 64 that linegate's config check
keeps between two cameras' blocks in one DB (:mod:`linegate.config.lanes`)."""
MAX_BLOCKS = 8
MAX_DB_BYTES = 65535


class S7Sim:
    """The S7 simulator: a snap7 server with one DB, watched on every write. Start, then stop."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        emit: Callable[[Mapping[str, object]], None],
        db: int = 100,
        byte_base: int = 0,
        reject_byte: int | None = None,
        fault_byte: int | None = None,
        mode: Mode = "pulse",
        program: ProgramConfig | None = None,
        scan_ms: float = 5.0,
        blocks: int = 1,
    ) -> None:
        if mode == "pulse" and reject_byte is None and fault_byte is None:
            reject_byte, fault_byte = 0, 1
        flags = [b for b in (reject_byte, fault_byte) if b is not None]
        _check(1 <= db <= 65535, f"db {db} must be within 1..65535")
        _check(1 <= blocks <= MAX_BLOCKS, f"blocks {blocks} must be within 1..{MAX_BLOCKS}")
        span = (blocks - 1) * BLOCK_STRIDE + BLOCK_BYTES  # from byte_base to the end of the last block
        _check(0 <= byte_base <= MAX_DB_BYTES - span, f"byte_base {byte_base} leaves no room for the interface")
        _check(all(0 <= b < MAX_DB_BYTES for b in flags), "flag bytes must be within 0..65534")
        _check(len(set(flags)) == len(flags), "reject_byte and fault_byte must differ")
        _check(scan_ms > 0, "scan_ms must be > 0")
        config = program or ProgramConfig()
        serves_plc_block = mode == "handshake" or config.encoder_cps > 0
        bases = [byte_base + k * BLOCK_STRIDE for k in range(blocks)]
        if mode == "handshake":  # a flag byte inside an interface block would report the block's words as edges
            flags = [b for b in flags if not any(base <= b < base + BLOCK_BYTES for base in bases)]
        elif serves_plc_block:  # the scan would overwrite it
            for base in bases:
                plc_at = base + 2 * itf.PLC_OFFSET
                _check(all(not plc_at <= b < plc_at + 2 * itf.PLC_WORDS for b in flags),
                       f"flag bytes must be outside the PLC block (bytes {plc_at}..{plc_at + 2 * itf.PLC_WORDS - 1})")
        self.host, self.port, self.db, self.mode, self.scan_ms = host, port, db, mode, scan_ms
        self.emit = emit
        size = max([64, *(b + 1 for b in flags)] + ([byte_base + span] if serves_plc_block else []))
        self.data = bytearray(size)
        self.flags = {b: 0 for b in flags}
        t0_ns = time.monotonic_ns()
        self.blocks = [(base, PlcProgram(config, t0_ns)) for base in bases] if serves_plc_block else []
        """(byte base, program) of each interface block (``blocks`` > 1: one per camera)."""
        self.program = self.blocks[0][1] if self.blocks else None
        self._lock = threading.Lock()  # one write handled at a time (several clients, plus the scan thread)
        self._stop = threading.Event()
        self._scanner: threading.Thread | None = None
        self._server: Server | None = None

    def start(self) -> int:
        """Listen and return the bound port; raises SimPortError (one line) if that is not possible."""
        problem = bind_problem(self.host, self.port)
        if problem is not None:
            raise SimPortError(problem)
        try:
            ip = socket.gethostbyname(self.host)
        except OSError as exc:
            raise SimPortError(f"cannot listen on {self.host!r}: unknown host ({exc})") from exc
        server = Server(log=False)
        server.register_area(SrvArea.DB, self.db, self.data)
        server.set_events_callback(self._on_server_event)
        if self.program is not None:
            self._scan(time.monotonic_ns())
        try:
            server.start_to(ip, self.port)
        except Exception as exc:  # S7ConnectionError wrapping the OSError
            why = bind_problem(self.host, self.port) or f"cannot listen on {self.host}:{self.port}: {exc}"
            raise SimPortError(why) from exc
        self._server = server
        assert server.server_socket is not None
        bound = int(server.server_socket.getsockname()[1])
        if self.program is not None:
            self._scanner = threading.Thread(target=self._scan_loop, name="s7-sim-scan", daemon=True)
            self._scanner.start()
        return bound

    def listening_extra(self) -> dict[str, int | float]:
        """The encoder's origin for the ``listening`` line (empty without an encoder)."""
        return self.program.encoder_origin() if self.program is not None and self.program.has_encoder else {}

    def stop(self) -> None:
        """Stop scanning and serving."""
        self._stop.set()
        if self._scanner is not None:
            self._scanner.join(2)
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _on_server_event(self, event: SrvEvent) -> None:
        """snap7's events callback: runs in the client's thread right after a write is applied."""
        if event.EvtCode != EVC_DATA_WRITE or event.EvtParam1 != SrvArea.DB or event.EvtParam2 != self.db:
            return
        t_ns = time.monotonic_ns()
        start, end = int(event.EvtParam3), int(event.EvtParam3) + int(event.EvtParam4)
        with self._lock:
            snapshot = self._read()
            for byte in sorted(self.flags):
                value = int(snapshot[byte] != 0)
                if start <= byte < end and value != self.flags[byte]:
                    self.flags[byte] = value
                    edge: dict[str, object] = {"event": "coil_edge", "coil": byte, "value": value, "t_ns": t_ns,
                                               "part_id": 0}
                    if self.program is not None and self.program.has_encoder:
                        edge["encoder"] = self.program.encoder_at(t_ns)
                    self.emit(edge)
            several = len(self.blocks) > 1
            for k, (base, program) in enumerate(self.blocks):
                touches_vision = start < base + 2 * itf.VISION_WORDS and end > base
                if self.mode == "handshake" and touches_vision:
                    words = struct.unpack_from(f">{itf.VISION_WORDS}H", snapshot, base)
                    for out in program.on_vision_block(words, t_ns):
                        self.emit({**out, "block": k} if several else out)
                    self._scan(t_ns)

    def _read(self) -> bytes:
        self._lock_area()
        try:
            return bytes(self.data)
        finally:
            self._unlock_area()

    def _scan(self, t_ns: int) -> None:
        """Write each program's PLC block into the DB (caller holds ``_lock`` or is not serving yet)."""
        self._lock_area()
        try:
            for base, program in self.blocks:
                block = struct.pack(f">{itf.PLC_WORDS}H", *program.scan(t_ns))
                at = base + 2 * itf.PLC_OFFSET
                self.data[at : at + len(block)] = block
        finally:
            self._unlock_area()

    def _scan_loop(self) -> None:
        while not self._stop.wait(self.scan_ms / 1000):
            with self._lock:
                self._scan(time.monotonic_ns())

    def _lock_area(self) -> None:
        if self._server is not None:
            self._server.lock_area(SrvArea.DB, self.db)

    def _unlock_area(self) -> None:
        if self._server is not None:
            self._server.unlock_area(SrvArea.DB, self.db)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def run_s7_sim(
    host: str,
    port: int,
    *,
    db: int = 100,
    byte_base: int = 0,
    reject_byte: int | None = None,
    fault_byte: int | None = None,
    mode: Mode = "pulse",
    program: ProgramConfig | None = None,
    out: TextIO = sys.stdout,
    blocks: int = 1,
) -> int:
    """Run in the foreground until SIGINT or SIGTERM; returns the exit code. Raises SimPortError."""
    emit = JsonLines(out)
    sim = S7Sim(host, port, emit=emit, db=db, byte_base=byte_base, reject_byte=reject_byte,
                fault_byte=fault_byte, mode=mode, program=program, blocks=blocks)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        bound = sim.start()
        several = {"blocks": blocks} if blocks > 1 else {}
        emit({"event": "listening", "host": host, "port": bound, "protocol": "s7", "mode": mode, "db": db,
              **several, **sim.listening_extra()})
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":  # python -m linegate.plc.s7_sim [plc-sim options]: `linegate plc-sim --protocol s7`
    import importlib

    raise SystemExit(importlib.import_module("linegate.cli").main(["plc-sim", "--protocol", "s7", *sys.argv[1:]]))
