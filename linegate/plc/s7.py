"""Siemens S7 transport (ISO-on-TCP through python-snap7; the only module importing snap7).

Layout in data block ``db``: interface word ``i`` is the big-endian unsigned 16-bit value at byte
``byte_base + 2*i``; the pulse flags are whole bytes (1/0) at ``reject_byte`` / ``fault_byte``.
Only whole bytes are written: no bit writes, no read-modify-write.

Built on snap7's connection and protocol layers rather than ``snap7.Client``: the client's connect
takes no timeout, and it raises the same exception for a PLC's error answer and for a garbled reply,
which this link must tell apart (an error answer keeps the connection, anything else drops it).
"""

from __future__ import annotations

import contextlib
import logging
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from snap7.connection import ISOTCPConnection
from snap7.datatypes import S7Area, S7WordLen
from snap7.error import S7ProtocolError
from snap7.s7protocol import S7Protocol, get_return_code_description

from linegate.config.schema import S7Section
from linegate.plc.link import Flag, PlcLinkError, PlcRefusedError, tcp_reachable

logging.getLogger("snap7").setLevel(logging.CRITICAL)  # failures reach the worker as exceptions, reported once

_T = TypeVar("_T")

_LOCAL_TSAP = 0x0100
_CONNECTION_TYPE_PG = 1  # the remote TSAP's high byte, as snap7's own client uses
_PDU_REQUEST = 480  # bytes; the PLC answers with what it supports (240, 480 or 960)
_WRITE_OVERHEAD = 28  # S7 header 10 + write parameters 14 + data item header 4
_READ_OVERHEAD = 18  # S7 ack header 12 + read parameters 2 + data item header 4
_ITEM_OK = 0xFF
_S7_PROTOCOL_ID = 0x32
_ACK_DATA = 0x03
_ACK_HEADER = 12


