"""handshake mode end to end: the real PLC worker against `linegate plc-sim --mode handshake`.

The simulator runs the PLC side of docs/plc-interface.md (a pymodbus server, or python-snap7's
server for S7): it records each new result once, flags re-sent sequence numbers as duplicates and
acknowledges by writing ack_seq. Every test reconciles at the simulated PLC.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest

from linegate.config.schema import PlcSection
from linegate.counters import Count
from linegate.demo.runner import PlcSimProcess, free_port, sim_args
from linegate.plc.interface import NO_RECIPE, ErrorCode, FaultCode
from linegate.plc.links import create_link
from linegate.plc.reject_pipe import PASS, REJECT, RejectInbox, RejectOutbox, reject_channel
from linegate.plc.worker import RejectWorker
from tests.plc.test_worker import CTX, RecordingLog, channel, make_worker, step_for

pytestmark = pytest.mark.peer


def handshake_section(port: int, protocol: str = "modbus", **extra: Any) -> PlcSection:
    link: dict[str, Any] = {"host": "127.0.0.1", "port": port, "timeout_ms": 50}
    if protocol == "modbus":
        link["register_base"] = 100
    handshake = {"alive_ms": 50, "ack_timeout_ms": 60, "poll_ms": 2, "plc_alive_timeout_ms": 500}
    handshake.update(extra.pop("handshake", {}))
    return PlcSection.model_validate(
        {"protocol": protocol, "mode": "handshake", protocol: link, "handshake": handshake, **extra}
    )


def start_sim(cfg: PlcSection, *extra: str) -> PlcSimProcess:
    return PlcSimProcess(free_port(), args=[*sim_args(cfg), *extra])


def with_port(cfg: PlcSection, port: int) -> PlcSection:
    link = cfg.link
    assert link is not None
    return cfg.model_copy(update={cfg.protocol: link.model_copy(update={"port": port})})


def run_until(worker: RejectWorker, part_ids: list[int], done: Any, timeout_s: float = 10.0) -> None:
    inbox = channel(part_ids)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not done():
        worker.step(inbox, time.monotonic_ns())
    inbox.close()


def outcomes(worker: RejectWorker) -> int:
    return worker.counters.get(Count.PLC_DELIVERED) + worker.counters.get(Count.PLC_UNDELIVERED)


def wait_events(sim: PlcSimProcess, n: int, timeout_s: float = 3.0) -> None:
    end = time.monotonic() + timeout_s
    while len(sim.results) < n and time.monotonic() < end:
        time.sleep(0.01)


@pytest.mark.parametrize("protocol", ["modbus", "s7"])
def test_each_reject_is_one_acknowledged_result_at_the_plc(protocol: str) -> None:
    """Every reject becomes one result with its part id, acknowledged once; linegate logs it delivered by ack."""
    cfg = handshake_section(1, protocol, handshake={"buffer": 64})  # 40 rejects arrive in one burst
    sim = start_sim(cfg)
    try:
        cfg = with_port(cfg, sim.port)
        worker, log, counters = make_worker(cfg)
        parts = list(range(1, 41))
        run_until(worker, parts, lambda: outcomes(worker) >= len(parts))
        worker.shutdown()
        wait_events(sim, len(parts))
    finally:
        sim.stop()
    delivered = log.events("reject_delivered")
    assert [r["part_id"] for r in delivered] == parts
    assert {r["confirmed_by"] for r in delivered} == {"ack"}
    assert [e["part_id"] for e in sim.results] == parts  # once each, in order, at the PLC
    seqs = [e["seq"] for e in sim.results]
    assert len(set(seqs)) == len(seqs) and 0 not in seqs
    assert not log.events("reject_undelivered") and counters.get(Count.PLC_UNDELIVERED) == 0
    assert all(r["late_ms"] <= cfg.max_late_ms for r in delivered)


def test_slow_acknowledgement_is_rewritten_with_the_same_number_and_taken_once() -> None:
    """Acks slower than ack_timeout: the result is written again with the same seq; the PLC takes it once."""
    cfg = handshake_section(1)
    sim = start_sim(cfg, "--ack-delay-ms", "150")
    try:
        cfg = with_port(cfg, sim.port)
        worker, log, counters = make_worker(cfg)
        parts = [11, 12, 13]
        run_until(worker, parts, lambda: outcomes(worker) >= len(parts))
        worker.shutdown()
        wait_events(sim, len(parts))
    finally:
        sim.stop()
    assert [r["part_id"] for r in log.events("reject_delivered")] == parts
    assert [e["part_id"] for e in sim.results] == parts
    assert sim.duplicates, "the re-written results reached the PLC as duplicates of the same seq"
    assert {d["seq"] for d in sim.duplicates} <= {e["seq"] for e in sim.results}
    assert counters.get(Count.PLC_RETRIES) >= len(parts)


def test_unacknowledged_result_is_reported_at_its_deadline_and_never_delivered() -> None:
    """A PLC that never acknowledges: the written reject is reported 'not_acknowledged', the one queued
    behind it (same acquisition time) 'too_late', by part id; none is delivered."""
    cfg = handshake_section(1, max_late_ms=300, reconnect_max_ms=100)
    sim = start_sim(cfg, "--ignore-ack-share", "1")
    try:
        cfg = with_port(cfg, sim.port)
        worker, log, counters = make_worker(cfg)
        run_until(worker, [7, 8], lambda: outcomes(worker) >= 2)
        worker.shutdown()
    finally:
        sim.stop()
    assert not log.events("reject_delivered")
    # Both share one deadline: which is reported first depends on the moment the worker looks.
    assert sorted((r["part_id"], r["reason"]) for r in log.events("reject_undelivered")) == [
        (7, "not_acknowledged"),
        (8, "too_late"),
    ]
    assert counters.get(Count.PLC_DELIVERED) == 0


def test_frozen_plc_alive_counter_is_a_fault_shown_to_the_plc_and_cleared_when_it_moves() -> None:
    """plc_alive frozen: PLC_ALIVE_STALE is set and the vision block says fault code 5; a live PLC clears it."""
    cfg = handshake_section(1)
    frozen = start_sim(cfg, "--plc-alive-ms", "0")
    try:
        cfg = with_port(cfg, frozen.port)
        worker, log, counters = make_worker(cfg)
        counters.set(Count.INSPECTING, 1)
        counters.set(Count.READY, 1)
        run_until(worker, [], lambda: counters.get(Count.PLC_ALIVE_STALE) == 1, timeout_s=3.0)
        run_until(worker, [], lambda: False, timeout_s=0.2)
        worker.keeper.close()
    finally:
        frozen.stop()
    assert log.events("plc_alive_stale")
    assert any(e["fault_code"] == FaultCode.PLC_ALIVE_STALE for e in frozen.statuses)
    live = PlcSimProcess(frozen.port, args=sim_args(cfg))
    try:
        run_until(worker, [], lambda: counters.get(Count.PLC_ALIVE_STALE) == 0, timeout_s=3.0)
        run_until(worker, [], lambda: False, timeout_s=0.3)
        worker.shutdown()
        time.sleep(0.2)
    finally:
        live.stop()
    assert log.events("plc_alive_restored") and counters.get(Count.PLC_ALIVE_STALE) == 0
    codes = [e["fault_code"] for e in live.statuses]
    assert FaultCode.NONE in codes and codes[-1] == FaultCode.STOPPING


def test_vision_alive_counter_counts_at_its_period() -> None:
    """The vision block's alive word advances about every alive_ms while nothing else happens."""
    from pymodbus.client import ModbusTcpClient

    cfg = handshake_section(1)
    sim = start_sim(cfg)
    try:
        cfg = with_port(cfg, sim.port)
        worker, _, _ = make_worker(cfg)
        client = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=1)
        client.connect()  # type: ignore[no-untyped-call]
        run_until(worker, [], lambda: False, timeout_s=0.3)
        first = client.read_holding_registers(100, count=1, device_id=1).registers[0]
        run_until(worker, [], lambda: False, timeout_s=1.0)
        second = client.read_holding_registers(100, count=1, device_id=1).registers[0]
        client.close()  # type: ignore[no-untyped-call]
        worker.shutdown()
    finally:
        sim.stop()
    assert 10 <= (second - first) % 65536 <= 40  # 1 s at alive_ms 50: about 20 writes


