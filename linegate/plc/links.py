"""The factory choosing the PLC link for ``plc.protocol`` (imports only that vendor library)."""

from __future__ import annotations

from linegate.config.schema import ModbusSection, PlcSection, S7Section
from linegate.plc.link import PlcLink


def create_link(cfg: PlcSection) -> PlcLink:
    """The link for the configured protocol; its vendor library is imported here, lazily."""
    link = cfg.link
    if isinstance(link, ModbusSection):
        from linegate.plc.modbus import ModbusLink

        return ModbusLink(link)
    if isinstance(link, S7Section):
        from linegate.plc.s7 import S7Link

        return S7Link(link)
    raise ValueError(f"plc.protocol = {cfg.protocol!r} has no [plc.{cfg.protocol}] section")
