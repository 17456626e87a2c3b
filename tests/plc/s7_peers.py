"""Real S7 peers on loopback for tests: two independent S7 servers, a holding proxy and a silent peer.

- :class:`PySnap7Server`: python-snap7 3.3.0's threaded server, in this process; its data block is a
  bytearray the test reads directly. Known quirks: after ``stop()`` an open connection is still
  answered once (its handler only checks the stop flag between requests), a write running past the
  end of a DB is applied up to the end and then answered with an error, and bit writes overwrite the
  whole byte.
- :class:`NativeSnap7Server`: the native C snap7 server (python-snap7 2.0.2 bundles libsnap7.so, x86_64
  only) in a process of its own, run from a venv of its own (same distribution name as 3.3.0).
- :class:`HoldingProxy`: a TCP proxy in front of a server that can hold back the server's replies
  (a PLC that stops answering mid-session), and later deliver them late.
- :class:`SilentPeer`: accepts TCP connections, reads everything, never answers.
"""

from __future__ import annotations

import contextlib
import fcntl
import platform
import queue
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

from snap7.server import Server
from snap7.type import SrvArea

REPO = Path(__file__).resolve().parents[2]
NATIVE_VENV = REPO / ".venv-snap7native"
NATIVE_PYTHON = NATIVE_VENV / "bin" / "python"
NATIVE_SERVER_SCRIPT = Path(__file__).with_name("snap7_native_server.py")
NATIVE_REQUIREMENT = "python-snap7==2.0.2"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A loopback port nothing listens on (connects are refused)."""
    return free_port()


class PySnap7Server:
    """python-snap7 3.3.0's server on 127.0.0.1 serving ``db`` (a bytearray) as data block ``db_number``."""

    def __init__(self, db_number: int = 100, size: int = 256, port: int | None = None) -> None:
        self.db_number = db_number
        self.db = bytearray(size)
        self.port = port if port is not None else free_port()
        self.server = Server(log=False)
        self.server.register_area(SrvArea.DB, db_number, self.db)
        self.start()

    def start(self) -> None:
        """Listen (again) on the same port, serving the same bytearray."""
        self.server.start_to("127.0.0.1", self.port)

    def stop(self) -> None:
        self.server.stop()

    def add_db(self, db_number: int, size: int) -> bytearray:
        """Serve one more data block while running; returns its bytearray."""
        data = bytearray(size)
        self.server.register_area(SrvArea.DB, db_number, data)
        return data

    def client_count(self) -> int:
        return int(self.server.get_status()[2])


