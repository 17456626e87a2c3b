"""`linegate plc-sim`: a real Modbus TCP server printing coil edges with the part id."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from pymodbus.client import ModbusTcpClient

from linegate.demo.runner import PlcSimProcess, free_port


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
    assert first == {"event": "listening", "host": "127.0.0.1", "port": port}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    proc.stdout.close()
