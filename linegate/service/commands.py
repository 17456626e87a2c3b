"""``linegate status`` and ``linegate reload``: what maintenance staff run against the live service.

Both read the state file the running supervisor rewrites every second
(:mod:`linegate.service.state_file`). Exit codes follow systemd's LSB convention where one exists:
0 running and inspecting / reload applied, 1 faulted / reload refused, 3 not running, 4 unknown
instance (several running, none named).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, TextIO

from linegate.service.state_file import instances, read_state, running, state_path

EXIT_OK, EXIT_FAULT, EXIT_NOT_RUNNING, EXIT_UNKNOWN = 0, 1, 3, 4


def _live(directory: Path | None) -> list[tuple[str, dict[str, Any]]]:
    """``(name, state)`` of every instance whose state file belongs to a running linegate."""
    return [(name, st) for name in instances(directory)
            if (st := read_state(state_path(name, directory))) is not None and running(st)]  # fmt: skip


def _find(instance: str | None, directory: Path | None, err: TextIO) -> tuple[str | None, int]:
    if instance is not None:
        return instance, EXIT_OK
    live = [name for name, _st in _live(directory)]
    if len(live) == 1:
        return live[0], EXIT_OK
    if not live:
        print("linegate is not running (no live instance found)", file=err)
        return None, EXIT_NOT_RUNNING
    print(f"several linegate instances run: {', '.join(live)}; name one with --instance", file=err)
    return None, EXIT_UNKNOWN


def _ago(unix: float) -> str:
    s = max(0.0, time.time() - unix)
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago"


def status_text(st: dict[str, Any]) -> str:
    """A short human summary of one state (maintenance reads this, not JSON)."""
    state = str(st["state"]).upper()
    lines = [f"linegate {st['instance']}: {state}" + (f" - {', '.join(st['faults'])}" if st["faults"] else "")]
    lines.append(f"  up {st['uptime_s'] / 60:.1f} min, pid {st['pid']}, model {st['model']}, PLC {st['plc']} "
                 f"({'connected' if st['plc_connected'] else 'NOT CONNECTED'})")
    undelivered = f", UNDELIVERED {st['undelivered']}" if st["undelivered"] else ""
    lines.append(
        f"  {st['fps']:.1f} fps, frames {st['frames']}, rejects {st['rejects']} "
        f"(delivered {st['delivered']}{undelivered})"
    )
    lines.append(
        f"  deadline misses {st['deadline_misses']}, dropped {st['dropped']}, worker restarts {st['restarts']}"
    )
    for cam in st.get("cameras", []):
        state = "inspecting" if cam["inspecting"] else "NOT INSPECTING"
        down = ", CAMERA DOWN" if cam["camera_down"] else ""
        plc = "" if cam["plc_connected"] else ", PLC NOT CONNECTED"
        undelivered = f", UNDELIVERED {cam['plc_undelivered']}" if cam["plc_undelivered"] else ""
        lines.append(f"  camera {cam['name']}: {state}{down}{plc}, frames {cam['decided']}, rejects {cam['rejected']} "
                     f"(delivered {cam['plc_delivered']}{undelivered})")  # fmt: skip
    last = st.get("last_restart")
    if last:
        lines.append(f"  last restart: {last['role']} worker, {_ago(last['unix'])}: {last['reason']}")
    if st["undelivered"]:
        lines.append("  parts to pull by hand: journalctl -u linegate | grep reject_undelivered")
    return "\n".join(lines)


def status_command(instance: str | None, out: TextIO, err: TextIO, directory: Path | None = None) -> int:
    """Print the live service's state; 0 inspecting, 1 faulted or starting, 3 not running."""
    name, code = _find(instance, directory, err)
    if name is None:
        return code
    st = read_state(state_path(name, directory))
    if st is None or not running(st):
        print(f"linegate {name} is not running" + (" (its state file is stale)" if st else ""), file=out)
        return EXIT_NOT_RUNNING
    print(status_text(st), file=out)
    return EXIT_OK if st["state"] == "inspecting" else EXIT_FAULT


def status_all_command(out: TextIO, err: TextIO, directory: Path | None = None) -> int:
    """Every live instance's state (a station running one per camera): 0 only if each one inspects,
    1 if any does not, 3 if none runs."""
    live = _live(directory)
    if not live:
        print("linegate is not running (no live instance found)", file=err)
        return EXIT_NOT_RUNNING
    for _name, st in live:
        print(status_text(st), file=out)
    not_inspecting = [name for name, st in live if st["state"] != "inspecting"]
    print(f"{len(live)} instance(s) running; "
          + (f"NOT inspecting: {', '.join(not_inspecting)}" if not_inspecting else "all inspecting"), file=out)
    return EXIT_FAULT if not_inspecting else EXIT_OK


def reload_command(
    instance: str | None, out: TextIO, err: TextIO, timeout_s: float = 25.0, directory: Path | None = None
) -> int:
    """SIGHUP the live service and wait for the outcome: 0 applied, 1 refused (why is printed),
    3 not running, 2 no answer within *timeout_s*."""
    name, code = _find(instance, directory, err)
    if name is None:
        return code
    path = state_path(name, directory)
    st = read_state(path)
    if st is None or not running(st):
        print(f"linegate {name} is not running: nothing to reload", file=err)
        return EXIT_NOT_RUNNING
    before = int(st["reload"]["requested"])
    os.kill(int(st["pid"]), signal.SIGHUP)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        time.sleep(0.05)
        st = read_state(path)
        if st is None:
            print(f"linegate {name} stopped while reloading", file=err)
            return EXIT_NOT_RUNNING
        r = st["reload"]
        if r["answered"] > before:
            if r["outcome"] == "applied":
                print(f"linegate {name}: reload applied (model {st['model']})", file=out)
                return EXIT_OK
            print(f"linegate {name}: reload REFUSED, nothing changed: {r['error']}", file=err)
            return EXIT_FAULT
    print(f"linegate {name}: no reload outcome within {timeout_s:.0f} s (see journalctl -u linegate)", file=err)
    return 2
