"""Modbus TCP link through pymodbus (the only module importing the pymodbus client).

Interface words are holding registers from ``register_base`` (FC16 write, FC3 read); pulse-mode
flags are coils (FC5 write, FC1 read). Every call is bounded by ``timeout_ms`` with pymodbus's
own retries off: the worker decides retries. Not thread-safe (neither is pymodbus's sync client):
one owner thread.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from linegate.config.schema import ModbusSection
from linegate.plc.link import Flag, PlcLinkError, PlcRefusedError, tcp_reachable

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # failures are reported by linegate, once


class ModbusLink:
    """One Modbus TCP device (see :class:`linegate.plc.link.PlcLink`)."""

    def __init__(self, cfg: ModbusSection) -> None:
        self.cfg = cfg
        self.peer = f"{cfg.host}:{cfg.port}"
        self._coils: dict[Flag, int | None] = {"reject": cfg.reject_coil, "fault": cfg.fault_coil}
        self._client = ModbusTcpClient(cfg.host, port=cfg.port, timeout=cfg.timeout_ms / 1000, retries=0)

    def connect(self) -> None:
        self.close()
        try:
            ok = self._client.connect()  # type: ignore[no-untyped-call]
        except (ModbusException, OSError) as exc:
            raise PlcLinkError(f"connect to {self.peer}: {exc}") from exc
        if not ok:
            raise PlcLinkError(f"connect to {self.peer}: refused or timed out")

    def close(self) -> None:
        with contextlib.suppress(ModbusException, OSError):  # closing a broken socket is still closed
            self._client.close()  # type: ignore[no-untyped-call]

    def reachable(self, timeout_s: float) -> bool:
        return tcp_reachable(self.cfg.host, self.cfg.port, timeout_s)

    def has_flag(self, flag: Flag) -> bool:
        return self._coils[flag] is not None

    def write_words(self, offset: int, words: Sequence[int]) -> None:
        self._call("write_registers", self.cfg.register_base + offset, list(words))

    def read_words(self, offset: int, count: int) -> list[int]:
        reply = self._call("read_holding_registers", self.cfg.register_base + offset, count=count)
        return [int(v) for v in reply.registers]

    def write_flag(self, flag: Flag, on: bool) -> None:
        self._call("write_coil", self._coil(flag), on)

    def read_flag(self, flag: Flag) -> bool:
        return bool(self._call("read_coils", self._coil(flag), count=1).bits[0])

    def write_part_id(self, part_id: int) -> None:
        """pulse mode: the part id (32 bit, high word first) into ``part_id_register``, if set."""
        # Waited for, not pipelined with the coil write that follows (which would save a round trip):
        # tried, and under delayed replies the ON could still sit queued behind this request when the
        # read-back after a timeout found the coil OFF, so it was written again (a part pulsed twice).
        if self.cfg.part_id_register is not None:
            p = part_id & 0xFFFF_FFFF
            self._call("write_registers", self.cfg.part_id_register, [p >> 16, p & 0xFFFF])

    def _coil(self, flag: Flag) -> int:
        coil = self._coils[flag]
        if coil is None:
            raise PlcRefusedError(f"plc.modbus.{flag}_coil is not configured")
        return coil

    def _call(self, method: str, address: int, *args: Any, **kwargs: Any) -> Any:
        try:
            result = getattr(self._client, method)(address, *args, device_id=self.cfg.device_id, **kwargs)
        except (ModbusException, OSError) as exc:
            self.close()  # the next call must reconnect: the stream may still hold the late reply
            raise PlcLinkError(f"{method}({address}) on {self.peer}: {type(exc).__name__}: {exc}") from exc
        if result.isError():
            raise PlcRefusedError(f"{method}({address}) on {self.peer}: exception reply {result}")
        return result
