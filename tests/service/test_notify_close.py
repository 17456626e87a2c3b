"""The notifier's socket is closed: a stop under systemd leaves no ResourceWarning in the journal."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from linegate.demo.runner import PlcSimProcess
from linegate.service.notify import Notifier
from tests.pipeline.harness import LinegateRun, NotifySocket


def test_stop_writes_no_resource_warning(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """`linegate run` under a notify socket, stopped with SIGTERM as systemctl stop does: stderr (the
    journal) has the summary and no ResourceWarning."""
    notify = NotifySocket(tmp_path / "notify.sock")
    run = LinegateRun(tmp_path, plc_sim.port, notify=notify)
    try:
        run.wait_for(lambda: notify.times_of("READY=1"), what="READY=1")
        stderr = run.stop()
    finally:
        notify.close()
    assert run.proc.returncode == 0, stderr
    assert notify.times_of("STOPPING=1")
    assert "ResourceWarning" not in stderr and "unclosed" not in stderr, stderr


def test_close_closes_the_socket_and_later_messages_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() closes the datagram socket (twice is fine); a message after it is dropped, not sent."""
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(0.3)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    n = Notifier()
    n.stopping("bye")
    n.close()
    n.close()
    n.status("after close")
    assert server.recv(4096) == b"STOPPING=1\nSTATUS=bye"
    with pytest.raises(TimeoutError):
        server.recv(4096)
    server.close()


def test_a_dropped_notifier_closes_its_socket(tmp_path: Path) -> None:
    """A notifier dropped without close() (and one alive at exit) still closes its socket: with
    ResourceWarnings made errors, the interpreter reports none."""
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    code = (
        "from linegate.service.notify import Notifier\n"
        "n = Notifier(); n.ready('x'); del n\n"
        "kept = Notifier(); kept.stopping('bye')\n"
    )
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", code],
        capture_output=True, text=True, timeout=60, env={"NOTIFY_SOCKET": str(path), "PATH": "/usr/bin:/bin"},
    )
    server.close()
    assert done.returncode == 0 and "ResourceWarning" not in done.stderr, done.stderr
