"""`linegate plc-sim`: a real Modbus TCP server printing coil edges and, in handshake mode, PLC-program events."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from linegate.demo.runner import PlcSimProcess, free_port
from linegate.plc.interface import (
    PLC_OFFSET,
    PLC_WORDS,
    FaultCode,
    PlcInputs,
    Result,
    Verdict,
    VisionState,
    decode_plc_block,
    encode_vision_block,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "plc-interface.md"
READY = VisionState(alive=1, ready=True, fault_code=FaultCode.NONE, toggle=True, waiting=0)


class SimProc:
    """`linegate plc-sim ARGS --port 0` as a child process; collects every JSON line it prints."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "linegate", "plc-sim", *args, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"plc-sim exited with {self.proc.wait(5)}: {err}")
        self.listening: dict[str, Any] = json.loads(line)
        self.port = int(self.listening["port"])
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.events.append(json.loads(line))

    def named(self, *names: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["event"] in names]

    def wait_for(self, check: Callable[[], bool], timeout_s: float = 10.0) -> None:
        end = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > end:
                raise AssertionError(f"timed out; events so far: {self.events}")
            time.sleep(0.01)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(10)
        self._reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code


def modbus_client(port: int) -> ModbusTcpClient:
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    assert client.connect()
    return client


def write_result(client: ModbusTcpClient, seq: int, part_id: int, *, base: int = 0, alive: int = 1) -> None:
    words = encode_vision_block(VisionState(alive, True, FaultCode.NONE, bool(seq % 2), 0),
                                Result(seq, part_id, Verdict.REJECT, 0, 2, 0.5))
    assert not client.write_registers(base, words, device_id=1).isError()


def read_plc(client: ModbusTcpClient, base: int = 0) -> PlcInputs:
    reply = client.read_holding_registers(base + PLC_OFFSET, count=PLC_WORDS, device_id=1)
    assert not reply.isError()
    return decode_plc_block(list(reply.registers))


def test_prints_each_edge_with_part_id_and_time(plc_sim: PlcSimProcess) -> None:
    """Writes that change a coil print one edge each, carrying the part-id registers; repeats print nothing."""
    client = ModbusTcpClient("127.0.0.1", port=plc_sim.port, timeout=1, retries=0)
    assert client.connect()
    client.write_registers(0, [0x0001, 0x0002], device_id=1)
    for value in (True, True, False, False, True):
        assert not client.write_coil(2, value, device_id=1).isError()
    client.close()
    end = time.monotonic() + 5
    while len(plc_sim.edges) < 3 and time.monotonic() < end:
        time.sleep(0.01)
    assert [(e["coil"], e["value"], e["part_id"]) for e in plc_sim.edges] == [
        (2, 1, 65538),
        (2, 0, 65538),
        (2, 1, 65538),
    ]
    stamps = [e["t_ns"] for e in plc_sim.edges]
    assert stamps == sorted(stamps)


def test_all_64_coils_are_served_and_a_stride_gives_each_coil_its_part_id_registers() -> None:
    """Coils 0..63 answer (64 is outside the map); with --part-id-stride 2 coil C's edge carries the
    part id at registers 10 + 2C (several cameras, each its own coil and part id registers)."""
    sim = PlcSimProcess(free_port(), args=["--part-id-register", "10", "--part-id-stride", "2"])
    try:
        client = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=1, retries=0)
        assert client.connect()
        client.write_registers(10, [0, 7, 0, 8, 0, 9], device_id=1)  # coils 0, 1, 2: part ids 7, 8, 9
        for coil in (0, 1, 2, 63):
            assert not client.write_coil(coil, True, device_id=1).isError(), coil
        assert client.write_coil(64, True, device_id=1).isError()
        client.close()
        end = time.monotonic() + 5
        while len(sim.edges) < 4 and time.monotonic() < end:
            time.sleep(0.01)
    finally:
        sim.stop()
    assert [(e["coil"], e["part_id"]) for e in sim.edges] == [(0, 7), (1, 8), (2, 9), (63, 0)]


