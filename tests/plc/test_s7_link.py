"""S7Link against real S7 peers on loopback: python-snap7 3.3.0's server and the native C snap7 server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from linegate.config.schema import S7Section
from linegate.plc.link import PlcLinkError, PlcRefusedError
from linegate.plc.s7 import S7Link
from tests.plc.s7_peers import (
    HoldingProxy,
    NativeSnap7Server,
    PySnap7Server,
    SilentPeer,
    closed_port,
    native_unavailable,
    wait_until,
)

pytestmark = pytest.mark.peer

DB = 100
BYTE_BASE = 10
REJECT_BYTE = 3
FAULT_BYTE = 5
GENEROUS_MS = 2_000.0  # functional tests: never time out on a loaded machine
SHORT_MS = 50.0  # timeout tests
BOUND_S = 1.0  # a call with SHORT_MS must have failed well within this


def section(port: int, **overrides: object) -> S7Section:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "db": DB,
        "byte_base": BYTE_BASE,
        "reject_byte": REJECT_BYTE,
        "fault_byte": FAULT_BYTE,
        "timeout_ms": GENEROUS_MS,
    }
    values.update(overrides)
    return S7Section.model_validate(values)


@pytest.fixture
def server() -> Iterator[PySnap7Server]:
    srv = PySnap7Server(db_number=DB, size=128)
    yield srv
    srv.stop()


@pytest.fixture
def link(server: PySnap7Server) -> Iterator[S7Link]:
    lk = S7Link(section(server.port))
    lk.connect()
    yield lk
    lk.close()


def timed(call: Callable[[], object]) -> tuple[BaseException | None, float]:
    """Run *call*; the exception it raised (or None) and the seconds it took."""
    start = time.monotonic_ns()
    try:
        call()
    except Exception as exc:
        return exc, (time.monotonic_ns() - start) / 1e9
    return None, (time.monotonic_ns() - start) / 1e9


# --- python-snap7 3.3.0 server (in process) ---


def test_words_round_trip_at_offsets(link: S7Link) -> None:
    """Words written at several interface offsets read back unchanged, full 16-bit range included."""
    link.write_words(0, [1, 2, 3])
    link.write_words(7, [0xFFFF, 0x8000, 0])
    link.write_words(20, [0xBEEF])
    assert link.read_words(0, 3) == [1, 2, 3]
    assert link.read_words(7, 3) == [0xFFFF, 0x8000, 0]
    assert link.read_words(20, 1) == [0xBEEF]
    assert link.read_words(2, 6) == [3, 0, 0, 0, 0, 0xFFFF]


def test_word_layout_is_big_endian_from_byte_base(server: PySnap7Server, link: S7Link) -> None:
    """Word i lands big-endian at DB byte byte_base + 2*i, and no other byte changes."""
    server.db[:] = b"\xaa" * len(server.db)
    link.write_words(2, [0x1234, 0x00FF, 0xABCD])
    expected = bytearray(b"\xaa" * len(server.db))
    expected[BYTE_BASE + 4 : BYTE_BASE + 10] = bytes.fromhex("123400ffabcd")
    assert server.db == expected


def test_words_written_by_the_plc_are_read(server: PySnap7Server, link: S7Link) -> None:
    """Bytes the PLC program put in the DB read back as big-endian words at the right offsets."""
    server.db[BYTE_BASE + 32 : BYTE_BASE + 38] = bytes.fromhex("0001fffe8001")
    assert link.read_words(16, 3) == [1, 0xFFFE, 0x8001]


def test_flags_are_whole_bytes(server: PySnap7Server, link: S7Link) -> None:
    """A flag write sets its byte to exactly 1 or 0 (no bit merge) and touches no other byte."""
    server.db[:] = b"\xf0" * len(server.db)
    link.write_flag("reject", True)
    link.write_flag("fault", False)
    expected = bytearray(b"\xf0" * len(server.db))
    expected[REJECT_BYTE], expected[FAULT_BYTE] = 1, 0
    assert server.db == expected
    assert link.read_flag("reject") is True
    assert link.read_flag("fault") is False
    link.write_flag("reject", False)
    assert server.db[REJECT_BYTE] == 0
    server.db[FAULT_BYTE] = 0x80
    assert link.read_flag("fault") is True  # any nonzero byte is on


def test_unconfigured_flag_is_refused_naming_the_key(server: PySnap7Server) -> None:
    """write_flag/read_flag on a flag without a byte raise PlcRefusedError naming plc.s7.<flag>_byte."""
    lk = S7Link(section(server.port, fault_byte=None))
    lk.connect()
    try:
        assert lk.has_flag("reject") and not lk.has_flag("fault")
        with pytest.raises(PlcRefusedError, match=r"plc\.s7\.fault_byte"):
            lk.write_flag("fault", True)
        with pytest.raises(PlcRefusedError, match=r"plc\.s7\.fault_byte"):
            lk.read_flag("fault")
        lk.write_flag("reject", True)  # the link is still usable
        assert server.db[REJECT_BYTE] == 1
    finally:
        lk.close()


def test_missing_db_is_refused_and_link_stays_usable(server: PySnap7Server) -> None:
    """A DB the PLC does not have: reads and writes raise PlcRefusedError, the connection stays open."""
    lk = S7Link(section(server.port, db=7))
    lk.connect()
    try:
        with pytest.raises(PlcRefusedError, match="DB7"):
            lk.write_words(0, [1])
        with pytest.raises(PlcRefusedError, match="DB7"):
            lk.read_words(0, 1)
        db7 = server.add_db(7, 64)  # the same connection works once the DB exists
        lk.write_words(0, [0x0102])
        assert db7[BYTE_BASE : BYTE_BASE + 2] == b"\x01\x02"
    finally:
        lk.close()


def test_address_past_db_end_is_refused(link: S7Link) -> None:
    """A read past the end of the DB raises PlcRefusedError and the link keeps working."""
    with pytest.raises(PlcRefusedError):
        link.read_words(100, 8)  # bytes 210..225 of a 128-byte DB
    assert link.read_words(0, 1) == [0]


def test_call_without_connect_is_a_link_error(server: PySnap7Server) -> None:
    """Calls before connect() (or after close()) raise PlcLinkError, not refused; close() never raises."""
    lk = S7Link(section(server.port))
    lk.close()
    for call in (lambda: lk.write_words(0, [1]), lambda: lk.read_words(0, 1), lambda: lk.write_flag("reject", True)):
        exc, _ = timed(call)
        assert isinstance(exc, PlcLinkError) and not isinstance(exc, PlcRefusedError)
        assert "not connected" in str(exc)
    lk.close()


def test_reconnect_closes_the_previous_connection(server: PySnap7Server) -> None:
    """connect() on a connected link leaves one connection at the PLC (slots are scarce)."""
    lk = S7Link(section(server.port))
    try:
        for _ in range(3):
            lk.connect()
            lk.write_words(0, [1])
        assert wait_until(lambda: server.client_count() == 1), server.client_count()
    finally:
        lk.close()
    assert wait_until(lambda: server.client_count() == 0), server.client_count()


def test_server_stop_is_link_error_and_reconnect_works(server: PySnap7Server, link: S7Link) -> None:
    """A stopped server gives PlcLinkError (the link closes itself); connect() works once it is back."""
    link.write_words(0, [5])
    server.stop()
    error: BaseException | None = None
    for _ in range(3):  # 3.3.0's server still answers one request on an open connection after stop()
        error, _ = timed(lambda: link.write_words(0, [6]))
        if error is not None:
            break
    assert isinstance(error, PlcLinkError) and not isinstance(error, PlcRefusedError), error
    exc, _ = timed(lambda: link.read_words(0, 1))
    assert isinstance(exc, PlcLinkError) and "not connected" in str(exc)  # closed, not reused
    with pytest.raises(PlcLinkError):
        link.connect()  # nothing listens
    server.start()
    link.connect()
    link.write_words(0, [7])
    assert link.read_words(0, 1) == [7]


def test_reachable_probes_tcp_only(server: PySnap7Server) -> None:
    """reachable() is True for a listening port, False for a closed one, and opens no S7 session."""
    assert S7Link(section(server.port)).reachable(1.0) is True
    assert S7Link(section(closed_port())).reachable(1.0) is False
    assert wait_until(lambda: server.client_count() == 0)


def test_connect_to_closed_port_is_link_error() -> None:
    """connect() to a port nothing listens on raises PlcLinkError."""
    exc, took = timed(S7Link(section(closed_port(), timeout_ms=SHORT_MS)).connect)
    assert isinstance(exc, PlcLinkError) and not isinstance(exc, PlcRefusedError), exc
    assert took < BOUND_S


def test_connect_to_silent_peer_is_bounded() -> None:
    """connect() to a peer that accepts TCP but never answers fails with PlcLinkError within about timeout_ms."""
    peer = SilentPeer()
    try:
        lk = S7Link(section(peer.port, timeout_ms=SHORT_MS))
        exc, took = timed(lk.connect)
        assert isinstance(exc, PlcLinkError) and not isinstance(exc, PlcRefusedError), exc
        assert took < BOUND_S, took
        assert wait_until(lambda: peer.received > 0)  # it did get the COTP connection request
        exc, _ = timed(lambda: lk.read_words(0, 1))
        assert isinstance(exc, PlcLinkError) and "not connected" in str(exc)
    finally:
        peer.stop()


def test_call_to_peer_that_stops_answering_is_bounded(server: PySnap7Server) -> None:
    """A PLC that stops answering: PlcLinkError within ~timeout_ms and the link closes (a late reply is never used)."""
    proxy = HoldingProxy(server.port)
    lk = S7Link(section(proxy.port, timeout_ms=SHORT_MS))
    try:
        for attempt in range(3):  # the set-up must succeed within SHORT_MS too: a busy machine may miss once
            try:
                lk.connect()
                lk.write_words(0, [1, 2])
                break
            except PlcLinkError:
                if attempt == 2:
                    raise
        proxy.hold()
        for call in (lambda: lk.read_words(0, 2), lambda: lk.write_words(0, [3, 4])):
            exc, took = timed(call)
            assert isinstance(exc, PlcLinkError) and not isinstance(exc, PlcRefusedError), exc
            assert took < BOUND_S, took
            exc, _ = timed(lambda: lk.read_words(0, 2))
            assert isinstance(exc, PlcLinkError) and "not connected" in str(exc)
            proxy.release()  # the held reply goes out late, to a closed connection
            lk.connect()
            proxy.hold()
        proxy.release()
        assert lk.read_words(0, 2) == [3, 4]  # the write whose reply was held did reach the PLC
    finally:
        lk.close()
        proxy.stop()


# --- native snap7 server (python-snap7 2.0.2's libsnap7, separate process) ---


@pytest.fixture
def native() -> Iterator[NativeSnap7Server]:
    reason = native_unavailable()
    if reason is not None:
        pytest.skip(reason)
    srv = NativeSnap7Server(db_number=DB, size=128)
    yield srv
    srv.stop()


def test_native_words_and_flags_land_at_their_bytes(native: NativeSnap7Server) -> None:
    """Against libsnap7: words land big-endian from byte_base, flags as whole bytes, and read back."""
    native.set(0, b"\xf0" * native.size)
    lk = S7Link(section(native.port))
    lk.connect()
    try:
        lk.write_words(1, [0x1234, 0xFFFF, 0x0001])
        lk.write_flag("reject", True)
        lk.write_flag("fault", False)
        expected = bytearray(b"\xf0" * native.size)
        expected[BYTE_BASE + 2 : BYTE_BASE + 8] = bytes.fromhex("1234ffff0001")
        expected[REJECT_BYTE], expected[FAULT_BYTE] = 1, 0
        assert native.dump() == bytes(expected)
        assert lk.read_words(1, 3) == [0x1234, 0xFFFF, 0x0001]
        assert lk.read_flag("reject") is True and lk.read_flag("fault") is False
        native.set(BYTE_BASE + 32, bytes.fromhex("8001"))  # written by the PLC program
        assert lk.read_words(16, 1) == [0x8001]
    finally:
        lk.close()


def test_native_missing_db_and_range_are_refused(native: NativeSnap7Server) -> None:
    """Against libsnap7: an absent DB and an address past the DB end raise PlcRefusedError; the link stays usable."""
    lk = S7Link(section(native.port, db=7))
    lk.connect()
    try:
        with pytest.raises(PlcRefusedError):
            lk.write_words(0, [1])
        with pytest.raises(PlcRefusedError):
            lk.read_words(0, 1)
    finally:
        lk.close()
    lk = S7Link(section(native.port))
    lk.connect()
    try:
        with pytest.raises(PlcRefusedError):
            lk.read_words(100, 8)
        with pytest.raises(PlcRefusedError):
            lk.write_words(100, [1] * 8)
        lk.write_words(0, [9])
        assert lk.read_words(0, 1) == [9]
    finally:
        lk.close()
