"""The one-line status shown by ``systemctl status`` and printed each second (pure)."""

from __future__ import annotations


def fault_reasons(s: dict[str, int], restarting: list[str]) -> list[str]:
    """Why linegate is not inspecting right now; empty when it is."""
    out = [f"{role} worker restarting" for role in restarting]
    if s["camera_down"]:
        out.append("camera down, reconnecting")
    if s["plc_alive_stale"]:
        out.append("PLC alive counter stale (PLC program not taking results)")
    if s["recipe_unknown"]:
        out.append(f"PLC recipe {s['plc_recipe'] - 1} has no model in the configuration")
    return out


def status_line(s: dict[str, int], previous: dict[str, int] | None, dt_s: float, restarting: list[str]) -> str:
    """Fault state first (what maintenance needs), then throughput, rejects and deadline misses."""
    done = s["decided"] + s["dropped"]
    fps = (done - (previous["decided"] + previous["dropped"])) / dt_s if previous is not None and dt_s > 0 else 0.0
    faults = fault_reasons(s, restarting)
    state = "FAULT: " + ", ".join(faults) if faults else "inspecting"
    plc = "plc connected" if s["plc_connected"] else "PLC DISCONNECTED"
    return (
        f"{state} | {fps:.1f} fps | frames {done} | rejects {s['rejected']} (delivered {s['plc_delivered']}, "
        f"undelivered {s['plc_undelivered'] + s['plc_queue_full']}) | deadline misses "
        f"{s['deadline_missed'] + s['deadline_unreachable']} | dropped {s['dropped']} | {plc} | "
        f"restarts {s['worker_restarts']} | log lost {s['log_queue_full'] + s['log_write_failed']}"
    )
