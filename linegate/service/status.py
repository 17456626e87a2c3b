"""Why linegate is not inspecting, and the one-line status shown by ``systemctl status`` (pure)."""

from __future__ import annotations

from collections.abc import Sequence


def fault_reasons(
    s: dict[str, int],
    restarting: Sequence[str],
    stalled: Sequence[str] = (),
    plc_unreachable_s: float | None = None,
) -> list[str]:
    """Why linegate is not inspecting right now; empty when it is.

    *restarting*: workers not up; *stalled*: up but their loop stopped turning;
    *plc_unreachable_s*: how long the PLC link has been down, once that counts as a fault.
    """
    out = [f"{role} worker restarting" for role in restarting]
    out += [f"{role} worker stalled" for role in stalled if role not in restarting]
    if s["camera_down"]:
        out.append("camera down, reconnecting")
    if plc_unreachable_s is not None:
        out.append(f"PLC unreachable for {plc_unreachable_s:.0f} s, reconnecting")
    if s["plc_alive_stale"]:
        out.append("PLC alive counter stale (PLC program not taking results)")
    if s["recipe_unknown"]:
        out.append(f"PLC recipe {s['plc_recipe'] - 1} has no model in the configuration")
    return out


def fps_between(s: dict[str, int], previous: dict[str, int] | None, dt_s: float) -> float:
    """Frames decided per second between two snapshots *dt_s* apart."""
    if previous is None or dt_s <= 0:
        return 0.0
    return (s["decided"] + s["dropped"] - previous["decided"] - previous["dropped"]) / dt_s


def status_line(s: dict[str, int], previous: dict[str, int] | None, dt_s: float, faults: Sequence[str]) -> str:
    """Fault state first (what maintenance needs), then throughput, rejects and deadline misses."""
    done = s["decided"] + s["dropped"]
    fps = fps_between(s, previous, dt_s)
    state = "FAULT: " + ", ".join(faults) if faults else "inspecting"
    plc = "plc connected" if s["plc_connected"] else "PLC DISCONNECTED"
    return (
        f"{state} | {fps:.1f} fps | frames {done} | rejects {s['rejected']} (delivered {s['plc_delivered']}, "
        f"undelivered {s['plc_undelivered'] + s['plc_queue_full']}) | deadline misses "
        f"{s['deadline_missed'] + s['deadline_unreachable']} | dropped {s['dropped']} | {plc} | "
        f"restarts {s['worker_restarts']} | log lost {s['log_queue_full'] + s['log_write_failed']}"
    )