def native_unavailable() -> str | None:
    """None when the native snap7 server can run here, else why not (creates its venv on first use)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"python-snap7 2.0.2 ships libsnap7 for x86_64 Linux only (this is {sys.platform}/{platform.machine()})"
    return _ensure_native_venv()


@cache
def _ensure_native_venv() -> str | None:
    """Create .venv-snap7native with python-snap7 2.0.2 unless done; None on success, else why it failed."""
    NATIVE_VENV.mkdir(exist_ok=True)
    ready = NATIVE_VENV / ".linegate-ready"
    with (NATIVE_VENV / ".linegate-lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs must not build it twice at once
        if ready.exists():
            return None
        steps = [
            [sys.executable, "-m", "venv", str(NATIVE_VENV)],
            [str(NATIVE_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check", NATIVE_REQUIREMENT],
            [str(NATIVE_PYTHON), "-c", "import snap7.server; snap7.server.Server(log=False).destroy()"],
        ]
        for step in steps:
            try:
                done = subprocess.run(step, capture_output=True, text=True, timeout=300)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"cannot set up {NATIVE_VENV.name} ({NATIVE_REQUIREMENT}): {exc}"
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
                return f"cannot set up {NATIVE_VENV.name} ({NATIVE_REQUIREMENT}): {' '.join(step[:3])}... {tail}"
        ready.write_text(NATIVE_REQUIREMENT + "\n")
    return None


class NativeSnap7Server:
    """The native snap7 server (libsnap7 via python-snap7 2.0.2) serving one data block, in its own process."""

    def __init__(self, db_number: int = 100, size: int = 256) -> None:
        reason = native_unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        self.db_number = db_number
        self.size = size
        output: list[str] = []
        for _attempt in range(5):  # the free port can be taken before the server binds it
            self.port = free_port()
            command = [str(NATIVE_PYTHON), str(NATIVE_SERVER_SCRIPT), "--port", str(self.port)]
            self.proc = subprocess.Popen(
                [*command, "--db", str(db_number), "--size", str(size)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            self._lines: queue.Queue[str | None] = queue.Queue()
            threading.Thread(target=self._read_stdout, daemon=True).start()
            first = self._line(timeout_s=30)
            if first == f"listening {self.port}":
                return
            self.proc.kill()
            self.proc.wait()
            output = [first or ""]
            while (line := self._line(timeout_s=1)) is not None:
                output.append(line)
        raise RuntimeError("native snap7 server did not start: " + "\n".join(output)[-2000:])

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def _line(self, timeout_s: float = 10) -> str | None:
        try:
            return self._lines.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def _command(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self._line()
        if answer is None:
            raise RuntimeError(f"native snap7 server gave no answer to {command!r}")
        return answer

    def dump(self) -> bytes:
        """The data block's current bytes, as the server holds them."""
        answer = self._command("dump")
        if not answer.startswith("db "):
            raise RuntimeError(f"unexpected answer to dump: {answer!r}")
        return bytes.fromhex(answer[3:])

    def set(self, start: int, data: bytes) -> None:
        """Write *data* into the data block directly (as the PLC program would)."""
        if self._command(f"set {start} {data.hex()}") != "ok":
            raise RuntimeError("set failed")

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # end of input stops the server cleanly
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _Service:
    """A loopback listener served by one background thread polling a selector."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = int(self.listener.getsockname()[1])
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self.tick()
            for key, _ in self.selector.select(timeout=0.02):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        conn, _addr = self.listener.accept()
                        conn.setblocking(False)
                        self.accepted(conn)
                else:
                    key.data(key.fileobj)
        for key in list(self.selector.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()

    def accepted(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        """Called by the service thread at least every 20 ms."""

    def drop(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        sock.close()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)


class SilentPeer(_Service):
    """Accepts TCP connections and reads whatever arrives; never sends a byte."""

    def __init__(self) -> None:
        self.received = 0
        super().__init__()

    def accepted(self, conn: socket.socket) -> None:
        self.selector.register(conn, selectors.EVENT_READ, self._read)

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
        self.received += len(data)


class HoldingProxy(_Service):
    """Forwards TCP between clients and ``127.0.0.1:upstream_port``; ``hold()`` keeps the replies back."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._held = threading.Event()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._backlog: dict[socket.socket, bytearray] = {}  # replies held back, per client socket
        super().__init__()

    def hold(self) -> None:
        """From now on, keep the server's replies back (the client sees a PLC that stopped answering)."""
        self._held.set()

    def release(self) -> None:
        """Deliver the held replies (late) and forward normally again."""
        self._held.clear()

    def accepted(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        upstream.setblocking(False)
        self._peers[conn], self._peers[upstream] = upstream, conn
        self._backlog[conn] = bytearray()
        self.selector.register(conn, selectors.EVENT_READ, self._pump)
        self.selector.register(upstream, selectors.EVENT_READ, self._pump)

    def _pump(self, sock: socket.socket) -> None:
        other = self._peers.get(sock)
        if other is None:  # its partner closed earlier in the same select round
            return
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            for s in (sock, other):
                self._peers.pop(s, None)
                self._backlog.pop(s, None)
                self.drop(s)
            return
        if other in self._backlog:  # a reply, going to the client
            backlog = self._backlog[other]
            backlog += data
            if self._held.is_set():
                return
            data = bytes(backlog)
            backlog.clear()
        with contextlib.suppress(OSError):
            other.sendall(data)

    def tick(self) -> None:
        if self._held.is_set():
            return
        for client, backlog in self._backlog.items():  # replies held until release() go out late
            if backlog:
                data = bytes(backlog)
                backlog.clear()
                with contextlib.suppress(OSError):
                    client.sendall(data)


def wait_until(predicate: Callable[[], object], timeout_s: float = 5.0) -> bool:
    """Poll *predicate* until it is true or *timeout_s* passes."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())