def test_out_of_map_address_is_an_exception_reply(plc_sim: PlcSimProcess) -> None:
    """A coil outside the simulator's map answers a Modbus exception, like a real PLC."""
    client = ModbusTcpClient("127.0.0.1", port=plc_sim.port, timeout=1, retries=0)
    assert client.connect()
    assert client.write_coil(5000, True, device_id=1).isError()
    client.close()
    assert plc_sim.edges == []


def test_cli_announces_listening_and_stops_on_sigterm() -> None:
    """`linegate plc-sim --port N` prints a listening line, then exits 0 on SIGTERM."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "linegate", "plc-sim", "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first == {"event": "listening", "host": "127.0.0.1", "port": port, "protocol": "modbus", "mode": "pulse"}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    proc.stdout.close()


def test_port_zero_prints_the_port_actually_bound() -> None:
    """`--port 0` listens on a free port and the listening line names it (a client can connect there)."""
    sim = SimProc("--mode", "handshake")
    try:
        assert sim.listening["mode"] == "handshake" and sim.port > 0
        with socket.create_connection(("127.0.0.1", sim.port), timeout=5):
            pass
    finally:
        assert sim.stop() == 0


def test_handshake_records_once_flags_duplicate_and_acks() -> None:
    """Handshake: a new seq is one result event and acked; a re-write of an unacked seq is a duplicate."""
    sim = SimProc("--mode", "handshake", "--ignore-ack-share", "0.5")  # acks: 1st written, 2nd skipped, 3rd...
    client = modbus_client(sim.port)
    try:
        write_result(client, 1, 70_000)
        assert read_plc(client).ack_seq == 1
        write_result(client, 2, 70_001, alive=2)
        assert read_plc(client).ack_seq == 1  # the PLC took it but skipped this ack
        write_result(client, 2, 70_001, alive=3)  # linegate re-sends the same seq
        assert read_plc(client).ack_seq == 2
        write_result(client, 2, 70_001, alive=4)  # alive write repeating an acked result
        sim.wait_for(lambda: len(sim.named("result", "duplicate_result")) >= 3)
        time.sleep(0.2)
    finally:
        client.close()
        assert sim.stop() == 0
    results = sim.named("result", "duplicate_result")
    assert [(e["event"], e["seq"], e["part_id"]) for e in results] == [
        ("result", 1, 70_000), ("result", 2, 70_001), ("duplicate_result", 2, 70_001)]
    assert results[0] == {"event": "result", "seq": 1, "part_id": 70_000, "verdict": 2, "basis": 0,
                          "class_index": 2, "score": 0.5, "t_ns": results[0]["t_ns"]}
    assert [e["t_ns"] for e in results] == sorted(e["t_ns"] for e in results)
    (status,) = sim.named("vision_status")
    assert (status["ready"], status["fault_code"], status["alive"]) == (True, 0, 1)


def test_handshake_ack_delay_and_plc_block_inputs() -> None:
    """--ack-delay-ms delays ack_seq; plc_alive counts; part id, recipe and encoder are served as configured."""
    sim = SimProc("--mode", "handshake", "--register-base", "100", "--ack-delay-ms", "300", "--plc-alive-ms", "20",
                  "--plc-part-id", "70000", "--recipe", "42", "--encoder-cps", "100000")
    client = modbus_client(sim.port)
    try:
        first = read_plc(client, 100)
        assert (first.part_id, first.recipe, first.control) == (70_000, 42, 0)
        t_write = time.monotonic()
        write_result(client, 9, 5, base=100)
        early = read_plc(client, 100)
        if time.monotonic() - t_write < 0.25:  # only meaningful if this read was surely before the delay
            assert early.ack_seq == 0
        end = time.monotonic() + 10
        later = early
        while later.ack_seq != 9 and time.monotonic() < end:
            time.sleep(0.02)
            later = read_plc(client, 100)
        assert later.ack_seq == 9
        assert later.alive != first.alive
        assert later.encoder != first.encoder
        assert read_plc(client, 0).ack_seq == 0  # nothing at the default base: the block moved
    finally:
        client.close()
        assert sim.stop() == 0
    assert [e["seq"] for e in sim.named("result")] == [9]


def test_handshake_keeps_coil_edges() -> None:
    """Coil edges are still printed in handshake mode."""
    sim = SimProc("--mode", "handshake")
    client = modbus_client(sim.port)
    try:
        for value in (True, False):
            assert not client.write_coil(1, value, device_id=1).isError()
        sim.wait_for(lambda: len(sim.named("coil_edge")) >= 2)
    finally:
        client.close()
        sim.stop()
    assert [(e["coil"], e["value"]) for e in sim.named("coil_edge")] == [(1, 1), (1, 0)]


def run_cli(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "linegate", "plc-sim", *args],
                          capture_output=True, text=True, timeout=60)


def assert_one_line_usage_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("protocol", ["modbus", "s7"])
def test_port_in_use_is_one_line_and_exit_2(protocol: str) -> None:
    """A port already taken: one clear line on stderr, exit status 2, no traceback, no listening line."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = run_cli("--protocol", protocol, "--port", str(port))
    assert_one_line_usage_error(done, f"port {port}", "already in use")


