"""Modbus TCP reject output through pymodbus (the only module importing the pymodbus client).

Every call is bounded by ``timeout_ms`` with pymodbus's own retries off: linegate decides retries.
Not thread-safe (neither is pymodbus's sync client): one owner thread.
"""

from __future__ import annotations

import logging

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from linegate.config.schema import ModbusSection


class PlcLinkError(Exception):
    """A PLC call failed: refused, reset, timed out, or answered with an exception code."""


class PlcRefusedError(PlcLinkError):
    """The PLC answered with a Modbus exception (e.g. illegal address): the link works, the write does not."""


logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # failures are reported by linegate, once


class ModbusRejectOutput:
    """Reject coil (and optional part-id registers) on one Modbus TCP device."""

    def __init__(self, cfg: ModbusSection) -> None:
        self.cfg = cfg
        self.peer = f"{cfg.host}:{cfg.port}"
        self._client = ModbusTcpClient(cfg.host, port=cfg.port, timeout=cfg.timeout_ms / 1000, retries=0)

    def connect(self) -> None:
        """Open the TCP connection (bounded by the timeout)."""
        try:
            ok = self._client.connect()  # type: ignore[no-untyped-call]
        except (ModbusException, OSError) as exc:
            raise PlcLinkError(f"connect to {self.peer}: {exc}") from exc
        if not ok:
            raise PlcLinkError(f"connect to {self.peer}: refused or timed out")

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def set_reject(self, on: bool) -> None:
        self._call("write_coil", self.cfg.reject_coil, on)

    def write_part_id(self, part_id: int) -> None:
        if self.cfg.part_id_register is None:
            return
        words = [(part_id >> 16) & 0xFFFF, part_id & 0xFFFF]
        self._call("write_registers", self.cfg.part_id_register, words)

    def set_fault(self, on: bool) -> None:
        """The fault coil (if configured): on while linegate is not inspecting."""
        if self.cfg.fault_coil is not None:
            self._call("write_coil", self.cfg.fault_coil, on)

    def safe_state(self) -> None:
        """Outputs to their safe state: reject coil off."""
        self.set_reject(False)

    def _call(self, method: str, address: int, value: object) -> None:
        try:
            result = getattr(self._client, method)(address, value, device_id=self.cfg.device_id)
        except (ModbusException, OSError) as exc:
            self._client.close()  # type: ignore[no-untyped-call]  # next call must reconnect: the stream may hold a stale reply
            raise PlcLinkError(f"{method}({address}) on {self.peer}: {type(exc).__name__}: {exc}") from exc
        if result.isError():
            raise PlcRefusedError(f"{method}({address}) on {self.peer}: exception reply {result}")