def test_restarted_linegate_continues_the_sequence_the_plc_has_seen() -> None:
    """A new worker reads result_seq back from the PLC first: its numbers never repeat ones the PLC acted on."""
    cfg = handshake_section(1)
    sim = start_sim(cfg)
    try:
        cfg = with_port(cfg, sim.port)
        first, _, _ = make_worker(cfg)
        run_until(first, [1, 2, 3], lambda: outcomes(first) >= 3)
        first.shutdown()
        second, log, _ = make_worker(cfg)
        run_until(second, [4, 5], lambda: outcomes(second) >= 2)
        second.shutdown()
        wait_events(sim, 5)
    finally:
        sim.stop()
    assert [e["part_id"] for e in sim.results] == [1, 2, 3, 4, 5]
    seqs = [e["seq"] for e in sim.results]
    assert seqs == sorted(set(seqs))
    assert [r["part_id"] for r in log.events("reject_delivered")] == [4, 5]


def test_successor_rewrites_a_result_its_predecessor_had_written_and_the_plc_takes_it_once() -> None:
    """A result left FIRING with its seq in the shared table is written again with that seq: one result at the PLC."""
    cfg = handshake_section(1)
    sim = start_sim(cfg, "--ack-delay-ms", "400")
    try:
        cfg = with_port(cfg, sim.port)
        first, _, counters = make_worker(cfg)
        run_until(first, [21], lambda: first.counters.get(Count.PLC_RESULT_WRITES) >= 1)
        first.keeper.close()  # the worker "dies" with its result written and not yet acknowledged
        log = RecordingLog()
        successor = RejectWorker(cfg, create_link(cfg), counters, log, first.table)
        successor.take_over()
        run_until(successor, [], lambda: outcomes(successor) >= 1)
        successor.shutdown()
        wait_events(sim, 1)
    finally:
        sim.stop()
    assert [r["part_id"] for r in log.events("reject_delivered")] == [21]
    assert [e["part_id"] for e in sim.results] == [21]
    assert len(first.table) == 0


