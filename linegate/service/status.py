"""Why linegate is not inspecting, and the one-line status shown by ``systemctl status`` (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from linegate.counters import Count, Snapshot


def fault_reasons(
    s: Snapshot,
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
    if s[Count.CAMERA_DOWN]:
        out.append("camera down, reconnecting")
    if plc_unreachable_s is not None:
        out.append(f"PLC unreachable for {plc_unreachable_s:.0f} s, reconnecting")
    if s[Count.PLC_ALIVE_STALE]:
        out.append("PLC alive counter stale (PLC program not taking results)")
    if s[Count.RECIPE_UNKNOWN]:
        out.append(f"PLC recipe {s[Count.PLC_RECIPE] - 1} has no model in the configuration")
    if s[Count.RECIPE_FAILED]:
        out.append(f"PLC recipe {s[Count.RECIPE_FAILED] - 1} could not be applied; the previous model runs")
    if s[Count.PLC_OFFLINE]:
        out.append("offline: the PLC's control word asks for no results")
    if s[Count.AWAITING_PART_ID]:
        out.append("camera waiting for the PLC's first part id (plc.part_ids = plc)")
    return out


def fps_between(s: Snapshot, previous: Snapshot | None, dt_s: float) -> float:
    """Frames decided per second between two snapshots *dt_s* apart."""
    if previous is None or dt_s <= 0:
        return 0.0
    c = Count
    return (s[c.DECIDED] + s[c.DROPPED] - previous[c.DECIDED] - previous[c.DROPPED]) / dt_s


def status_line(s: Snapshot, previous: Snapshot | None, dt_s: float, faults: Sequence[str]) -> str:
    """Fault state first (what maintenance needs), then throughput, rejects and deadline misses."""
    c = Count
    done = s[c.DECIDED] + s[c.DROPPED]
    fps = fps_between(s, previous, dt_s)
    state = "FAULT: " + ", ".join(faults) if faults else "inspecting"
    plc = "plc connected" if s[c.PLC_CONNECTED] else "PLC DISCONNECTED"
    return (
        f"{state} | {fps:.1f} fps | frames {done} | rejects {s[c.REJECTED]} (delivered {s[c.PLC_DELIVERED]}, "
        f"undelivered {s[c.PLC_UNDELIVERED] + s[c.PLC_QUEUE_FULL]}) | deadline misses "
        f"{s[c.DEADLINE_MISSED] + s[c.DEADLINE_UNREACHABLE]} | dropped {s[c.DROPPED]} | {plc} | "
        f"restarts {s[c.WORKER_RESTARTS]} | log lost {s.log_queue_full + s.log_write_failed}"
    )
