"""systemd notifications (the only module importing ``sdnotify``).

Messages go to ``$NOTIFY_SOCKET`` as datagrams; without that variable (run from a terminal) every
call is a no-op. The watchdog interval comes from ``$WATCHDOG_USEC`` (honouring ``$WATCHDOG_PID``),
and linegate pings at half of it, as sd_watchdog_enabled(3) advises.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping

import sdnotify


def watchdog_interval_ns(env: Mapping[str, str] | None = None, pid: int | None = None) -> int | None:
    """Nanoseconds between WATCHDOG=1 pings, or None when systemd expects none of this process."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    watched_pid = env.get("WATCHDOG_PID", "")
    if watched_pid.isdigit() and int(watched_pid) != (os.getpid() if pid is None else pid):
        return None
    return int(usec) * 1000 // 2


class Notifier:
    """READY / STATUS / WATCHDOG / RELOADING / STOPPING for the service manager.

    Owns one datagram socket to ``$NOTIFY_SOCKET``: :meth:`close` closes it, and so does dropping
    the notifier (or the interpreter's exit), so a stop never leaves an unclosed socket behind
    (a ResourceWarning in the journal).
    """

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        sock = getattr(self._notifier, "socket", None)
        self._closer = weakref.finalize(self, sock.close) if sock is not None else None

    def _send(self, *lines: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(lines))

    def close(self) -> None:
        """Close the socket; later messages are dropped. Safe to call twice."""
        self._notifier = None
        if self._closer is not None:
            self._closer()

    def ready(self, status: str) -> None:
        self._send("READY=1", f"STATUS={status}")

    def status(self, text: str) -> None:
        self._send(f"STATUS={text}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets newer managers (Type=notify-reload, systemd >= 253) match the reload;
        # systemd 249 ignores it.
        self._send("RELOADING=1", f"MONOTONIC_USEC={_monotonic_usec()}", "STATUS=reloading configuration")

    def stopping(self, status: str) -> None:
        self._send("STOPPING=1", f"STATUS={status}")


def _monotonic_usec() -> int:
    import time

    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
