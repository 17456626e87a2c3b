"""The PLC reject worker against real Modbus peers: pymodbus's server (plc-sim) and libmodbus's."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from linegate.config.schema import PlcSection
from linegate.counters import Count, SharedCounters
from linegate.demo.runner import PlcSimProcess, free_port
from linegate.plc.links import create_link
from linegate.plc.reject_pipe import RejectInbox, RejectOutbox, reject_channel
from linegate.plc.worker import RejectWorker
from tests.plc import libmodbus_peer

MS = 1_000_000
CTX = mp.get_context("spawn")


class RecordingLog:
    """Collects what the worker logs (the worker's only output besides the PLC itself)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def _add(self, event: str, **kw: Any) -> None:
        self.records.append((event, kw))

    info = warning = error = _add

    def events(self, name: str) -> list[dict[str, Any]]:
        return [kw for event, kw in self.records if event == name]


def plc_section(port: int, **extra: Any) -> PlcSection:
    modbus = {
        "host": "127.0.0.1",
        "port": port,
        "reject_coil": 3,
        "part_id_register": 10,
        "timeout_ms": 20,
        "retries": 2,
    }
    modbus.update(extra.pop("modbus", {}))
    return PlcSection.model_validate({"modbus": modbus, "pulse_ms": 2.0, "reconnect_min_ms": 20, **extra})


def make_worker(cfg: PlcSection) -> tuple[RejectWorker, RecordingLog, SharedCounters]:
    log = RecordingLog()
    counters = SharedCounters.create(CTX)
    return RejectWorker(cfg, create_link(cfg), counters, log), log, counters


def channel(part_ids: list[int], t_acquired: int | None = None) -> RejectInbox:
    """A real reject pipe holding *part_ids*, as the inference loop would have written them."""
    reader, writer = reject_channel(CTX)
    outbox = RejectOutbox(writer, capacity=1024)
    for seq, part in enumerate(part_ids):
        assert outbox.offer(part, seq, t_acquired if t_acquired is not None else time.monotonic_ns())
    outbox.close()
    return RejectInbox(reader)


def step_for(worker: RejectWorker, seconds: float, inbox: RejectInbox | None = None, each: Any = None) -> int:
    """Step *worker* for *seconds* (``each(steps)`` after every step); how many steps ran. Without
    *inbox*, over an empty reject pipe whose writer stays open, as the inference worker's does (a
    closed writer would end every wait at once)."""
    writer = None
    if inbox is None:
        reader, writer = reject_channel(CTX)
        inbox = RejectInbox(reader)
    steps, end = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            worker.step(inbox, time.monotonic_ns())
            steps += 1
            if each is not None:
                each(steps)
    finally:
        if writer is not None:
            writer.close()
    return steps


def deliver(worker: RejectWorker, part_ids: list[int], t_acquired: int | None = None) -> None:
    """Step the worker until each of *part_ids* has its one outcome (delivered or reported)."""
    inbox = channel(part_ids, t_acquired)
    c = worker.counters
    target = c.get(Count.PLC_RECEIVED) + len(part_ids)
    end = time.monotonic() + 10
    while time.monotonic() < end and (
        c.get(Count.PLC_RECEIVED) < target or c.get(Count.PLC_DELIVERED) + c.get(Count.PLC_UNDELIVERED) < target
        or len(worker.schedule) > 0
        or (not worker.mode.ready() and worker.connected)
    ):
        worker.step(inbox, time.monotonic_ns())
    inbox.close()


def wait_for_edges(sim: PlcSimProcess, n: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    end = time.monotonic() + timeout_s
    while len(sim.edges) < n and time.monotonic() < end:
        time.sleep(0.01)
    return list(sim.edges)


@pytest.fixture
def sim() -> Any:
    s = PlcSimProcess(free_port(), part_id_register=10)
    yield s
    s.stop()


def test_each_reject_is_one_pulse_carrying_its_part_id(sim: PlcSimProcess) -> None:
    """Every reject raises then lowers the reject coil once, with its part id in the registers."""
    worker, log, counters = make_worker(plc_section(sim.port))
    deliver(worker, [7, 70_000, 2**32 - 1])
    worker.shutdown()
    edges = wait_for_edges(sim, 6)
    assert [(e["coil"], e["value"], e["part_id"]) for e in edges] == [
        (3, 1, 7), (3, 0, 7), (3, 1, 70_000), (3, 0, 70_000), (3, 1, 2**32 - 1), (3, 0, 2**32 - 1),
    ]  # fmt: skip
    widths = [(edges[i + 1]["t_ns"] - edges[i]["t_ns"]) / MS for i in (0, 2, 4)]
    assert all(w >= 1.0 for w in widths), widths  # 2 ms pulses, allowing for network jitter
    assert counters.get(Count.PLC_DELIVERED) == 3 and counters.get(Count.PLC_UNDELIVERED) == 0
    assert [r["part_id"] for r in log.events("reject_delivered")] == [7, 70_000, 2**32 - 1]


def test_a_second_reject_for_the_same_frame_is_not_fired_again(sim: PlcSimProcess) -> None:
    """An inference worker killed as it handed off part 7's reject leaves its successor to hand off
    a fail-safe reject for the same frame: the PLC sees one pulse, and the second is reported."""
    worker, log, counters = make_worker(plc_section(sim.port))
    reader, writer = reject_channel(CTX)
    outbox = RejectOutbox(writer, capacity=64)
    now = time.monotonic_ns()
    for part, seq in ((7, 0), (7, 0), (8, 1)):  # the dead worker's, its successor's, the next frame's
        assert outbox.offer(part, seq, now)
    outbox.close()
    step_for(worker, 0.3, RejectInbox(reader))
    worker.shutdown()
    edges = wait_for_edges(sim, 4)
    assert [(e["value"], e["part_id"]) for e in edges] == [(1, 7), (0, 7), (1, 8), (0, 8)]
    assert [r["part_id"] for r in log.events("reject_duplicate_ignored")] == [7]
    assert counters.get(Count.PLC_RECEIVED) == counters.get(Count.PLC_DELIVERED) == 2


def test_outputs_go_to_safe_state_first_after_connecting(sim: PlcSimProcess) -> None:
    """A reject coil left on (e.g. by a crash mid-pulse) is switched off before any new pulse."""
    from pymodbus.client import ModbusTcpClient

    other = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=1, retries=0)
    assert other.connect()
    other.write_coil(3, True, device_id=1)
    other.close()
    worker, _, _ = make_worker(plc_section(sim.port))
    deliver(worker, [5])
    worker.shutdown()
    edges = wait_for_edges(sim, 4)
    assert [(e["value"], e["part_id"]) for e in edges] == [(1, 0), (0, 0), (1, 5), (0, 5)]


def test_unreachable_plc_reports_every_reject_with_its_part_id() -> None:
    """With nothing listening, each reject is logged undelivered with its part id, and counted."""
    worker, log, counters = make_worker(plc_section(free_port()))
    t0 = time.monotonic()
    deliver(worker, [11, 12])
    elapsed = time.monotonic() - t0
    assert [(r["part_id"], r["reason"]) for r in log.events("reject_undelivered")] == [
        (11, "plc_unreachable"),
        (12, "plc_unreachable"),
    ]
    assert counters.get(Count.PLC_UNDELIVERED) == 2 and counters.get(Count.PLC_DELIVERED) == 0
    assert elapsed < 5  # bounded by timeouts and back-off, never the library's 3 s x retries


def test_plc_killed_then_back_recovers_by_itself(sim: PlcSimProcess) -> None:
    """PLC killed: rejects are reported undelivered; PLC back on the same port: pulses resume."""
    worker, log, counters = make_worker(plc_section(sim.port))
    deliver(worker, [1])
    sim.kill()
    deliver(worker, [2])
    assert [r["part_id"] for r in log.events("reject_undelivered")] == [2]
    revived = PlcSimProcess(sim.port, part_id_register=10)
    try:
        time.sleep(0.1)  # let the back-off expire
        deliver(worker, [3])
        worker.shutdown()
        edges = wait_for_edges(revived, 2)
        assert [(e["value"], e["part_id"]) for e in edges] == [(1, 3), (0, 3)]
    finally:
        revived.stop()
    assert counters.get(Count.PLC_DELIVERED) == 2 and counters.get(Count.PLC_UNDELIVERED) == 1
    assert len(log.events("plc_connected")) == 2 and log.events("plc_link_lost")


def test_hung_plc_costs_timeouts_not_seconds(sim: PlcSimProcess) -> None:
    """A PLC frozen with SIGSTOP makes rejects undelivered within the short timeouts; it recovers after."""
    worker, log, _ = make_worker(plc_section(sim.port))
    deliver(worker, [1])
    sim.pause()
    try:
        t0 = time.monotonic()
        deliver(worker, [2])
        hung_s = time.monotonic() - t0
    finally:
        sim.resume()
    assert [r["part_id"] for r in log.events("reject_undelivered")] == [2]
    assert hung_s < 2.0, hung_s  # 3 attempts x 20 ms timeouts + back-off, far from pymodbus's 12 s default
    time.sleep(0.3)
    deliver(worker, [3])
    worker.shutdown()
    assert [r["part_id"] for r in log.events("reject_delivered")] == [1, 3]


def test_rejects_too_late_to_hit_their_part_are_not_fired(sim: PlcSimProcess) -> None:
    """A reject whose firing window has passed is reported 'too_late' instead of ejecting the wrong part."""
    worker, log, counters = make_worker(plc_section(sim.port, max_late_ms=50.0, reconnect_max_ms=40.0))
    deliver(worker, [9], t_acquired=time.monotonic_ns() - 1_000 * MS)
    worker.shutdown()
    assert [(r["part_id"], r["reason"]) for r in log.events("reject_undelivered")] == [(9, "too_late")]
    assert counters.get(Count.PLC_LATE) == 1
    time.sleep(0.2)
    assert sim.edges == []


def test_fire_delay_schedules_the_pulse(sim: PlcSimProcess) -> None:
    """With a fire delay the pulse starts that long after acquisition, not at once."""
    worker, log, _ = make_worker(plc_section(sim.port, fire_delay_ms=150.0))
    t_acq = time.monotonic_ns()
    deliver(worker, [4], t_acquired=t_acq)
    worker.shutdown()
    (record,) = log.events("reject_delivered")
    assert record["since_acquired_ms"] >= 150.0


def test_stop_drains_pending_rejects_then_goes_safe(sim: PlcSimProcess) -> None:
    """run() delivers what is queued when asked to stop, then leaves the coil off."""
    worker, log, counters = make_worker(plc_section(sim.port))
    inbox = channel([21, 22, 23])
    stop = threading.Event()
    stop.set()
    worker.run(inbox, stop, drain_timeout_s=5)
    assert [r["part_id"] for r in log.events("reject_delivered")] == [21, 22, 23]
    edges = wait_for_edges(sim, 6)
    assert edges[-1]["value"] == 0
    assert counters.get(Count.PLC_RECEIVED) == 3 == counters.get(Count.PLC_DELIVERED)


def test_stop_reports_what_it_could_not_deliver(sim: PlcSimProcess) -> None:
    """Rejects still scheduled when the drain time runs out are reported 'shutdown' with part ids."""
    worker, log, _ = make_worker(plc_section(sim.port, fire_delay_ms=10_000.0, max_late_ms=60_000.0))
    inbox = channel([31])
    stop = threading.Event()
    stop.set()
    worker.run(inbox, stop, drain_timeout_s=0.2)
    assert [(r["part_id"], r["reason"]) for r in log.events("reject_undelivered")] == [(31, "shutdown")]


# -- libmodbus unit-test-server: an implementation nobody here wrote ---------------------------------

needs_libmodbus = pytest.mark.skipif(libmodbus_peer.available() is not None, reason=str(libmodbus_peer.available()))


@pytest.fixture(scope="module")
def libmodbus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("libmodbus")


def libmodbus_section(coil: int = libmodbus_peer.BITS_ADDRESS, **extra: Any) -> PlcSection:
    modbus = {"reject_coil": coil, "part_id_register": libmodbus_peer.REGISTERS_ADDRESS, "device_id": 1}
    return plc_section(libmodbus_peer.PORT, modbus=modbus, **extra)


@needs_libmodbus
def test_libmodbus_server_receives_part_id_then_coil_on_off(libmodbus_dir: Path) -> None:
    """libmodbus sees, per reject: part id registers written, coil on, coil off, after a safe-state write."""
    with libmodbus_peer.libmodbus_server(libmodbus_dir) as server:
        worker, log, _ = make_worker(libmodbus_section())
        deliver(worker, [0x12345, 6])
        worker.shutdown()
        time.sleep(0.2)
        coil = libmodbus_peer.BITS_ADDRESS
        assert server.coil_writes() == [
            (coil, False),
            (coil, True),
            (coil, False),
            (coil, True),
            (coil, False),
            (coil, False),
        ]
        assert server.register_writes() == [
            (libmodbus_peer.REGISTERS_ADDRESS, [0x1, 0x2345]),
            (libmodbus_peer.REGISTERS_ADDRESS, [0, 6]),
        ]
        assert [r["part_id"] for r in log.events("reject_delivered")] == [0x12345, 6]


@needs_libmodbus
def test_libmodbus_exception_reply_is_undelivered_with_part_id(libmodbus_dir: Path) -> None:
    """A coil outside the PLC's map gets exception replies: the reject is reported, not retried forever."""
    with libmodbus_peer.libmodbus_server(libmodbus_dir):
        worker, log, counters = make_worker(libmodbus_section(coil=0))
        deliver(worker, [77])
        worker.shutdown()
    (record,) = log.events("reject_undelivered")
    assert record["part_id"] == 77 and "exception" in record["error"]
    assert counters.get(Count.PLC_DELIVERED) == 0


@pytest.mark.skipif(libmodbus_peer.lacks_coil_fault() is not None, reason=str(libmodbus_peer.lacks_coil_fault()))
def test_libmodbus_injected_fault_then_peer_gone(libmodbus_dir: Path) -> None:
    """libmodbus's built-in bad-length fault on coil 0x132, after which it exits: undelivered, never hung."""
    with libmodbus_peer.libmodbus_server(libmodbus_dir) as server:
        worker, log, _ = make_worker(libmodbus_section(coil=libmodbus_peer.BITS_ADDRESS_FAULT))
        t0 = time.monotonic()
        deliver(worker, [88, 89])
        elapsed = time.monotonic() - t0
        worker.shutdown()
        # The fault hits every write to that coil, from the safe-state write at connect on.
        writes = server.coil_writes()
        assert writes and {a for a, _ in writes} == {libmodbus_peer.BITS_ADDRESS_FAULT}
    assert [r["part_id"] for r in log.events("reject_undelivered")] == [88, 89]
    assert elapsed < 5


@needs_libmodbus
def test_libmodbus_frozen_peer_times_out(libmodbus_dir: Path) -> None:
    """libmodbus frozen with SIGSTOP: rejects time out in milliseconds and are reported with part ids."""
    import signal

    with libmodbus_peer.libmodbus_server(libmodbus_dir) as server:
        worker, log, _ = make_worker(libmodbus_section())
        deliver(worker, [1])
        server.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            deliver(worker, [2, 3])
            elapsed = time.monotonic() - t0
        finally:
            server.proc.send_signal(signal.SIGCONT)
        worker.shutdown()
    assert [r["part_id"] for r in log.events("reject_delivered")] == [1]
    # 2 was written and never answered (unknown), 3 waited behind it; both end at the same deadline
    assert sorted((r["part_id"], r["reason"]) for r in log.events("reject_undelivered")) == [
        (2, "delivery_unknown"),
        (3, "plc_unreachable"),
    ]
    assert elapsed < 3


# -- outages, take-over, fault coil, bounded queue ---------------------------------------------------


def test_reject_held_through_a_short_outage_is_delivered_after_reconnect(sim: PlcSimProcess) -> None:
    """PLC gone for less than max_late: the reject is held, not reported, and fired once the PLC is back."""
    worker, log, counters = make_worker(plc_section(sim.port, max_late_ms=3000.0))
    deliver(worker, [1])
    sim.kill()
    inbox = channel([2])
    end = time.monotonic() + 0.4
    while time.monotonic() < end:
        worker.step(inbox, time.monotonic_ns())
    assert not log.events("reject_undelivered") and worker.busy()  # held
    revived = PlcSimProcess(sim.port, part_id_register=10)
    try:
        end = time.monotonic() + 5
        while worker.busy() and time.monotonic() < end:
            worker.step(inbox, time.monotonic_ns())
        worker.shutdown()
        assert [(e["value"], e["part_id"]) for e in wait_for_edges(revived, 2)][:2] == [(1, 2), (0, 2)]
    finally:
        revived.stop()
    (late,) = [r for r in log.events("reject_delivered") if r["part_id"] == 2]
    assert late["late_ms"] > 300  # it waited out the outage
    assert counters.get(Count.PLC_UNDELIVERED) == 0


def test_fault_coil_mirrors_inspection_state(sim: PlcSimProcess) -> None:
    """The fault coil is on while linegate does not inspect, off while it does, and on after shutdown."""
    worker, _, counters = make_worker(plc_section(sim.port, modbus={"fault_coil": 4}))
    inbox = channel([])
    worker.step(inbox, time.monotonic_ns())
    counters.set(Count.INSPECTING, 1)
    worker.step(inbox, time.monotonic_ns())
    counters.set(Count.INSPECTING, 0)
    worker.step(inbox, time.monotonic_ns())
    worker.shutdown()
    time.sleep(0.2)
    assert [e["value"] for e in sim.edges if e["coil"] == 4] == [1, 0, 1]
    assert counters.get(Count.PLC_FAULT) == 1


def test_successor_fires_pending_rejects_and_reports_one_caught_mid_pulse(sim: PlcSimProcess) -> None:
    """Rows a dead PLC worker left: PENDING ones are fired by its successor, a FIRING one is
    reported 'delivery_unknown' (the pulse may or may not have reached the PLC)."""
    cfg = plc_section(sim.port)
    first, _, counters = make_worker(cfg)
    now = time.monotonic_ns()
    pending = first.table.put(5, 1, now)
    firing = first.table.put(6, 2, now)
    assert pending is not None and firing is not None
    first.table.mark_firing(firing)
    log = RecordingLog()
    successor = RejectWorker(cfg, create_link(cfg), counters, log, first.table)
    successor.take_over()
    deliver(successor, [])
    successor.shutdown()
    assert [r["part_id"] for r in log.events("reject_delivered")] == [5]
    assert [(r["part_id"], r["reason"]) for r in log.events("reject_undelivered")] == [(6, "delivery_unknown")]
    assert len(first.table) == 0


def test_full_pending_table_reports_the_overflow_by_part_id(sim: PlcSimProcess) -> None:
    """With queue_size rejects already waiting, the next is reported 'plc_queue_full' at once."""
    worker, log, _ = make_worker(plc_section(sim.port, queue_size=2, fire_delay_ms=5_000.0, max_late_ms=10_000.0))
    inbox = channel([1, 2, 3])
    worker.step(inbox, time.monotonic_ns())
    assert [(r["part_id"], r["reason"]) for r in log.events("reject_undelivered")] == [(3, "plc_queue_full")]
    assert len(worker.schedule) == 2


@pytest.mark.parametrize("protocol", ["modbus", "s7"])
@pytest.mark.parametrize("mode", ["pulse", "pulse_encoder", "handshake"])
def test_a_worker_whose_plc_is_away_waits_between_connects_not_spins(protocol: str, mode: str) -> None:
    """Nothing listening, one reject waiting: the worker steps at its idle or reconnect pace. Handshake
    mode (its alive counter due) and encoder tracking (its next read due) spun through 50,000-80,000
    steps a second before: a whole CPU, at the PLC worker's real-time priority, for as long as the
    PLC was away."""
    link: dict[str, Any] = {"host": "127.0.0.1", "port": free_port(), "timeout_ms": 20}
    if protocol == "modbus":
        link.update(reject_coil=3, part_id_register=10, register_base=100)
    else:
        link.update(db=100, byte_base=0, reject_byte=60)
    section: dict[str, Any] = {"protocol": protocol, protocol: link, "mode": mode.removesuffix("_encoder")}
    if mode == "pulse_encoder":
        section["tracking"] = {"by": "encoder", "ejector_counts": 100, "tolerance_counts": 10}
    worker, _log, _counters = make_worker(PlcSection.model_validate(section))
    reader, writer = reject_channel(CTX)  # the writer stays open, as the inference worker's does
    RejectOutbox(writer, 64).offer(7, 1, time.monotonic_ns())
    steps = step_for(worker, 0.5, RejectInbox(reader))
    writer.close()
    assert not worker.connected and worker.counters.get(Count.PLC_RECEIVED) == 1
    assert steps < 100, steps
