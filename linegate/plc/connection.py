"""Keeps one PLC link up: connect with capped back-off, prepare outputs, notice a lost link.

The back-off starts at ``plc.reconnect_min_ms`` and doubles to ``plc.reconnect_max_ms``, which the
config keeps below ``max_late_ms``: a PLC that answers again is used while held rejects can still
be fired. Connecting is cheap (a TCP connect, bounded by the link's timeout), so the attempts
themselves are the probe. Failures are logged at the first one and then once a second.

A lost link is tried again at once (a reply that came too late: the PLC may have applied the write,
and only a read-back settles it). But a link lost by a refusal, or sooner after its connect than a
reply may take (the link's timeout: the PLC failed the request at once, e.g. a gateway that accepts
connections and then drops every request), waits the back-off like a failed connect; it is not
shown as up until a connection holds :data:`STABLE_NS`, and its connect/lost pairs are logged once
a second, with how many there were.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from linegate.counters import Count, SharedCounters
from linegate.plc.link import PlcLink, PlcLinkError, PlcRefusedError
from linegate.timing.backoff import Backoff

LOG_EVERY_NS = 1_000_000_000
STABLE_NS = 1_000_000_000
"""After fast losses, a connection that holds this long is shown as up again."""


class LinkKeeper:
    """Connection state of one :class:`PlcLink`; ``prepare`` runs after each connect (safe state)."""

    def __init__(
        self,
        link: PlcLink,
        backoff: Backoff,
        counters: SharedCounters,
        log: Any,
        prepare: Callable[[], None],
        fast_loss_ns: int = 0,
    ) -> None:
        self.link = link
        self.backoff = backoff
        self.counters = counters
        self.log = log
        self.prepare = prepare
        self.fast_loss_ns = fast_loss_ns
        """A link lost sooner than this after its connect failed at once (not a late reply)."""
        self.connected = False
        self.last_error = "not connected yet"
        self._next_ns = 0
        self._failures = 0
        self._last_log_ns = 0
        self._connected_ns = 0
        self._flaps = 0
        """Connections lost fast (refused, or sooner than fast_loss_ns after the connect), in a row."""
        self._last_flap_log_ns = 0

    def ensure(self, now_ns: int, *, prepare: bool = True) -> bool:
        """Connected now? Tries to connect when the back-off allows. With ``prepare=False`` the
        outputs are left as found (to read back a write whose reply did not come)."""
        if self.connected:
            if self._flaps and now_ns - self._connected_ns >= STABLE_NS:
                self._flaps = 0  # it holds now: shown as up, and the next loss reconnects at once
                self.backoff.reset()
                self.counters.set(Count.PLC_CONNECTED, 1)
                self.log.info("plc_link_stable", peer=self.link.peer)
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
        self._connected_ns = time.monotonic_ns()
        # While connections keep being lost right after they are made, the link is not shown as up
        # (the operator's "PLC unreachable" holds) until one has held STABLE_NS.
        self.counters.set(Count.PLC_CONNECTED, int(not self._flaps))
        self.counters.add(Count.PLC_RECONNECTS)
        if self._flap_logged(self._connected_ns):
            self.log.info("plc_connected", peer=self.link.peer, prepared=prepare)
        return True

    @property
    def next_attempt_ns(self) -> int:
        """While disconnected: the earliest moment :meth:`ensure` tries to connect again."""
        return self._next_ns

    def lost(self, exc: PlcLinkError) -> None:
        """A call failed: close; reconnect at once, or after the back-off if it failed fast."""
        self.link.close()
        was = self.connected
        self.connected = False
        self.last_error = str(exc)
        self.counters.set(Count.PLC_CONNECTED, 0)
        now = time.monotonic_ns()
        if not was:
            self._next_ns = 0
            return
        if now - self._connected_ns >= self.fast_loss_ns and not isinstance(exc, PlcRefusedError):
            self._flaps = 0
            self._next_ns = 0
            self.backoff.reset()
        else:
            self._flaps += 1
            self._next_ns = now + self.backoff.next_delay_ns()
        if self._flap_logged(now):
            extra = {"lost_soon_after_connecting": self._flaps} if self._flaps > 1 else {}
            self.log.warning("plc_link_lost", peer=self.link.peer, error=str(exc), **extra)

    def _flap_logged(self, now_ns: int) -> bool:
        """Whether to log this connect or loss: always while the link holds; once a second while it
        keeps being lost right after connecting."""
        if self._flaps <= 1:
            return True
        if now_ns - self._last_flap_log_ns >= LOG_EVERY_NS:
            self._last_flap_log_ns = now_ns
            return True
        return False

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