class S7Link:
    """One S7 connection to data block ``cfg.db`` (a :class:`~linegate.plc.link.PlcLink`).

    Each socket wait (TCP connect, COTP confirm, each reply) is bounded by ``timeout_ms``, so a PLC
    that stops answering fails the call after about that; connect()'s S7 setup gets what is left.
    Not thread-safe by design: one owner thread (requests are numbered per connection).
    """

    def __init__(self, cfg: S7Section) -> None:
        self.cfg = cfg
        self.peer = f"{cfg.host}:{cfg.port}"
        self._timeout_s = cfg.timeout_ms / 1000
        self._flag_bytes: dict[Flag, int | None] = {"reject": cfg.reject_byte, "fault": cfg.fault_byte}
        self._conn: ISOTCPConnection | None = None
        self._protocol = S7Protocol()
        self._pdu_length = 240

    def connect(self) -> None:
        """Close any previous connection, then TCP connect, ISO (COTP) connect and S7 setup, within the timeout."""
        self.close()
        start_ns = time.monotonic_ns()
        conn = ISOTCPConnection(
            self.cfg.host,
            self.cfg.port,
            local_tsap=_LOCAL_TSAP,
            remote_tsap=(_CONNECTION_TYPE_PG << 8) | (self.cfg.rack << 5) | self.cfg.slot,
        )
        try:
            conn.connect(timeout=self._timeout_s)  # snap7 closes the socket itself when this fails
        except Exception as exc:
            raise PlcLinkError(f"connect to {self.peer}: {type(exc).__name__}: {exc}") from exc
        self._conn = conn
        self._protocol = S7Protocol()
        try:
            left_s = self._timeout_s - (time.monotonic_ns() - start_ns) / 1e9
            if left_s <= 0:
                raise PlcLinkError(f"connect to {self.peer}: timed out before the S7 setup")
            self._set_timeout(left_s)
            request = self._protocol.build_setup_communication_request(1, 1, _PDU_REQUEST)
            params = self._call("S7 setup", request, lambda reply: reply.get("parameters") or {})
            self._pdu_length = min(int(params.get("pdu_length", 240)), _PDU_REQUEST)
            if self._pdu_length < _WRITE_OVERHEAD + 2:
                raise PlcLinkError(f"connect to {self.peer}: PLC offers a {self._pdu_length}-byte PDU")
            self._set_timeout(self._timeout_s)
        except PlcLinkError as exc:
            self.close()
            if isinstance(exc, PlcRefusedError):  # a PLC refusing the session leaves no usable link
                raise PlcLinkError(str(exc)) from exc
            raise

    def close(self) -> None:
        """Send a COTP disconnect if the stream is healthy, close the socket; never raises."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):  # closing a broken connection has nothing left to report
            conn.disconnect()

    def reachable(self, timeout_s: float) -> bool:
        """Whether the PLC accepts a TCP connection now (opened and closed at once, no S7 session)."""
        return tcp_reachable(self.cfg.host, self.cfg.port, timeout_s)

    def write_part_id(self, part_id: int) -> None:
        """S7 pulse mode has no part-id bytes: the handshake mode's result block carries part ids."""

    def write_words(self, offset: int, words: Sequence[int]) -> None:
        """Write *words* (unsigned 16-bit) at interface word *offset*: one DB write of the whole range."""
        if not words:
            raise ValueError("write_words needs at least one word")
        for word in words:
            if not 0 <= word <= 0xFFFF:
                raise ValueError(f"word {word} is not an unsigned 16-bit value")
        data = struct.pack(f">{len(words)}H", *words)
        self._write(self._word_byte(offset), data, f"write_words({offset}, {len(words)} words)")

    def read_words(self, offset: int, count: int) -> list[int]:
        """Read *count* unsigned 16-bit words from interface word *offset*: one DB read."""
        if count < 1:
            raise ValueError(f"read_words needs a count of at least 1, got {count}")
        data = self._read(self._word_byte(offset), 2 * count, f"read_words({offset}, {count})")
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]

    def write_flag(self, flag: Flag, on: bool) -> None:
        """Write the flag's byte whole: 1 for on, 0 for off."""
        self._write(self._flag_byte(flag), b"\x01" if on else b"\x00", f"write_flag({flag}, {on})")

    def read_flag(self, flag: Flag) -> bool:
        """Read the flag's byte back; any nonzero value is on."""
        return self._read(self._flag_byte(flag), 1, f"read_flag({flag})")[0] != 0

    def has_flag(self, flag: Flag) -> bool:
        """Whether *flag* has a byte configured."""
        return self._flag_bytes[flag] is not None

    def _word_byte(self, offset: int) -> int:
        if offset < 0:
            raise ValueError(f"interface word offset must be >= 0, got {offset}")
        return self.cfg.byte_base + 2 * offset

    def _flag_byte(self, flag: Flag) -> int:
        byte = self._flag_bytes[flag]
        if byte is None:
            raise PlcRefusedError(f"{flag} flag on {self.peer}: plc.s7.{flag}_byte is not configured")
        return byte

    def _write(self, start: int, data: bytes, what: str) -> None:
        if len(data) + _WRITE_OVERHEAD > self._pdu_length:
            raise ValueError(f"{what}: {len(data)} bytes do not fit one request (PDU {self._pdu_length} bytes)")
        request = self._protocol.build_write_request(S7Area.DB, self.cfg.db, start, S7WordLen.BYTE, data)

        def check(reply: dict[str, Any]) -> None:
            self._refuse_item(reply, what)
            self._protocol.check_write_response(reply)

        self._call(what, request, check)

    def _read(self, start: int, size: int, what: str) -> bytes:
        if size + _READ_OVERHEAD > self._pdu_length:
            raise ValueError(f"{what}: {size} bytes do not fit one reply (PDU {self._pdu_length} bytes)")
        request = self._protocol.build_read_request(S7Area.DB, self.cfg.db, start, S7WordLen.BYTE, size)

        def data(reply: dict[str, Any]) -> bytes:
            self._refuse_item(reply, what)
            return bytes(self._protocol.extract_read_data(reply, S7WordLen.BYTE, size))

        return self._call(what, request, data)

    def _call(self, what: str, request: bytes, result: Callable[[dict[str, Any]], _T]) -> _T:
        """One request and its reply. An error answer raises PlcRefusedError; any other failure closes the link."""
        conn = self._conn
        if conn is None:
            raise PlcLinkError(f"{what} on {self.peer}: not connected")
        try:
            conn.send_data(request)
            pdu = conn.receive_data()
            try:
                reply = self._protocol.parse_response(pdu)
            except S7ProtocolError as exc:
                # An error answer: in the header, or an item whose length field snap7 rejects (libsnap7's
                # servers announce 4 data bytes after a read's error code and send none).
                item = _item_error(pdu)
                if not exc.error_code and item is None:
                    raise
                self._protocol.validate_pdu_reference(int.from_bytes(pdu[4:6], "big"))  # to this request?
                detail = str(exc) if exc.error_code else _item_message(item)
                raise PlcRefusedError(f"{what} on {self.peer} (DB{self.cfg.db}): {detail}") from exc
            self._protocol.validate_pdu_reference(reply["sequence"])
            return result(reply)
        except PlcRefusedError:
            raise
        except Exception as exc:
            self.close()  # the stream may still hold a late reply: the next call must connect() again
            raise PlcLinkError(f"{what} on {self.peer}: {type(exc).__name__}: {exc}") from exc

    def _refuse_item(self, reply: dict[str, Any], what: str) -> None:
        data = reply.get("data")
        code = data.get("return_code") if isinstance(data, dict) else None
        if code is not None and code != _ITEM_OK:
            raise PlcRefusedError(f"{what} on {self.peer} (DB{self.cfg.db}): {_item_message(code)}")

    def _set_timeout(self, timeout_s: float) -> None:
        conn = self._conn
        if conn is not None and conn.socket is not None:
            conn.socket.settimeout(timeout_s)


def _item_error(pdu: bytes) -> int | None:
    """The return code of an ACK_DATA reply's first data item when it is an error, else None."""
    if len(pdu) < 15 or pdu[0] != _S7_PROTOCOL_ID or pdu[1] != _ACK_DATA:
        return None
    param_len = int.from_bytes(pdu[6:8], "big")
    if len(pdu) <= _ACK_HEADER + param_len:
        return None
    code = pdu[_ACK_HEADER + param_len]
    return None if code == _ITEM_OK else code


def _item_message(code: int | None) -> str:
    if code is None:
        return "item error"
    return f"item error {code:#04x} ({get_return_code_description(code)})"
