"""libmodbus's unit-test-server, built from Debian's libmodbus-dev examples: an independent Modbus peer.

It listens on 127.0.0.1:1502, serves one connection and exits when it closes. It prints every
request it receives as ``<hex>`` bytes, which is how tests see what reached it. Its map: coils at
0x130..0x154, holding registers 0x160..0x17F. A write to coil 0x132 is one of its built-in faults
in releases newer than Debian 12's 3.1.6 (answered with exception 3 after it injects a wrong
length); coils outside its map answer exception 2 (illegal data address).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXAMPLES = Path("/usr/share/doc/libmodbus-dev/examples")
PORT = 1502
BITS_ADDRESS = 0x130
BITS_ADDRESS_FAULT = 0x132
REGISTERS_ADDRESS = 0x160
_REQUEST = re.compile(r"^((?:<[0-9A-F]{2}>)+)$")


def available() -> str | None:
    """None when the server can be built here, else why not."""
    if not (EXAMPLES / "unit-test-server.c").is_file():
        return "libmodbus-dev examples are not installed (apt-get install libmodbus-dev)"
    if shutil.which("gcc") is None:
        return "gcc is not installed"
    return None


def lacks_coil_fault() -> str | None:
    """None when this libmodbus's server injects its fault on coil 0x132 (newer releases), else why
    not (Debian 12's 3.1.6 serves that coil like any other)."""
    if available() is not None:
        return available()
    sources = "".join((EXAMPLES / name).read_text() for name in ("unit-test.h", "unit-test-server.c"))
    if "UT_BITS_ADDRESS_INVALID_REQUEST_LENGTH" in sources:
        return None
    return f"this libmodbus's unit-test-server ({EXAMPLES}) has no fault on coil 0x132 (newer releases have one)"


def build(out_dir: Path) -> Path:
    binary = out_dir / "unit-test-server"
    if not binary.exists():
        subprocess.run(
            [
                "gcc",
                "-O1",
                "-I/usr/include/modbus",
                str(EXAMPLES / "unit-test-server.c"),
                "-o",
                str(binary),
                "-lmodbus",
            ],
            check=True,
            capture_output=True,
        )
    return binary


def listening(port: int) -> bool:
    """True when a socket listens on *port* (read from /proc: probing would use up its one connection)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(wanted) and fields[3] == "0A":
                return True
    return False


class LibmodbusServer:
    """A running unit-test-server and the requests it has printed."""

    def __init__(self, binary: Path, log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(["stdbuf", "-oL", str(binary), "tcp"], stdout=self._out, stderr=subprocess.STDOUT)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if listening(PORT):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"unit-test-server did not listen on 127.0.0.1:{PORT} (see {log})")

    def requests(self) -> list[bytes]:
        """Every request frame the server received, in order."""
        frames = []
        for line in self.log.read_text().splitlines():
            if _REQUEST.match(line.strip()):
                frames.append(bytes(int(h, 16) for h in re.findall(r"<([0-9A-F]{2})>", line)))
        return frames

    def coil_writes(self) -> list[tuple[int, bool]]:
        """(address, value) of every write-single-coil request received."""
        out = []
        for f in self.requests():
            if len(f) >= 12 and f[7] == 0x05:
                out.append((int.from_bytes(f[8:10], "big"), f[10] == 0xFF))
        return out

    def register_writes(self) -> list[tuple[int, list[int]]]:
        """(address, values) of every write-multiple-registers request received."""
        out = []
        for f in self.requests():
            if len(f) >= 13 and f[7] == 0x10:
                count = int.from_bytes(f[10:12], "big")
                values = [int.from_bytes(f[13 + 2 * i : 15 + 2 * i], "big") for i in range(count)]
                out.append((int.from_bytes(f[8:10], "big"), values))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._out.close()


@contextmanager
def libmodbus_server(build_dir: Path) -> Iterator[LibmodbusServer]:
    server = LibmodbusServer(build(build_dir), build_dir / "server.log")
    try:
        yield server
    finally:
        server.stop()