# --- the control block and the error latch (what a smart camera's factory interface offers) ---------


def test_buffer_overrun_is_reported_by_part_id_latched_for_the_plc_and_cleared_by_its_control_bit() -> None:
    """buffer = 2 and a PLC that does not acknowledge: of 4 rejects in one burst, the 3rd and 4th are
    reported 'results_buffer_overrun' at once; the PLC sees the overrun and error bits and error code 3
    until it raises 'clear error' (control bit 1); the undelivered word keeps counting."""
    cfg = handshake_section(1, max_late_ms=300, reconnect_max_ms=100, handshake={"buffer": 2})
    sim = start_sim(cfg, "--ignore-ack-share", "1", "--control-at", "1500:2")
    try:
        cfg = with_port(cfg, sim.port)
        worker, log, counters = make_worker(cfg)
        counters.set(Count.INSPECTING, 1)
        run_until(worker, [1, 2, 3, 4], lambda: outcomes(worker) >= 4)
        overrun = [(r["part_id"], r["reason"]) for r in log.events("reject_undelivered")][:2]
        run_until(worker, [], lambda: bool(log.events("plc_error_cleared")), timeout_s=5.0)
        run_until(worker, [], lambda: False, timeout_s=0.2)
        worker.shutdown()
    finally:
        sim.stop()
    assert overrun == [(3, "results_buffer_overrun"), (4, "results_buffer_overrun")]
    assert counters.get(Count.PLC_OVERRUNS) == 2 and counters.get(Count.PLC_DELIVERED) == 0
    assert sorted(r["part_id"] for r in log.events("reject_undelivered")) == [1, 2, 3, 4]
    latched = [s for s in sim.statuses if s["overrun"]]
    assert latched and latched[0]["error"] and latched[0]["error_code"] == ErrorCode.OVERRUN
    assert max(s["undelivered"] for s in sim.statuses) == 4
    cleared = [s for s in sim.statuses if s["control_echo"] == 2]
    assert cleared and not cleared[0]["overrun"] and not cleared[0]["error"] and cleared[0]["error_code"] == 0
    assert cleared[0]["undelivered"] == 4  # a count, not a latch


@pytest.mark.parametrize("protocol", ["modbus", "s7"])
def test_plc_set_offline_stops_results_and_online_resumes_them(protocol: str) -> None:
    """control bit 0 set: the block says not ready, not online, fault code 6 with the fault bit clear, and
    a reject is reported 'plc_offline' (never written); bit 0 cleared: the next reject is delivered."""
    cfg = handshake_section(1, protocol)
    sim = start_sim(cfg, "--control-at", "0:1", "--control-at", "1000:0")
    try:
        cfg = with_port(cfg, sim.port)
        worker, log, counters = make_worker(cfg)
        counters.set(Count.INSPECTING, 1)
        counters.set(Count.READY, 1)
        run_until(worker, [], lambda: counters.get(Count.PLC_OFFLINE) == 1, timeout_s=3.0)
        counters.set(Count.INSPECTING, 0)  # the supervisor counts offline as a reason not to inspect
        run_until(worker, [5], lambda: outcomes(worker) >= 1)
        run_until(worker, [], lambda: counters.get(Count.PLC_OFFLINE) == 0, timeout_s=3.0)
        counters.set(Count.INSPECTING, 1)
        run_until(worker, [6], lambda: outcomes(worker) >= 2)
        worker.shutdown()
        wait_events(sim, 1)
    finally:
        sim.stop()
    assert [(r["part_id"], r["reason"]) for r in log.events("reject_undelivered")] == [(5, "plc_offline")]
    assert [r["part_id"] for r in log.events("reject_delivered")] == [6]
    assert [e["part_id"] for e in sim.results] == [6]
    offline = [s for s in sim.statuses if not s["online"]]
    assert offline and all(s["fault_code"] == FaultCode.OFFLINE and not s["fault"] and not s["ready"] for s in offline)
    assert any(s["online"] and s["ready"] for s in sim.statuses[sim.statuses.index(offline[-1]):])
    assert log.events("plc_set_offline") and log.events("plc_set_online")