@pytest.mark.parametrize("protocol", ["modbus", "s7"])
def test_port_out_of_range_is_one_line_and_exit_2(protocol: str) -> None:
    """A port number outside 0..65535: one line, exit 2."""
    assert_one_line_usage_error(run_cli("--protocol", protocol, "--port", "70000"), "70000", "out of range")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
@pytest.mark.parametrize("protocol", ["modbus", "s7"])
def test_port_without_permission_is_one_line_and_exit_2(protocol: str) -> None:
    """A port below 1024 without CAP_NET_BIND_SERVICE: one line naming the permission, exit 2."""
    drop = ("setpriv", "--bounding-set", "-net_bind_service", "--inh-caps", "-net_bind_service")
    done = run_cli("--protocol", protocol, "--port", "102", prefix=drop)
    assert_one_line_usage_error(done, "no permission", "102")


def documented_number(name: str) -> int:
    """The 4xxxx number of interface field *name* from docs/plc-interface.md's table (first register)."""
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 3 and cells[1] == f"`{name}`":
            return int(cells[3].split("-")[0])
    raise AssertionError(f"{name} not in {DOC}")


def mbpoll(port: int, number: int, count: int, *kind: str) -> list[int]:
    """Read with Debian's mbpoll: 1-based reference = the 4xxxx number - 40000 (*kind*: default -t 4)."""
    out = subprocess.run(
        ["mbpoll", "-m", "tcp", "-a", "1", *(kind or ("-t", "4")), "-r", str(number - 40000), "-c", str(count),
         "-1", "-o", "2", "-p", str(port), "127.0.0.1"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    return [int(v) for v in re.findall(r"^\[\d+\]:\s+(-?\d+)", out, re.MULTILINE)]


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll not installed (apt-get install mbpoll)")
def test_mbpoll_reads_the_documented_plc_block() -> None:
    """mbpoll, an independent client, reads at the documented addresses exactly what the PLC program wrote."""
    sim = SimProc("--mode", "handshake", "--plc-alive-ms", "0", "--plc-part-id", "70000", "--recipe", "42")
    client = modbus_client(sim.port)
    try:
        write_result(client, 5, 1)
        expected = read_plc(client)
        assert (expected.ack_seq, expected.part_id, expected.recipe) == (5, 70_000, 42)
        words = mbpoll(sim.port, documented_number("plc_alive"), PLC_WORDS)
        assert decode_plc_block(words) == expected
        assert mbpoll(sim.port, documented_number("ack_seq"), 1) == [5]
        assert mbpoll(sim.port, documented_number("plc_recipe"), 1) == [42]
        assert mbpoll(sim.port, documented_number("recipe"), 1) == [0xFFFF]  # vision block: none active
        # 32-bit, high word first = mbpoll's big-endian word order (-B)
        assert mbpoll(sim.port, documented_number("plc_part_id"), 1, "-t", "4:int", "-B") == [70_000]
    finally:
        client.close()
        sim.stop()


# --- encoder ---------------------------------------------------------------------------------------------

U32_WRAP = 2**32


def true_encoder(listening: dict[str, Any], t_ns: int) -> float:
    """The encoder position the listening line promises at monotonic *t_ns* (not reduced mod 2**32)."""
    return float(listening["encoder_start"] + listening["encoder_cps"] * (t_ns - listening["encoder_t0_ns"]) / 1e9)


def wrapped_distance(count: int, position: float) -> float:
    """Signed distance of a raw u32 *count* from *position*, modulo 2**32."""
    return (count - position + U32_WRAP / 2) % U32_WRAP - U32_WRAP / 2


def read_encoder(client: ModbusTcpClient, first_word: int) -> tuple[int, int, int]:
    """(monotonic ns before, raw u32 read from words first_word, +1, monotonic ns after)."""
    before = time.monotonic_ns()
    reply = client.read_holding_registers(first_word, count=2, device_id=1)
    after = time.monotonic_ns()
    assert not reply.isError()
    high, low = reply.registers
    return before, (high << 16) | low, after


def test_pulse_mode_serves_the_encoder_at_the_moment_of_each_read() -> None:
    """Pulse mode with --encoder-cps: words base+20..21 advance by about cps x dt between two reads."""
    cps = 100_000
    sim = SimProc("--encoder-cps", str(cps), "--register-base", "100", "--plc-alive-ms", "10")
    client = modbus_client(sim.port)
    try:
        assert sim.listening["mode"] == "pulse"
        assert (sim.listening["encoder_cps"], sim.listening["encoder_start"]) == (cps, 0)
        a0, first, a1 = read_encoder(client, 120)
        time.sleep(0.05)
        b0, second, b1 = read_encoder(client, 120)
        for before, count, after in ((a0, first, a1), (b0, second, b1)):  # within the read's own interval
            assert true_encoder(sim.listening, before) - 1 <= count <= true_encoder(sim.listening, after) + 1
        advance = second - first
        assert cps * (b0 - a1) / 1e9 - 2 <= advance <= cps * (b1 - a0) / 1e9 + 2
        assert 0.04 * cps <= advance <= 2 * cps  # ~50 ms of travel (loosely: a slow machine may sleep longer)
        block = read_plc(client, 100)
        write_result(client, 1, 70_000, base=100)  # pulse mode: stored, no handshake logic
        time.sleep(0.05)
        later = read_plc(client, 100)
        assert later.ack_seq == 0 and later.alive != block.alive
    finally:
        client.close()
        assert sim.stop() == 0
    assert sim.named("result", "duplicate_result", "vision_status") == []


@pytest.mark.parametrize("mode", ["pulse", "handshake"])
def test_coil_edge_carries_the_encoder_count_of_its_write(mode: str) -> None:
    """Each coil_edge's encoder is the listening line's formula at the edge's t_ns (here across the u32 wrap)."""
    start = U32_WRAP - 1000  # wraps after 10 ms at 100000 counts/s
    sim = SimProc("--mode", mode, "--encoder-cps", "100000", "--encoder-start", str(start), "--register-base", "100")
    client = modbus_client(sim.port)
    try:
        assert sim.listening["encoder_start"] == start
        time.sleep(0.05)
        for value in (True, False):
            assert not client.write_coil(3, value, device_id=1).isError()
        sim.wait_for(lambda: len(sim.named("coil_edge")) >= 2)
    finally:
        client.close()
        assert sim.stop() == 0
    edges = sim.named("coil_edge")
    assert [(e["coil"], e["value"]) for e in edges] == [(3, 1), (3, 0)]
    for edge in edges:
        assert 0 <= edge["encoder"] < U32_WRAP
        assert abs(wrapped_distance(edge["encoder"], true_encoder(sim.listening, edge["t_ns"]))) <= 3
    assert edges[0]["encoder"] < start  # wrapped past 2**32


@pytest.mark.parametrize("mode", ["pulse", "handshake"])
def test_without_encoder_cps_nothing_changes(mode: str) -> None:
    """Without --encoder-cps: no encoder fields in the listening line or coil edges."""
    sim = SimProc("--mode", mode)
    client = modbus_client(sim.port)
    try:
        assert not client.write_coil(0, True, device_id=1).isError()
        sim.wait_for(lambda: bool(sim.named("coil_edge")))
    finally:
        client.close()
        assert sim.stop() == 0
    assert sim.listening == {"event": "listening", "host": "127.0.0.1", "port": sim.port, "protocol": "modbus",
                             "mode": mode}
    (edge,) = sim.named("coil_edge")
    assert set(edge) == {"event", "coil", "value", "t_ns", "part_id"}


def test_pulse_encoder_refuses_part_id_registers_inside_the_plc_block() -> None:
    """Pulse mode with an encoder: part-id registers overlapping the served PLC block are one line, exit 2."""
    done = run_cli("--encoder-cps", "1000", "--part-id-register", "19", "--port", "0")
    assert_one_line_usage_error(done, "part_id_register 19", "PLC block")


def test_s7_pulse_mode_serves_the_encoder_and_stamps_edges() -> None:
    """S7 pulse mode with --encoder-cps: the PLC block carries the encoder (as of the last scan); edges carry it."""
    import snap7

    sim = SimProc("--protocol", "s7", "--encoder-cps", "100000", "--reject-byte", "60")
    client = snap7.Client()
    client.connect("127.0.0.1", 0, 1, tcp_port=sim.port)
    assert client.connection is not None and client.connection.socket is not None
    client.connection.socket.settimeout(5)
    try:
        before = time.monotonic_ns()
        raw = int.from_bytes(client.db_read(100, 2 * (PLC_OFFSET + 4), 4), "big")
        after = time.monotonic_ns()
        stale = 100_000 * 0.1  # a scan is due every 5 ms; allow a loaded machine's scheduling
        assert true_encoder(sim.listening, before) - stale <= raw <= true_encoder(sim.listening, after) + 1
        client.db_write(100, 60, bytearray([1]))
        sim.wait_for(lambda: bool(sim.named("coil_edge")))
    finally:
        client.disconnect()
        assert sim.stop() == 0
    (edge,) = sim.named("coil_edge")
    assert abs(edge["encoder"] - true_encoder(sim.listening, edge["t_ns"])) <= 3


def test_several_blocks_each_run_their_own_program() -> None:
    """--blocks 2: blocks 32 registers apart, each taking, acking and numbering its own results; a
    result written to one block is never one of the other's, and their events say which block."""
    sim = SimProc("--mode", "handshake", "--register-base", "100", "--blocks", "2", "--plc-part-id", "500")
    client = modbus_client(sim.port)
    try:
        write_result(client, 1, 11, base=100)
        write_result(client, 1, 21, base=132)  # the same seq in the other block is that block's own result
        write_result(client, 2, 22, base=132)
        assert (read_plc(client, 100).ack_seq, read_plc(client, 132).ack_seq) == (1, 2)
        assert read_plc(client, 132).part_id == 500  # each block serves its PLC inputs
        sim.wait_for(lambda: len(sim.named("result")) >= 3)
        time.sleep(0.2)
    finally:
        client.close()
        assert sim.stop() == 0
    assert sim.listening["blocks"] == 2
    taken = [(e["block"], e["seq"], e["part_id"]) for e in sim.named("result")]
    assert taken == [(0, 1, 11), (1, 1, 21), (1, 2, 22)]
    assert not sim.named("duplicate_result")


def test_blocks_that_do_not_fit_the_register_space_are_refused() -> None:
    """The last block must fit below register 65536: one line and exit 2, naming register_base."""
    done = subprocess.run([sys.executable, "-m", "linegate", "plc-sim", "--mode", "handshake", "--port", "0",
                           "--register-base", "65500", "--blocks", "2"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "register_base 65500 must be within 0..65479" in done.stderr
