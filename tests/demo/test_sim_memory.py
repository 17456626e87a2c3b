"""The demo's PLC simulator reader keeps bytes, not dicts, per reject: a long demo does not grow without bound."""

from __future__ import annotations

import sys
import time

from pymodbus.client import ModbusTcpClient

from linegate.demo.runner import PlcSimProcess, free_port


def test_compact_reader_keeps_eight_bytes_per_pulse_and_no_events() -> None:
    """500 pulses: every rising edge's part id is kept (in order) in an int64 array; no event dicts are kept."""
    sim = PlcSimProcess(free_port(), compact=True)
    client = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=2)
    try:
        assert client.connect()  # type: ignore[no-untyped-call]
        for part in range(1, 501):
            client.write_registers(0, [part >> 16, part & 0xFFFF], device_id=1)
            client.write_coil(0, True, device_id=1)
            client.write_coil(0, False, device_id=1)
        end = time.monotonic() + 5
        while len(sim.rising_part_ids(0)) < 500 and time.monotonic() < end:
            time.sleep(0.02)
    finally:
        client.close()  # type: ignore[no-untyped-call]
        sim.stop()
    assert sim.rising_part_ids(0) == list(range(1, 501))
    assert sim.edges == [] and sim.results == []
    assert sys.getsizeof(sim.rising[0]) < 500 * 8 + 1024  # 8 bytes a pulse (plus the array's slack)
