"""Run `linegate` as a real process against a real PLC simulator, and read its records back."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from linegate.demo.runner import PlcSimProcess, free_port
from tests.conftest import DEMO_CONFIG, unique_instance

MODEL = (DEMO_CONFIG.parent / ".." / "engines" / "demo" / "ball_zone.onnx").resolve()
WIDE_BUDGET = {"budget_ms = 50.0": "budget_ms = 500.0", "slots = 8": "slots = 64"}
"""Edits for a test whose claim is not about timing but needs every frame decided by the model through
a hand-over (a new process starting beside the loop): 500 ms and a ring of 64 frames at 100 fps, so
that a shared CI host's stall of a few tens of ms fails no frame (CI once saw one frame of 40 ms run
out of time in the reload test); a hand-over that stops deciding frames for longer still shows."""


def demo_config_file(
    tmp_path: Path, plc_port: int, replace: dict[str, str] | None = None, append: str = ""
) -> tuple[Path, str]:
    """A copy of config/demo.toml in *tmp_path* using *plc_port* and a fresh instance name, with
    *append* (more tables: recipes, stages) at its end."""
    instance = unique_instance()
    text = DEMO_CONFIG.read_text()
    edits = {
        'name = "demo"': f'name = "{instance}"',
        "port = 5020": f"port = {plc_port}",
        'path = "../engines/demo/ball_zone.onnx"': f'path = "{MODEL}"',
        **(replace or {}),
    }
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{instance}.toml"
    path.write_text(text + append)
    return path, instance


def run_linegate(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`linegate ARGS` to completion; *env* is added to this process's environment."""
    import os

    return subprocess.run(
        [sys.executable, "-m", "linegate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


STARTED: list[subprocess.Popen[str]] = []
"""Every linegate process a test started; the autouse fixture in tests/conftest.py kills leftovers,
so a failing test never leaves a pipeline running (and skewing every later measurement)."""


def kill_leftovers() -> None:
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_linegate(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "linegate", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    STARTED.append(proc)
    return proc


def records(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of *path* (a line still being written is left out)."""
    text = path.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET; records each message."""

    def __init__(self, path: Path) -> None:
        import socket
        import threading

        self.path = path
        self.messages: list[tuple[int, str]] = []  # (time.monotonic_ns() at receipt, message)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import time

        while not self._closed:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic_ns(), data.decode()))

    def times_of(self, field: str) -> list[int]:
        """Receipt times of messages carrying the line *field* (e.g. "WATCHDOG=1")."""
        return [t for t, m in list(self.messages) if field in m.split("\n")]

    def statuses(self) -> list[str]:
        return [line[7:] for _, m in list(self.messages) for line in m.split("\n") if line.startswith("STATUS=")]

    def close(self) -> None:
        self._closed = True
        self._thread.join(1)
        self._sock.close()


class LinegateRun:
    """`linegate run` as a real child process on a copy of the demo config, read through its log file."""

    def __init__(
        self,
        tmp_path: Path,
        plc_port: int,
        replace: dict[str, str] | None = None,
        *,
        notify: NotifySocket | None = None,
        watchdog_usec: int | None = None,
        stdout_file: Path | None = None,
        append: str = "",
        own_group: bool = False,
        prefix: tuple[str, ...] = (),
    ) -> None:
        """Records are read from ``--log-file`` (tmp_path/frames.jsonl), or from *stdout_file* if
        given (then no ``--log-file`` is passed, so the config's ``logging.file`` applies).
        *own_group*: linegate leads a process group of its own, for signals sent to the group.
        *prefix*: a command linegate runs under (e.g. ``setpriv`` dropping capabilities)."""
        import os

        self.config, self.instance = demo_config_file(tmp_path, plc_port, replace, append)
        self.log = stdout_file or tmp_path / "frames.jsonl"
        log_args = [] if stdout_file is not None else ["--log-file", str(self.log)]
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        if notify is not None:
            env["NOTIFY_SOCKET"] = str(notify.path)
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self._stdout = open(stdout_file, "w") if stdout_file is not None else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "linegate", "run", "--config", str(self.config), *log_args],
            stdout=self._stdout,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=own_group,
        )
        STARTED.append(self.proc)
        self.stderr = ""

    def records(self) -> list[dict[str, Any]]:
        return records(self.log) if self.log.exists() else []

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"] == name]

    def wait_for(self, predicate: Any, timeout_s: float = 60.0, what: str = "") -> None:
        import time

        end = time.monotonic() + timeout_s
        while not predicate():
            if self.proc.poll() is not None:
                raise AssertionError(f"linegate exited ({self.proc.returncode}) waiting for {what}: {self.finish()}")
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def wait_event(self, name: str, count: int = 1, timeout_s: float = 60.0) -> dict[str, Any]:
        self.wait_for(lambda: len(self.events(name)) >= count, timeout_s, f"{count} x {name}")
        return self.events(name)[count - 1]

    def frames(self) -> int:
        return sum(r["event"] == "frame" for r in self.records())

    def wait_frames(self, more: int, timeout_s: float = 60.0) -> None:
        target = self.frames() + more
        self.wait_for(lambda: self.frames() >= target, timeout_s, f"{target} frame records")

    def pid_of(self, role: str) -> int:
        """The newest worker process of *role*."""
        started = [r for r in self.records() if r["event"] == "worker_started" and r["role"] == role]
        return int(started[-1]["pid"])

    def finish(self, timeout_s: float = 60.0) -> str:
        """Wait for exit and return stderr (the final summary)."""
        try:
            _, self.stderr = self.proc.communicate(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            if self._stdout is not subprocess.DEVNULL:
                self._stdout.close()
        return self.stderr

    def stop(self, timeout_s: float = 60.0) -> str:
        """SIGTERM, then wait for the graceful stop."""
        import signal

        self.proc.send_signal(signal.SIGTERM)
        return self.finish(timeout_s)


LOSS_COUNTERS = ("log_dropped", "log_queue_full", "log_write_failed", "unresolved", "ring_lock_timeouts", "acq_lost")
"""Summary counters that tell where a frame's record went missing, printed when one is."""


def assert_every_frame_and_reject_accounted(recs: list[dict[str, Any]], pulses: list[int] | None = None) -> None:
    """The invariants every run must keep, whatever went wrong during it.

    One verdict and one record per acquired frame (part ids first..first + acquired - 1, each once); each reject
    ends in exactly one delivered or undelivered record; the counters reconcile; and every pulse
    linegate counts as delivered was seen by the PLC (*pulses*: rising-edge part ids there).
    """
    (summary,) = [r for r in recs if r["event"] == "run_summary"]
    assert summary["problems"] == [], summary["problems"]
    frames = [r for r in recs if r["event"] == "frame"]
    # frames that could get no verdict are reported by part id instead (a killed acquisition worker)
    reported = [r["part_id"] for r in recs if r["event"] == "frame_dropped"]
    reported += [p for r in recs if r["event"] == "frames_lost_in_flight" for p in r["part_ids"]]
    first = summary["part_id_base"] or 1  # plc.part_ids = "plc": the PLC's first id
    accounted = Counter([r["part_id"] for r in frames] + reported)
    expected = range(first, first + summary["acquired"])
    missing = [p for p in expected if p not in accounted]
    twice = sorted(p for p, n in accounted.items() if n > 1)
    extra = sorted(p for p in accounted if p not in expected)
    assert not (missing or twice or extra), (
        f"no verdict: {missing[:20]}; twice: {twice[:20]}; extra: {extra[:20]}; "
        + ", ".join(f"{k} {summary.get(k)}" for k in LOSS_COUNTERS)
    )
    rejected = sorted(r["part_id"] for r in frames if r["verdict"] == "reject")
    delivered = [r["part_id"] for r in recs if r["event"] == "reject_delivered"]
    undelivered = [r["part_id"] for r in recs if r["event"] == "reject_undelivered"]
    assert sorted(delivered + undelivered) == rejected
    assert summary["plc_delivered"] == len(delivered) and summary["plc_undelivered"] + summary["plc_queue_full"] == len(
        undelivered
    )
    if pulses is not None:
        assert set(delivered) <= set(pulses), sorted(set(delivered) - set(pulses))[:10]
        assert set(pulses) <= set(rejected)


def handshake_sim(*extra: str) -> PlcSimProcess:
    """A simulated PLC in handshake mode at the demo config's register base, on a free port."""
    return PlcSimProcess(free_port(), args=["--mode", "handshake", "--register-base", "100", *extra])
