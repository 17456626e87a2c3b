"""Fault times over a run: what the final summary says about faults (pure)."""

from __future__ import annotations

from linegate.service.faults import FaultTimes

S = 1_000_000_000


def test_times_and_episodes_add_up_per_kind_and_open_ones_are_marked() -> None:
    """Two camera outages (3 s + 2 s), a PLC outage still present at the end with a changing reason text."""
    f = FaultTimes()
    f.update([], 0)
    f.update(["camera down, reconnecting"], 1 * S)
    f.update([], 4 * S)
    f.update(["camera down, reconnecting", "PLC unreachable for 1 s, reconnecting"], 6 * S)
    f.update(["PLC unreachable for 2 s, reconnecting"], 8 * S)
    assert f.active == ["PLC unreachable"]
    assert f.report(10 * S) == [
        "camera down, reconnecting: 5.0 s in all, 2 times",
        "PLC unreachable: 4.0 s in all, 1 time, still at the end",
    ]


def test_a_run_without_faults_reports_none() -> None:
    """No reasons ever: nothing to report, nothing active."""
    f = FaultTimes()
    for t in range(5):
        f.update([], t * S)
    assert f.report(5 * S) == [] and f.active == []
