"""The recording, fault-injecting libmodbus server (tests/plc/recording_server.c) against independent clients."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from tests.plc import recording_peer
from tests.plc.recording_peer import Record, RecordingServer

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(recording_peer.available() is not None, reason=str(recording_peer.available())),
]

DEV = 1
SLOW = 3.0  # client timeout for replies that must come (a loaded machine can be slow)
DELAY_MS = 1500  # injected delay where a test tells delayed from undelayed replies
UNDELAYED_S = DELAY_MS / 1000 / 2  # an undelayed reply is far below the delay even on a loaded machine

StartServer = Callable[..., RecordingServer]
Connect = Callable[..., ModbusTcpClient]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recording")
    recording_peer.build(path)
    return path


@pytest.fixture
def start(build_dir: Path) -> Iterator[StartServer]:
    """Starts RecordingServers with the given faults; stops them all at the end of the test."""
    servers: list[RecordingServer] = []

    def _start(**faults: Any) -> RecordingServer:
        server = RecordingServer(build_dir, **faults)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Opens pymodbus sync clients (retries=0); closes them all at the end of the test."""
    clients: list[ModbusTcpClient] = []

    def _connect(port: int, timeout: float = SLOW) -> ModbusTcpClient:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0)
        assert client.connect()  # type: ignore[no-untyped-call]
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        client.close()  # type: ignore[no-untyped-call]


def elapsed(call: Callable[[], object]) -> float:
    t0 = time.monotonic()
    call()
    return time.monotonic() - t0


def coil(client: ModbusTcpClient, addr: int) -> bool:
    rr = client.read_coils(addr, count=1, device_id=DEV)
    assert not rr.isError(), rr
    return bool(rr.bits[0])


def register(client: ModbusTcpClient, addr: int) -> int:
    rr = client.read_holding_registers(addr, count=1, device_id=DEV)
    assert not rr.isError(), rr
    return int(rr.registers[0])


def test_writes_are_recorded_once_with_values_and_a_monotonic_time_within_the_call(
    start: StartServer, connect: Connect
) -> None:
    """Each applied write is one W record with its values, stamped between the client's before and after."""
    server = start()
    client = connect(server.port)
    calls: list[tuple[int, int, Callable[[], Any]]] = [
        (5, 3, lambda: client.write_coil(3, True, device_id=DEV)),
        (6, 10, lambda: client.write_register(10, 0x1234, device_id=DEV)),
        (15, 0, lambda: client.write_coils(0, [True, False, True], device_id=DEV)),
        (16, 20, lambda: client.write_registers(20, [1, 2, 65535], device_id=DEV)),
    ]
    spans = []
    for _, _, call in calls:
        before = time.monotonic_ns()
        rr = call()
        after = time.monotonic_ns()
        assert not rr.isError(), rr
        spans.append((before, after))
    writes = server.writes()
    assert [(w.fc, w.addr, w.count, w.values) for w in writes] == [
        (5, 3, 1, (1,)),
        (6, 10, 1, (0x1234,)),
        (15, 0, 3, (1, 0, 1)),
        (16, 20, 3, (1, 2, 65535)),
    ]
    for w, (before, after) in zip(writes, spans, strict=True):
        assert before <= w.t_ns <= after


def test_reads_and_connections_are_recorded(start: StartServer, connect: Connect) -> None:
    """Reads are R records (not writes); a connection is a C record with the client's port, then a D record."""
    server = start()
    client = connect(server.port)
    assert client.read_input_registers(0, count=3, device_id=DEV).registers == [0x100, 0x101, 0x102]
    assert client.read_discrete_inputs(0, count=4, device_id=DEV).bits[:4] == [False, True, False, True]
    assert register(client, 5) == 0
    local_port = client.socket.getsockname()[1]  # type: ignore[union-attr]
    client.close()  # type: ignore[no-untyped-call]
    recs = server.wait_for(lambda rs: any(r.kind == "D" for r in rs))
    assert [(r.fc, r.addr, r.count) for r in server.reads()] == [(4, 0, 3), (2, 0, 4), (3, 5, 1)]
    assert server.writes() == []
    assert [(r.kind, r.conn) for r in recs if r.kind in ("C", "D")] == [("C", 1), ("D", 1)]
    assert recs[0].peer_port == local_port


