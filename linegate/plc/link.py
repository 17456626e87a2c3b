"""The contract every PLC transport (Modbus TCP, Siemens S7) fulfils, and its errors.

A transport moves 16-bit words of the linegate PLC interface (:mod:`linegate.plc.interface`) and
the two pulse-mode flags (reject, fault). It owns one connection, is used by one thread, and bounds
every call by its configured timeout. It never retries by itself: the PLC worker decides.

Outcome of a failed write: :class:`PlcRefusedError` means the PLC answered "no" (not applied);
any other :class:`PlcLinkError` means the reply did not come, so the write may or may not have
taken effect. The worker resolves that by reading back, never by blind re-sending.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Literal, Protocol

Flag = Literal["reject", "fault"]
"""Pulse-mode outputs: a coil on Modbus, a whole byte (0/1) in the data block on S7."""


class PlcLinkError(Exception):
    """A PLC call failed: refused, reset, timed out, or answered with an exception code."""


class PlcRefusedError(PlcLinkError):
    """The PLC answered with an error (e.g. illegal address): the link works, this request does not."""


class PlcLink(Protocol):
    """One PLC connection. Every method is bounded by the link's timeout and raises PlcLinkError."""

    peer: str
    """``host:port`` for messages."""

    def connect(self) -> None:
        """Open the connection (closing any previous one first); bounded by the timeout."""
        ...

    def close(self) -> None:
        """Close the connection; never raises."""
        ...

    def reachable(self, timeout_s: float) -> bool:
        """A cheap probe: does the PLC accept a TCP connection now? Opens no protocol session."""
        ...

    def write_words(self, offset: int, words: Sequence[int]) -> None:
        """Write unsigned 16-bit *words* at interface word *offset*, in one request."""
        ...

    def read_words(self, offset: int, count: int) -> list[int]:
        """Read *count* unsigned 16-bit words from interface word *offset*, in one request."""
        ...

    def write_flag(self, flag: Flag, on: bool) -> None:
        """Set a pulse-mode output. Raises PlcRefusedError if the flag is not configured."""
        ...

    def read_flag(self, flag: Flag) -> bool:
        """Read a pulse-mode output back (resolves a write whose reply did not come)."""
        ...

    def write_part_id(self, part_id: int) -> None:
        """pulse mode: the part id where the PLC reads it before the reject output rises (Modbus
        ``part_id_register``); nothing where none is configured."""
        ...

    def has_flag(self, flag: Flag) -> bool:
        """Whether *flag* is configured on this link."""
        ...


def tcp_reachable(host: str, port: int, timeout_s: float) -> bool:
    """Whether *host* accepts a TCP connection on *port* now (opened and closed at once)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
