"""The native (C) snap7 server serving one data block: an S7 peer independent of python-snap7 3.3.0.

Runs under python-snap7 2.0.2 (which bundles libsnap7.so), in its own venv: see ``s7_peers.py``.
It prints ``listening <port>`` once serving, then answers one line per command on stdin:

- ``dump``: ``db <hex>``, the whole data block;
- ``set <start> <hex>``: writes bytes into the block, ``ok``.

End of stdin stops the server, so it never outlives the test process that started it.
"""

from __future__ import annotations

import argparse
import ctypes
import sys

from snap7.server import Server
from snap7.type import SrvArea


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    block = (ctypes.c_ubyte * args.size)()
    server = Server(log=False)  # log=True would call into Python for every event
    server.register_area(SrvArea.DB, args.db, block)
    server.start_to("127.0.0.1", args.port)
    print(f"listening {args.port}", flush=True)
    try:
        for line in sys.stdin:
            command = line.split()
            if command == ["dump"]:
                server.lock_area(SrvArea.DB, args.db)
                try:
                    data = bytes(block)
                finally:
                    server.unlock_area(SrvArea.DB, args.db)
                print(f"db {data.hex()}", flush=True)
            elif len(command) == 3 and command[0] == "set":
                start, data = int(command[1]), bytes.fromhex(command[2])
                server.lock_area(SrvArea.DB, args.db)
                try:
                    ctypes.memmove(ctypes.addressof(block) + start, data, len(data))
                finally:
                    server.unlock_area(SrvArea.DB, args.db)
                print("ok", flush=True)
            else:
                print(f"error unknown command {line.strip()!r}", flush=True)
    finally:
        server.stop()
        server.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