def test_coil_edges_and_register_writes_follow_the_applied_writes(start: StartServer, connect: Connect) -> None:
    """coil_edges() gives the changes of one coil from FC5 and FC15 writes; register_writes() every write."""
    server = start()
    client = connect(server.port)
    client.write_coil(4, True, device_id=DEV)
    client.write_coil(4, True, device_id=DEV)  # no change: no edge
    client.write_coils(2, [False, True, False], device_id=DEV)  # coil 4 off
    client.write_coil(5, True, device_id=DEV)  # another coil
    client.write_coils(4, [True], device_id=DEV)
    client.write_register(7, 11, device_id=DEV)
    client.write_registers(6, [1, 12, 2], device_id=DEV)
    writes = server.writes()
    assert server.coil_edges(4) == [(writes[0].t_ns, True), (writes[2].t_ns, False), (writes[4].t_ns, True)]
    assert server.coil_edges(5) == [(writes[3].t_ns, True)]
    assert server.coil_edges(9) == []
    assert server.register_writes(7) == [(writes[5].t_ns, 11), (writes[6].t_ns, 12)]
    assert coil(client, 4) and register(client, 7) == 12


def test_delay_applies_the_write_before_replying(start: StartServer, connect: Connect) -> None:
    """With --delay-ms the write is applied at once: a client that gave up waiting, or another, reads it set."""
    delay_ms = 5000
    server = start(delay_ms=delay_ms, delay_fc=5)
    client = connect(server.port, timeout=0.1)
    before = time.monotonic_ns()
    with pytest.raises(ModbusIOException):
        client.write_coil(9, True, device_id=DEV)
    [w] = [r for r in server.wait_for(lambda rs: any(r.kind == "W" for r in rs)) if r.kind == "W"]
    assert (w.fc, w.addr, w.values) == (5, 9, (1,)) and w.t_ns >= before
    other = connect(server.port)
    assert coil(other, 9)
    assert time.monotonic_ns() < w.t_ns + delay_ms * 1_000_000  # read while the write's reply is still held back


def test_delay_fc_delays_only_that_function_code(start: StartServer, connect: Connect) -> None:
    """--delay-fc 6 holds back write-single-register replies; other function codes answer at once."""
    server = start(delay_ms=DELAY_MS, delay_fc=6)
    client = connect(server.port)
    assert elapsed(lambda: client.write_register(1, 5, device_id=DEV)) >= DELAY_MS / 1000 * 0.95
    assert elapsed(lambda: client.write_registers(1, [6], device_id=DEV)) < UNDELAYED_S
    assert elapsed(lambda: client.write_coil(1, True, device_id=DEV)) < UNDELAYED_S
    assert register(client, 1) == 6


def test_delay_share_delays_about_that_share_of_replies(start: StartServer, connect: Connect) -> None:
    """--delay-share 0.5 delays roughly half of the replies (loose bounds), the rest answer at once."""
    delay_ms, n = 150, 40
    server = start(delay_ms=delay_ms, delay_share=0.5, seed=7)
    client = connect(server.port)
    times = []
    for i in range(n):
        t0 = time.monotonic()
        assert not client.write_register(0, i, device_id=DEV).isError()
        times.append(time.monotonic() - t0)
    delayed = sum(t >= delay_ms / 1000 * 0.95 for t in times)
    assert 0.2 * n <= delayed <= 0.8 * n, times
    assert [v for _, v in server.register_writes(0)] == list(range(n))


