"""The STATUS line: fault state first, then throughput, rejects, deadline misses, PLC link."""

from __future__ import annotations

from linegate.counters import Count, Snapshot
from linegate.service.status import fault_reasons, status_line


def snapshot(**values: int) -> Snapshot:
    return Snapshot.of({Count[name.upper()]: value for name, value in values.items()})


def test_healthy_line_has_fps_rejects_and_misses() -> None:
    """Inspecting: fps from the frame delta, rejects with delivery, deadline misses, PLC connected."""
    prev = snapshot(decided=100)
    now = snapshot(decided=300, dropped=0, rejected=50, plc_delivered=49, plc_undelivered=1, deadline_missed=2,
                   deadline_unreachable=1, plc_connected=1)  # fmt: skip
    line = status_line(now, prev, 2.0, fault_reasons(now, []))
    assert line.startswith("inspecting | 100.0 fps | frames 300 | rejects 50 (delivered 49, undelivered 1)")
    assert "deadline misses 3" in line and "plc connected" in line


def test_faults_lead_the_line() -> None:
    """Camera down and a restarting worker are named first; a lost PLC link is shouted."""
    s = snapshot(camera_down=1)
    faults = fault_reasons(s, ["infer"])
    assert faults == ["infer worker restarting", "camera down, reconnecting"]
    line = status_line(s, None, 0.0, faults)
    assert line.startswith("FAULT: infer worker restarting, camera down, reconnecting |")
    assert "PLC DISCONNECTED" in line


def test_every_fault_kind_is_named() -> None:
    """A stalled worker, an unreachable PLC, a stale PLC alive counter, an unknown or failed recipe,
    offline by the PLC and a camera waiting for the PLC's part id each have a reason."""
    s = snapshot(plc_alive_stale=1, recipe_unknown=1, plc_recipe=8, recipe_failed=4, plc_offline=1, awaiting_part_id=1)
    assert fault_reasons(s, [], ["acquire"], 3.2) == [
        "acquire worker stalled",
        "PLC unreachable for 3 s, reconnecting",
        "PLC alive counter stale (PLC program not taking results)",
        "PLC recipe 7 has no model in the configuration",
        "PLC recipe 3 could not be applied; the previous model runs",
        "offline: the PLC's control word asks for no results",
        "camera waiting for the PLC's first part id (plc.part_ids = plc)",
    ]
    assert fault_reasons(snapshot(), [], [], None) == []
