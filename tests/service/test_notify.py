"""The sd_notify wrapper: watchdog interval from the environment, messages on a real socket."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from linegate.service.notify import Notifier, watchdog_interval_ns


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    """WATCHDOG_USEC=20 s gives a ping every 10 s; no variable or 0 means no pings."""
    assert watchdog_interval_ns({"WATCHDOG_USEC": "20000000"}, pid=1) == 10_000_000_000
    assert watchdog_interval_ns({}, pid=1) is None
    assert watchdog_interval_ns({"WATCHDOG_USEC": "0"}, pid=1) is None
    assert watchdog_interval_ns({"WATCHDOG_USEC": "junk"}, pid=1) is None


def test_watchdog_for_another_pid_is_ignored() -> None:
    """WATCHDOG_PID naming another process means the pings are not expected from this one."""
    env = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "42"}
    assert watchdog_interval_ns(env, pid=41) is None
    assert watchdog_interval_ns(env, pid=42) == 500_000_000


def test_messages_reach_a_real_notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """READY, STATUS, WATCHDOG, RELOADING and STOPPING arrive as sd_notify datagrams."""
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    n = Notifier()
    n.ready("inspecting")
    n.watchdog()
    n.reloading()
    n.stopping("bye")
    got = [server.recv(4096).decode() for _ in range(4)]
    server.close()
    assert got[0] == "READY=1\nSTATUS=inspecting" and got[1] == "WATCHDOG=1"
    assert got[2].startswith("RELOADING=1\nMONOTONIC_USEC=") and got[3] == "STOPPING=1\nSTATUS=bye"


def test_without_notify_socket_every_call_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a terminal (no $NOTIFY_SOCKET), notifications are silently skipped."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    n.ready("x")  # must neither raise nor block
    n.watchdog()
    n.stopping("bye")
