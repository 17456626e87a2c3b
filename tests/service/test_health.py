"""Stall detection: a heartbeat older than the timeout, judged from the start when there is none."""

from __future__ import annotations

from linegate.service.health import stalled

MS = 1_000_000


def test_fresh_heartbeats_are_not_stalled() -> None:
    """Every worker that beat within the timeout is healthy."""
    beats = {"acquire": 990 * MS, "infer": 995 * MS, "plc": 900 * MS}
    assert stalled(beats, dict.fromkeys(beats, 0), 1000 * MS, 200 * MS) == {}


def test_old_heartbeat_is_stalled_with_its_age() -> None:
    """A heartbeat 300 ms old against a 200 ms timeout is reported with that age."""
    assert stalled({"infer": 700 * MS}, {"infer": 0}, 1000 * MS, 200 * MS) == {"infer": 300 * MS}


def test_no_heartbeat_since_start_counts_from_the_start() -> None:
    """A restarted worker whose predecessor's beat is old is judged from its own start time."""
    beats = {"plc": 100 * MS}  # the dead predecessor's last beat
    assert stalled(beats, {"plc": 900 * MS}, 1000 * MS, 200 * MS) == {}
    assert stalled(beats, {"plc": 700 * MS}, 1000 * MS, 200 * MS) == {"plc": 300 * MS}


def test_only_listed_workers_are_judged() -> None:
    """Workers not (yet) up are left out: their start-up has its own timeout."""
    assert stalled({"acquire": 0, "infer": 0}, {"infer": 999 * MS}, 1000 * MS, 200 * MS) == {}
