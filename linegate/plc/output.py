"""The contract every PLC reject output (Modbus, S7) fulfils, and the factory choosing one."""

from __future__ import annotations

from typing import Protocol

from linegate.config.schema import PlcSection


class RejectOutput(Protocol):
    """One PLC link. Every method is bounded by the link's timeout and raises PlcLinkError."""

    peer: str

    def connect(self) -> None: ...

    def close(self) -> None: ...

    def write_part_id(self, part_id: int) -> None: ...

    def set_reject(self, on: bool) -> None: ...

    def safe_state(self) -> None: ...

    def set_fault(self, on: bool) -> None: ...


def create_output(cfg: PlcSection) -> RejectOutput:
    """The output for ``cfg.protocol`` (imports only that vendor library)."""
    from linegate.plc.modbus import ModbusRejectOutput

    return ModbusRejectOutput(cfg.modbus)