def test_recipe_state_is_shown_to_the_plc() -> None:
    """The vision block's recipe word names the active recipe; the switching and failed bits follow the
    supervisor's counters (set by the reloader)."""
    cfg = handshake_section(1)
    sim = start_sim(cfg, "--recipe", "3")
    try:
        cfg = with_port(cfg, sim.port)
        worker, _, counters = make_worker(cfg)
        counters.set(Count.INSPECTING, 1)
        counters.set(Count.RECIPE_SWITCHING, 1)
        run_until(worker, [], lambda: False, timeout_s=0.3)
        counters.set(Count.RECIPE_SWITCHING, 0)
        counters.set(Count.ACTIVE_RECIPE, 3 + 1)
        run_until(worker, [], lambda: False, timeout_s=0.3)
        counters.set(Count.RECIPE_FAILED, 9 + 1)
        run_until(worker, [], lambda: False, timeout_s=0.3)
        worker.keeper.close()
    finally:
        sim.stop()
    seen = [(s["recipe"], s["recipe_switching"], s["recipe_failed"]) for s in sim.statuses]
    seen = [x for i, x in enumerate(seen) if i == 0 or x != seen[i - 1]]  # other words changed in between
    assert seen == [(NO_RECIPE, True, False), (3, False, False), (3, False, True)], seen


def test_part_ids_follow_the_plc_numbering_once_read() -> None:
    """plc.part_ids = "plc": the first read of a non-zero plc_part_id becomes the first part id (the
    camera waits for it); later a PLC that runs ahead of linegate's frame count is logged as drift."""
    cfg = handshake_section(1, part_ids="plc")
    sim = start_sim(cfg, "--plc-part-id", "70000", "--part-period-ms", "100")
    try:
        cfg = with_port(cfg, sim.port)
        worker, log, counters = make_worker(cfg)
        run_until(worker, [], lambda: counters.get(Count.PART_ID_BASE) != 0, timeout_s=3.0)
        base = counters.get(Count.PART_ID_BASE)
        counters.set(Count.ACQUIRED, 1)  # one frame taken; the PLC's numbering moves on every 100 ms
        run_until(worker, [], lambda: counters.get(Count.PLC_PART_ID_DRIFT) == 1, timeout_s=3.0)
        worker.keeper.close()
    finally:
        sim.stop()
    assert 70_000 <= base <= 70_001 and log.events("part_ids_follow_plc")[0]["first_part_id"] == base
    (drift,) = log.events("plc_part_id_drift")
    assert drift["next_part_id"] == base + 1 and drift["drift"] >= 2


def test_results_all_sends_pass_verdicts_too_each_acknowledged_once() -> None:
    """handshake.results = "all": pass verdicts become results as well (verdict word 1), each taken once by
    the PLC and logged result_delivered; rejects keep their own counts and records."""
    cfg = handshake_section(1, handshake={"results": "all"})
    sim = start_sim(cfg)
    try:
        cfg = with_port(cfg, sim.port)
        worker, log, counters = make_worker(cfg)
        reader, writer = reject_channel(CTX)
        outbox = RejectOutbox(writer, capacity=64)
        verdicts = {1: PASS, 2: REJECT, 3: PASS, 4: PASS, 5: REJECT}
        for part, verdict in verdicts.items():
            assert outbox.offer(part, part, time.monotonic_ns(), 0, 0 if verdict == PASS else 1, 9000, verdict)
        outbox.close()
        inbox = RejectInbox(reader)
        end = time.monotonic() + 10
        while time.monotonic() < end and counters.get(Count.PLC_PASS_DELIVERED) + outcomes(worker) < 5:
            worker.step(inbox, time.monotonic_ns())
        worker.shutdown()
        wait_events(sim, 5)
    finally:
        sim.stop()
    assert [(e["part_id"], e["verdict"]) for e in sim.results] == list(verdicts.items())
    assert [r["part_id"] for r in log.events("result_delivered")] == [1, 3, 4]
    assert [r["part_id"] for r in log.events("reject_delivered")] == [2, 5]
    assert (counters.get(Count.PLC_PASS_DELIVERED), counters.get(Count.PLC_DELIVERED)) == (3, 2)
    assert counters.get(Count.PLC_RECEIVED) == 2  # rejects only: they reconcile against the inference side's count


