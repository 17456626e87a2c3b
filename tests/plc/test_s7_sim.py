"""`linegate plc-sim --protocol s7`: python-snap7's server with one DB, driven by a plain snap7 client."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
import snap7

from linegate.plc.interface import (
    PLC_OFFSET,
    PLC_WORDS,
    VISION_WORDS,
    FaultCode,
    PlcInputs,
    Result,
    Verdict,
    VisionState,
    decode_plc_block,
    encode_vision_block,
)
from linegate.plc.s7_sim import S7Sim
from tests.plc.test_sim import SimProc

DB = 100


def s7_client(port: int) -> snap7.Client:
    client = snap7.Client()
    client.connect("127.0.0.1", 0, 1, tcp_port=port)
    assert client.connection is not None and client.connection.socket is not None
    client.connection.socket.settimeout(5)  # snap7 ignores RecvTimeout: bound calls by the socket timeout
    return client


def write_result(client: snap7.Client, seq: int, part_id: int, *, base: int = 0, alive: int = 1) -> None:
    words = encode_vision_block(VisionState(alive, True, FaultCode.NONE, bool(seq % 2), 0),
                                Result(seq, part_id, Verdict.REJECT, 0, 2, 0.25))
    client.db_write(DB, base, bytearray(struct.pack(f">{VISION_WORDS}H", *words)))


def read_plc(client: snap7.Client, base: int = 0) -> PlcInputs:
    data = client.db_read(DB, base + 2 * PLC_OFFSET, 2 * PLC_WORDS)
    return decode_plc_block(list(struct.unpack(f">{PLC_WORDS}H", data)))


@pytest.fixture
def handshake_sim() -> Iterator[SimProc]:
    sim = SimProc("--protocol", "s7", "--mode", "handshake", "--ignore-ack-share", "0.5", "--plc-part-id", "70000",
                  "--recipe", "7", "--plc-alive-ms", "20")
    yield sim
    sim.stop()


def test_listening_line_names_protocol_db_and_bound_port(handshake_sim: SimProc) -> None:
    """The first line is the listening event with the port actually bound for --port 0."""
    assert handshake_sim.listening == {"event": "listening", "host": "127.0.0.1", "port": handshake_sim.port,
                                       "protocol": "s7", "mode": "handshake", "db": DB}
    assert handshake_sim.port > 0


def test_handshake_records_once_flags_duplicate_and_acks(handshake_sim: SimProc) -> None:
    """Over S7: a new seq is one result event and acked; a re-write of an unacked seq is a duplicate."""
    sim = handshake_sim
    client = s7_client(sim.port)
    try:
        write_result(client, 1, 123_456)
        assert read_plc(client).ack_seq == 1  # acked in the write's own callback, before its reply
        write_result(client, 2, 123_457, alive=2)
        assert read_plc(client).ack_seq == 1  # this ack skipped (share 0.5)
        write_result(client, 2, 123_457, alive=3)
        assert read_plc(client).ack_seq == 2
        write_result(client, 2, 123_457, alive=4)
        sim.wait_for(lambda: len(sim.named("result", "duplicate_result")) >= 3)
        time.sleep(0.2)
    finally:
        client.disconnect()
    results = sim.named("result", "duplicate_result")
    assert [(e["event"], e["seq"], e["part_id"], e["verdict"], e["score"]) for e in results] == [
        ("result", 1, 123_456, 2, 0.25), ("result", 2, 123_457, 2, 0.25), ("duplicate_result", 2, 123_457, 2, 0.25)]
    assert [e["t_ns"] for e in results] == sorted(e["t_ns"] for e in results)
    assert len(sim.named("vision_status")) == 1


def test_plc_block_is_scanned_without_writes(handshake_sim: SimProc) -> None:
    """The scan thread keeps plc_alive counting and serves part id and recipe, with no client write."""
    client = s7_client(handshake_sim.port)
    try:
        first = read_plc(client)
        assert (first.part_id, first.recipe, first.ack_seq) == (70_000, 7, 0)
        end = time.monotonic() + 10
        while read_plc(client).alive == first.alive and time.monotonic() < end:
            time.sleep(0.02)
        assert read_plc(client).alive != first.alive
        raw = client.db_read(DB, 2 * PLC_OFFSET + 4, 4)  # plc_part_id as DBD36: big-endian, high word first
        assert int.from_bytes(raw, "big") == 70_000
    finally:
        client.disconnect()


def test_pulse_byte_edges() -> None:
    """Pulse mode: each 0<->1 change of the reject or fault byte is one coil_edge; repeats and others are not."""
    sim = SimProc("--protocol", "s7", "--reject-byte", "10", "--fault-byte", "11")
    client = s7_client(sim.port)
    try:
        for value in (1, 1, 0, 0, 1):
            client.db_write(DB, 10, bytearray([value]))
        client.db_write(DB, 12, bytearray([1]))  # not a flag byte
        client.db_write(DB, 10, bytearray([1, 1]))  # one write covering both: reject unchanged, fault on
        sim.wait_for(lambda: len(sim.named("coil_edge")) >= 4)
        time.sleep(0.2)
    finally:
        client.disconnect()
        assert sim.stop() == 0
    edges = sim.named("coil_edge")
    assert [(e["coil"], e["value"], e["part_id"]) for e in edges] == [(10, 1, 0), (10, 0, 0), (10, 1, 0), (11, 1, 0)]
    assert [e["t_ns"] for e in edges] == sorted(e["t_ns"] for e in edges)


def test_pulse_defaults_watch_bytes_0_and_1() -> None:
    """Without --reject-byte/--fault-byte, pulse mode watches DB bytes 0 and 1."""
    sim = SimProc("--protocol", "s7", "--db", "7")
    client = s7_client(sim.port)
    try:
        client.db_write(7, 0, bytearray([1, 1]))
        sim.wait_for(lambda: len(sim.named("coil_edge")) >= 2)
    finally:
        client.disconnect()
        sim.stop()
    assert sorted((e["coil"], e["value"]) for e in sim.named("coil_edge")) == [(0, 1), (1, 1)]


def test_handshake_at_a_byte_base() -> None:
    """--byte-base moves the interface in the DB; a flag byte given outside it is still watched."""
    sim = SimProc("--protocol", "s7", "--mode", "handshake", "--byte-base", "100", "--reject-byte", "2")
    client = s7_client(sim.port)
    try:
        write_result(client, 3, 9, base=100)
        assert read_plc(client, 100).ack_seq == 3
        client.db_write(DB, 2, bytearray([1]))
        sim.wait_for(lambda: bool(sim.named("coil_edge")) and bool(sim.named("result")))
    finally:
        client.disconnect()
        sim.stop()
    assert [e["seq"] for e in sim.named("result")] == [3]
    assert [(e["coil"], e["value"]) for e in sim.named("coil_edge")] == [(2, 1)]


@pytest.mark.parametrize(
    "kwargs",
    [{"reject_byte": 3, "fault_byte": 3}, {"db": 0}, {"mode": "handshake", "byte_base": 65_500},
     {"reject_byte": 65_535}],
)
def test_inconsistent_layout_is_refused(kwargs: dict[str, Any]) -> None:
    """Equal flag bytes, or a DB, base or flag byte out of range raise ValueError."""
    with pytest.raises(ValueError):
        S7Sim("127.0.0.1", 0, emit=lambda _e: None, **kwargs)


@pytest.mark.parametrize(
    "kwargs, watched",
    [({}, {0: 0, 1: 0}), ({"reject_byte": 1}, {1: 0}), ({"fault_byte": 0}, {0: 0}),
     ({"mode": "handshake"}, {}), ({"mode": "handshake", "reject_byte": 40, "fault_byte": 48}, {48: 0})],
)
def test_which_flag_bytes_are_watched(kwargs: dict[str, Any], watched: dict[int, int]) -> None:
    """Pulse mode defaults to bytes 0/1 only if neither is given; handshake skips bytes inside the block."""
    assert S7Sim("127.0.0.1", 0, emit=lambda _e: None, **kwargs).flags == watched


def test_in_process_sim_stamps_edges_between_write_and_reply() -> None:
    """The events callback sees a write after it is applied and before the client's call returns."""
    events: list[dict[str, Any]] = []
    sim = S7Sim("127.0.0.1", 0, emit=lambda e: events.append(dict(e)), reject_byte=5)
    port = sim.start()
    client = s7_client(port)
    try:
        before = time.monotonic_ns()
        client.db_write(DB, 5, bytearray([1]))
        after = time.monotonic_ns()
    finally:
        client.disconnect()
        sim.stop()
    (edge,) = events
    assert (edge["coil"], edge["value"]) == (5, 1)
    assert before <= edge["t_ns"] <= after


def test_several_blocks_each_run_their_own_program() -> None:
    """--blocks 2 over S7: blocks 64 bytes apart in the DB, each with its own program; events say which."""
    sim = SimProc("--protocol", "s7", "--mode", "handshake", "--byte-base", "64", "--blocks", "2")
    client = s7_client(sim.port)
    try:
        write_result(client, 1, 11, base=64)
        write_result(client, 1, 21, base=128)
        write_result(client, 2, 22, base=128)
        assert (read_plc(client, 64).ack_seq, read_plc(client, 128).ack_seq) == (1, 2)
        sim.wait_for(lambda: len(sim.named("result")) >= 3)
        time.sleep(0.2)
    finally:
        client.disconnect()
        sim.stop()
    assert sim.listening["blocks"] == 2
    taken = [(e["block"], e["seq"], e["part_id"]) for e in sim.named("result")]
    assert taken == [(0, 1, 11), (1, 1, 21), (1, 2, 22)]
