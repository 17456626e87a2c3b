"""A recording, fault-injecting Modbus TCP server written in C on libmodbus (``recording_server.c``).

The wrapper builds the server with gcc (cached by a hash of the source and flags), starts it on a free
loopback port and parses what it printed. The server prints one line per event, flushed at once; the
record is printed when the request is applied, before its reply is sent (and before any delay):

    PORT <port>                             first line
    C <t_ns> <conn> <peer_port>             client connected
    D <t_ns> <conn>                         connection closed
    W <t_ns> <fc> <addr> <count> <v0> ...   write applied (coils 0/1; FC22: resulting value; FC23: write part)
    R <t_ns> <fc> <addr> <count>            read answered
    E <t_ns> <fc> <addr> <count> <code>     answered with a Modbus exception, not applied
    S <t_ns> <fc> <addr> <count>            swallowed while stalled: not applied, never answered
    U <t_ns>                                resumed from the stall (SIGUSR1)

t_ns is CLOCK_MONOTONIC, the clock of ``time.monotonic_ns()``. Map: 256 coils and 256 holding registers
(all 0 at start), 16 discrete inputs (odd addresses on), 16 input registers (register i holds 0x100 + i).
Requests are counted 1, 2, ... over all connections. A delayed reply holds back its own connection only:
the server keeps serving the others (see the comment at the top of the C source).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

SOURCE = Path(__file__).with_name("recording_server.c")
HEADERS = Path("/usr/include/modbus")
CFLAGS = ["-O2", "-Wall", "-Wextra", f"-I{HEADERS}"]
LIBS = ["-lmodbus"]
N_COILS = 256
N_HOLDING = 256
COIL_FCS = (5, 15)
REGISTER_FCS = (6, 16, 22, 23)


def available() -> str | None:
    """None when the server can be built here, else why not."""
    if shutil.which("gcc") is None:
        return "gcc is not installed"
    if not (HEADERS / "modbus.h").is_file():
        return "libmodbus headers are not installed (apt-get install libmodbus-dev)"
    if not SOURCE.is_file():
        return f"{SOURCE} is missing"
    return None


def build(out_dir: Path) -> Path:
    """Compile the server into *out_dir* (once per source version) and return the binary."""
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS + LIBS).encode()).hexdigest()[:16]
    binary = out_dir / f"recording_server-{digest}"
    if binary.exists():
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    # Compile to a private name and rename: a parallel build of the same source never sees half a file.
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=".recording_server-")
    os.close(fd)
    try:
        done = subprocess.run(
            ["gcc", *CFLAGS, str(SOURCE), "-o", tmp_name, *LIBS], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"building {SOURCE.name} failed:\n{done.stderr}")
        os.replace(tmp_name, binary)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return binary


@dataclass(frozen=True)
class Record:
    """One line the server printed (see the module docstring); fields a kind lacks are 0 or empty."""

    kind: str
    t_ns: int
    fc: int = 0
    addr: int = 0
    count: int = 0
    values: tuple[int, ...] = ()
    code: int = 0
    conn: int = 0
    peer_port: int = 0

    def covers(self, addr: int) -> bool:
        return self.addr <= addr < self.addr + self.count


def parse_line(line: str) -> Record | None:
    """The record of one printed line, None for the PORT line or a line it does not know."""
    f = line.split()
    if len(f) < 2 or f[0] == "PORT":
        return None
    kind, t_ns, nums = f[0], int(f[1]), [int(x) for x in f[2:]]
    if kind in ("W", "R", "S") and len(nums) >= 3:
        return Record(kind, t_ns, fc=nums[0], addr=nums[1], count=nums[2], values=tuple(nums[3:]))
    if kind == "E" and len(nums) == 4:
        return Record(kind, t_ns, fc=nums[0], addr=nums[1], count=nums[2], code=nums[3])
    if kind == "C" and len(nums) == 2:
        return Record(kind, t_ns, conn=nums[0], peer_port=nums[1])
    if kind == "D" and len(nums) == 1:
        return Record(kind, t_ns, conn=nums[0])
    if kind == "U":
        return Record(kind, t_ns)
    return None


class RecordingServer:
    """A running recording_server, its records, and its controls. Use as a context manager or call stop().

    Faults (all off by default), as the server's flags: delay_ms, delay_share (0..1), seed, delay_fc,
    delay_on_only, exception_fc with exception_code, stall_after, drop_after, short_reply_fc,
    short_reply_on_only.
    """

    def __init__(
        self,
        build_dir: Path,
        *,
        port: int = 0,
        delay_ms: int | None = None,
        delay_share: float | None = None,
        seed: int | None = None,
        delay_fc: int | None = None,
        delay_on_only: bool = False,
        exception_fc: int | None = None,
        exception_code: int | None = None,
        stall_after: int | None = None,
        drop_after: int | None = None,
        short_reply_fc: int | None = None,
        short_reply_on_only: bool = False,
        log: Path | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        binary = build(build_dir)
        args = [str(binary), "--port", str(port)]
        flags: list[tuple[str, int | float | None]] = [
            ("--delay-ms", delay_ms),
            ("--delay-share", delay_share),
            ("--seed", seed),
            ("--delay-fc", delay_fc),
            ("--exception-fc", exception_fc),
            ("--exception-code", exception_code),
            ("--stall-after", stall_after),
            ("--drop-after", drop_after),
            ("--short-reply-fc", short_reply_fc),
        ]
        for flag, value in flags:
            if value is not None:
                args += [flag, str(value)]
        if delay_on_only:
            args.append("--delay-on-only")
        if short_reply_on_only:
            args.append("--short-reply-on-only")
        self.args = args
        if log is None:
            fd, name = tempfile.mkstemp(dir=build_dir, prefix="recording-", suffix=".log")
            os.close(fd)
            log = Path(name)
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT)
        self.port = 0
        end = time.monotonic() + start_timeout
        while time.monotonic() < end:
            for line in self._lines():
                if line.startswith("PORT "):
                    self.port = int(line.split()[1])
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        self.stop()
        raise RuntimeError(f"recording_server did not print its port ({' '.join(args)}):\n{self.log.read_text()}")

    # -- records ---------------------------------------------------------------------------------------

    def _lines(self) -> list[str]:
        text = self.log.read_text(errors="replace")
        # A line still being written has no newline yet: leave it for the next call.
        return text.split("\n")[:-1]

    def records(self) -> list[Record]:
        """Every record printed so far, in order."""
        out = []
        for line in self._lines():
            rec = parse_line(line)
            if rec is not None:
                out.append(rec)
        return out

    def writes(self) -> list[Record]:
        """Applied writes (W records)."""
        return [r for r in self.records() if r.kind == "W"]

    def reads(self) -> list[Record]:
        """Answered reads (R records)."""
        return [r for r in self.records() if r.kind == "R"]

    def exceptions(self) -> list[Record]:
        """Requests answered with a Modbus exception (E records)."""
        return [r for r in self.records() if r.kind == "E"]

    def swallowed(self) -> list[Record]:
        """Requests read while stalled and never answered (S records)."""
        return [r for r in self.records() if r.kind == "S"]

    def connections(self) -> list[Record]:
        """Connects (C) and disconnects (D), in order."""
        return [r for r in self.records() if r.kind in ("C", "D")]

    def coil_edges(self, coil: int) -> list[tuple[int, bool]]:
        """(t_ns, new value) each time an applied write (FC5, FC15) changed *coil*; coils start off."""
        state = False
        edges: list[tuple[int, bool]] = []
        for r in self.writes():
            if r.fc in COIL_FCS and r.covers(coil):
                value = bool(r.values[coil - r.addr])
                if value != state:
                    edges.append((r.t_ns, value))
                    state = value
        return edges

    def register_writes(self, addr: int) -> list[tuple[int, int]]:
        """(t_ns, value) of every applied write to holding register *addr* (FC6, FC16, FC22, FC23)."""
        return [(r.t_ns, r.values[addr - r.addr]) for r in self.writes() if r.fc in REGISTER_FCS and r.covers(addr)]

    def wait_for(self, predicate: Callable[[list[Record]], bool], timeout: float = 5.0) -> list[Record]:
        """The records once *predicate* holds for them; TimeoutError after *timeout* seconds."""
        end = time.monotonic() + timeout
        while True:
            recs = self.records()
            if predicate(recs):
                return recs
            if time.monotonic() > end:
                raise TimeoutError(f"recording_server records did not match in {timeout} s: {recs}")
            time.sleep(0.005)

    # -- control ---------------------------------------------------------------------------------------

    def stall_resume(self, timeout: float = 5.0) -> None:
        """End the stall (SIGUSR1) for good, and wait until the server says it resumed."""
        self.proc.send_signal(signal.SIGUSR1)
        self.wait_for(lambda recs: any(r.kind == "U" for r in recs), timeout)

    def pause(self) -> None:
        """Freeze the whole process (SIGSTOP): a hung peer, its sockets still open."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo pause() (SIGCONT)."""
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM (after SIGCONT, in case it is paused), wait, kill if it hangs; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._out.closed:
            self._out.close()
        return self.proc.returncode

    def __enter__(self) -> RecordingServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