def test_delay_on_only_delays_only_coil_on_writes(start: StartServer, connect: Connect) -> None:
    """--delay-on-only delays write-single-coil ON only: OFF, FC15 ON and reads answer at once."""
    server = start(delay_ms=DELAY_MS, delay_on_only=True)
    client = connect(server.port)
    assert elapsed(lambda: client.write_coil(2, True, device_id=DEV)) >= DELAY_MS / 1000 * 0.95
    assert elapsed(lambda: client.write_coil(2, False, device_id=DEV)) < UNDELAYED_S
    assert elapsed(lambda: client.write_coils(2, [True], device_id=DEV)) < UNDELAYED_S
    assert elapsed(lambda: client.read_coils(2, count=1, device_id=DEV)) < UNDELAYED_S
    assert [v for _, v in server.coil_edges(2)] == [True, False, True]


def test_exception_reply_leaves_the_value_unchanged(start: StartServer, connect: Connect) -> None:
    """--exception-fc 5 answers every write-single-coil with the exception code and does not apply it."""
    server = start(exception_fc=5, exception_code=4)
    client = connect(server.port)
    rr = client.write_coil(7, True, device_id=DEV)
    assert rr.isError() and rr.exception_code == 4
    assert not coil(client, 7)
    assert not client.write_coils(7, [True], device_id=DEV).isError()  # FC15 is not affected
    assert coil(client, 7)
    assert client.write_coil(300, True, device_id=DEV).exception_code == 4  # even outside the map
    assert client.write_register(300, 1, device_id=DEV).exception_code == 2  # libmodbus: illegal address
    assert [(e.fc, e.addr, e.code) for e in server.exceptions()] == [(5, 7, 4), (5, 300, 4), (6, 300, 2)]
    assert [(w.fc, w.addr) for w in server.writes()] == [(15, 7)]


def test_stall_swallows_requests_until_resumed(start: StartServer, connect: Connect) -> None:
    """--stall-after 2 answers two requests, then reads but neither applies nor answers any until SIGUSR1."""
    server = start(stall_after=2)
    client = connect(server.port, timeout=0.3)
    assert not client.write_coil(0, True, device_id=DEV).isError()
    assert not client.write_register(0, 7, device_id=DEV).isError()
    with pytest.raises(ModbusIOException):
        client.write_register(0, 9, device_id=DEV)
    other = connect(server.port, timeout=0.3)  # a new connection is accepted, and not answered either
    with pytest.raises(ModbusIOException):
        other.read_holding_registers(0, count=1, device_id=DEV)
    server.wait_for(lambda rs: sum(r.kind == "S" for r in rs) == 2)
    assert [(s.fc, s.addr) for s in server.swallowed()] == [(6, 0), (3, 0)]
    assert [(w.fc, w.addr) for w in server.writes()] == [(5, 0), (6, 0)]
    server.stall_resume()
    after = connect(server.port)
    assert register(after, 0) == 7
    assert not after.write_register(0, 8, device_id=DEV).isError()
    assert register(after, 0) == 8
    assert not any(r.kind == "D" for r in server.records())  # stalled connections were kept open


def test_drop_after_closes_the_connection_after_applying(start: StartServer, connect: Connect) -> None:
    """--drop-after 2 applies the second request, then closes its connection instead of replying (once)."""
    server = start(drop_after=2)
    client = connect(server.port)
    assert not client.write_coil(1, True, device_id=DEV).isError()
    with pytest.raises(ConnectionException):
        client.write_coil(2, True, device_id=DEV)
    recs = server.records()
    assert [(r.kind, r.fc, r.addr) for r in recs if r.kind in ("W", "D")] == [("W", 5, 1), ("W", 5, 2), ("D", 0, 0)]
    other = connect(server.port)
    assert coil(other, 2)  # applied although never answered
    assert not other.write_coil(3, True, device_id=DEV).isError()  # only the second request is dropped


