"""pulse mode over Siemens S7: the real PLC worker against `linegate plc-sim --protocol s7` (python-snap7's server)."""

from __future__ import annotations

import time

import pytest

from linegate.config.schema import PlcSection
from linegate.counters import Count
from linegate.demo.runner import PlcSimProcess, free_port, sim_args
from tests.plc.test_worker import deliver, make_worker

pytestmark = pytest.mark.peer


def s7_pulse_section(port: int) -> PlcSection:
    s7 = {"host": "127.0.0.1", "port": port, "db": 100, "reject_byte": 60, "fault_byte": 61, "timeout_ms": 100}
    return PlcSection.model_validate({"protocol": "s7", "mode": "pulse", "s7": s7, "pulse_ms": 5.0})


def test_each_reject_is_one_pulse_of_the_reject_byte_and_the_fault_byte_ends_on() -> None:
    """Each reject raises DB100.DBB60 once (whole bytes); after shutdown the reject byte is 0, the fault byte 1."""
    sim = PlcSimProcess(free_port(), args=sim_args(s7_pulse_section(1)))
    try:
        cfg = s7_pulse_section(sim.port)
        worker, log, counters = make_worker(cfg)
        parts = list(range(1, 21))
        deliver(worker, parts)
        worker.shutdown()
        time.sleep(0.3)  # the simulator observes its DB by polling
    finally:
        sim.stop()
    assert [r["part_id"] for r in log.events("reject_delivered")] == parts
    assert counters.get(Count.PLC_UNDELIVERED) == 0
    reject = [e["value"] for e in sim.edges if e["coil"] == 60]
    assert reject.count(1) == len(parts) and reject[-1] == 0
    assert [e["value"] for e in sim.edges if e["coil"] == 61][-1] == 1
