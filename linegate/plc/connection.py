"""Keeps one PLC link up: connect with capped back-off, prepare outputs, notice a lost link.

The back-off starts at ``plc.reconnect_min_ms`` and doubles to ``plc.reconnect_max_ms``, which the
config keeps below ``max_late_ms``: a PLC that answers again is used while held rejects can still
be fired. Connecting is cheap (a TCP connect, bounded by the link's timeout), so the attempts
themselves are the probe. Failures are logged at the first one and then once a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from linegate.counters import Count, SharedCounters
from linegate.plc.link import PlcLink, PlcLinkError, PlcRefusedError
from linegate.timing.backoff import Backoff

LOG_EVERY_NS = 1_000_000_000


class LinkKeeper:
    """Connection state of one :class:`PlcLink`; ``prepare`` runs after each connect (safe state)."""

    def __init__(
        self,
        link: PlcLink,
        backoff: Backoff,
        counters: SharedCounters,
        log: Any,
        prepare: Callable[[], None],
    ) -> None:
        self.link = link
        self.backoff = backoff
        self.counters = counters
        self.log = log
        self.prepare = prepare
        self.connected = False
        self.last_error = "not connected yet"
        self._next_ns = 0
        self._failures = 0
        self._last_log_ns = 0

    def ensure(self, now_ns: int, *, prepare: bool = True) -> bool:
        """Connected now? Tries to connect when the back-off allows. With ``prepare=False`` the
        outputs are left as found (to read back a write whose reply did not come)."""
        if self.connected:
            return True
        if now_ns < self._next_ns:
            return False
        try:
            self.link.connect()
            if prepare:
                try:
                    self.prepare()
                except PlcRefusedError as exc:  # the link works; what is refused is reported per reject
                    self.log.error("plc_safe_state_refused", peer=self.link.peer, error=str(exc))
        except PlcLinkError as exc:
            self._failed(exc)
            return False
        self.connected = True
        self._failures = 0
        self.backoff.reset()
        self.counters.set(Count.PLC_CONNECTED, 1)
        self.counters.add(Count.PLC_RECONNECTS)
        self.log.info("plc_connected", peer=self.link.peer, prepared=prepare)
        return True

    @property
    def next_attempt_ns(self) -> int:
        """While disconnected: the earliest moment :meth:`ensure` tries to connect again."""
        return self._next_ns

    def lost(self, exc: PlcLinkError) -> None:
        """A call failed: close, and reconnect at once the next time (then back off)."""
        self.link.close()
        was = self.connected
        self.connected = False
        self.last_error = str(exc)
        self.counters.set(Count.PLC_CONNECTED, 0)
        self._next_ns = 0
        if was:
            self.log.warning("plc_link_lost", peer=self.link.peer, error=str(exc))

    def close(self) -> None:
        self.link.close()
        self.connected = False
        self.counters.set(Count.PLC_CONNECTED, 0)

    def _failed(self, exc: PlcLinkError) -> None:
        self.link.close()
        self.last_error = str(exc)
        delay = self.backoff.next_delay_ns()
        now = time.monotonic_ns()
        self._next_ns = now + delay
        self._failures += 1
        if self._failures == 1 or now - self._last_log_ns >= LOG_EVERY_NS:
            self._last_log_ns = now
            self.log.warning(
                "plc_connect_failed",
                peer=self.link.peer,
                error=str(exc),
                retry_in_ms=delay / 1e6,
                failures=self._failures,
            )