def test_two_clients_at_once_a_delay_holds_back_only_its_own_connection(start: StartServer, connect: Connect) -> None:
    """Two clients are served at once; while A's reply is delayed B is answered and already sees A's write."""
    server = start(delay_ms=DELAY_MS, delay_fc=5)
    a, b = connect(server.port), connect(server.port)
    a_done: list[int] = []

    def write_a() -> None:
        assert not a.write_coil(11, True, device_id=DEV).isError()
        a_done.append(time.monotonic_ns())

    thread = threading.Thread(target=write_a)
    thread.start()
    try:
        server.wait_for(lambda rs: any(r.kind == "W" and r.addr == 11 for r in rs))
        assert coil(b, 11)
        assert not b.write_register(11, 99, device_id=DEV).isError()
        b_done = time.monotonic_ns()
    finally:
        thread.join(10)
    assert a_done and b_done < a_done[0]
    recs = server.records()
    assert [(r.kind, r.conn) for r in recs if r.kind == "C"] == [("C", 1), ("C", 2)]
    assert not any(r.kind == "D" for r in recs)


def test_many_clients_over_time_and_sigterm_closes_them(start: StartServer, connect: Connect) -> None:
    """Clients come and go one after another; SIGTERM closes the ones still open and exits with status 0."""
    server = start()
    for i in range(15):
        client = ModbusTcpClient("127.0.0.1", port=server.port, timeout=SLOW, retries=0)
        assert client.connect()  # type: ignore[no-untyped-call]
        assert not client.write_register(i, i + 100, device_id=DEV).isError()
        client.close()  # type: ignore[no-untyped-call]
    still_open = connect(server.port)
    assert register(still_open, 14) == 114
    assert server.stop() == 0
    recs = server.records()
    assert sum(r.kind == "C" for r in recs) == 16
    assert sum(r.kind == "D" for r in recs) == 16
    assert [v for _, v in server.register_writes(3)] == [103]


def test_pause_hangs_the_server_and_resume_applies_what_waited(start: StartServer, connect: Connect) -> None:
    """pause() (SIGSTOP) times clients out; after resume() the write that waited in the socket is applied late."""
    server = start()
    client = connect(server.port, timeout=0.2)
    server.pause()
    try:
        with pytest.raises(ModbusIOException):
            client.write_coil(6, True, device_id=DEV)
        gave_up = time.monotonic_ns()
    finally:
        server.resume()
    recs = server.wait_for(lambda rs: any(r.kind == "W" for r in rs))
    [w] = [r for r in recs if r.kind == "W"]
    assert (w.addr, w.values) == (6, (1,)) and w.t_ns > gave_up
    assert coil(connect(server.port), 6)


def test_bad_flags_are_refused(build_dir: Path) -> None:
    """An unknown flag or a value out of range makes the server exit with status 2 and a usage line."""
    binary = recording_peer.build(build_dir)
    for args in (["--delay-share", "1.5"], ["--bogus"], ["--exception-code", "0"], ["extra"]):
        done = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=10)
        assert done.returncode == 2 and "usage" in done.stderr, args


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed (apt-get install mbpoll)")
def test_mbpoll_an_independent_client_writes_and_reads(start: StartServer) -> None:
    """Debian's mbpoll (its own Modbus TCP client) writes a coil and registers and reads input registers."""
    server = start()
    base = ["mbpoll", "-m", "tcp", "-p", str(server.port), "-a", "1", "-0", "-o", "3"]

    def mbpoll(*args: str) -> str:
        done = subprocess.run([*base, *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    mbpoll("-t", "0", "-r", "5", "127.0.0.1", "1")
    mbpoll("-t", "4", "-r", "30", "127.0.0.1", "11", "22", "33")
    out = mbpoll("-t", "3", "-r", "0", "-c", "3", "-1", "127.0.0.1")
    assert [int(v) for v in re.findall(r"^\[\d+\]:\s+(\d+)", out, re.M)] == [0x100, 0x101, 0x102]
    server.wait_for(lambda rs: sum(r.kind == "D" for r in rs) == 3)
    writes: list[Record] = server.writes()
    assert [(w.fc, w.addr, w.values) for w in writes] == [(5, 5, (1,)), (16, 30, (11, 22, 33))]
    assert server.coil_edges(5) == [(writes[0].t_ns, True)]
    assert [v for _, v in server.register_writes(31)] == [22]
    assert [(r.fc, r.addr, r.count) for r in server.reads()] == [(4, 0, 3)]