class DroppingPeer:
    """A TCP peer on *port* that accepts each connection and closes it on its first request: a PLC
    or gateway that is reachable but answers nothing."""

    def __init__(self, port: int) -> None:
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.1)
        self.accepted = 0
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            with conn, contextlib.suppress(OSError):
                conn.settimeout(0.5)
                conn.recv(1024)

    def close(self) -> None:
        self._closed = True
        self._thread.join(1)
        self.sock.close()


@pytest.mark.parametrize("protocol", ["modbus", "s7"])
def test_a_plc_that_accepts_but_drops_every_request_is_retried_at_the_back_off_pace(protocol: str) -> None:
    """After a first good connection, the PLC is replaced by one that accepts TCP and drops the first
    request: each connect fails (the block cannot be written) and the next waits the back-off. Before,
    over Modbus the connect counted as made, the next write failed at once, and the worker reconnected
    in a loop (over a thousand connects a second: a CPU, and two log lines each). An S7 connect itself
    needs the peer to answer (COTP, PDU negotiation), so it failed and backed off already."""
    port = free_port()
    cfg = handshake_section(port, protocol)
    sim = PlcSimProcess(port, args=sim_args(cfg))
    worker, log, counters = make_worker(cfg)
    reader, writer = reject_channel(CTX)  # stays open, as the inference worker's does
    inbox = RejectInbox(reader)
    end = time.monotonic() + 10
    while not worker.connected and time.monotonic() < end:
        worker.step(inbox, time.monotonic_ns())
    assert worker.connected
    sim.kill()
    peer = DroppingPeer(port)
    try:
        steps = step_for(worker, 1.0, inbox)
    finally:
        peer.close()
        writer.close()
    assert peer.accepted >= 2  # it was tried again, more than once
    assert counters.get(Count.PLC_RECONNECTS) == 1  # only the first, good connection counts as made
    assert peer.accepted <= 40 and steps < 200, (peer.accepted, steps)  # back-off 20..200 ms
    assert len(log.events("plc_connected")) == 1


@pytest.mark.parametrize("protocol", ["modbus", "s7"])
def test_handshake_blocks_the_plc_refuses_fail_the_connect_and_name_the_keys(protocol: str) -> None:
    """The interface placed where the PLC has no such registers or DB (a wrong register_base or db):
    each connect fails with a reason naming the keys, at the back-off pace, logged once a second.
    Before, the refused read counted as connected and each step reconnected: 827 connects and
    3,300 log lines a second over Modbus."""
    port = free_port()
    sim = PlcSimProcess(port, args=sim_args(handshake_section(port, protocol)))
    wrong: dict[str, Any] = {"register_base": 65000} if protocol == "modbus" else {"db": 999}
    cfg = handshake_section(port, protocol)
    link = cfg.link
    assert link is not None
    worker, log, counters = make_worker(cfg.model_copy(update={protocol: link.model_copy(update=wrong)}))
    try:
        steps = step_for(worker, 1.0)
    finally:
        sim.stop()
    keys = "plc.modbus.register_base" if protocol == "modbus" else "plc.s7.db and plc.s7.byte_base"
    failed = log.events("plc_connect_failed")
    assert failed and all(keys in r["error"] and "refuses the handshake blocks" in r["error"] for r in failed)
    assert len(failed) <= 2 and steps < 200, (len(failed), steps)
    assert counters.get(Count.PLC_RECONNECTS) == 0 and counters.get(Count.PLC_CONNECTED) == 0
    assert not log.events("plc_connected")


def test_a_plc_never_reached_is_unreachable_not_stale() -> None:
    """Nothing listening for three alive timeouts: the fault is the link alone; the PLC's alive
    counter is not called stale (that would tell the operator its program is not taking results)."""
    worker, log, counters = make_worker(handshake_section(free_port()))  # alive timeout 500 ms
    step_for(worker, 1.5)
    assert log.events("plc_connect_failed") and not worker.connected
    assert counters.get(Count.PLC_ALIVE_STALE) == 0 and not log.events("plc_alive_stale")
