"""deadline.backlog: with frames waiting, "newest_first" decides the newest by the model and gives
the fail-safe verdict at once to those too old to make it after it; "oldest_first" goes in order.
In-process loop on a real ring and the demo's ONNX Runtime engine."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from linegate.config import Config
from linegate.counters import Count
from tests.pipeline.loop_rig import loop_on_a_ring

MS = 1_000_000


def run_backlog(tmp_path: Path, demo_config: Config, backlog: str, ages_ms: list[float]) -> list[dict[str, object]]:
    """Publish one frame per age (acquired that long ago, oldest first), then let the loop step
    until every one has its verdict; the frame records in the order they were written."""
    deadline = demo_config.deadline.model_copy(update={"backlog": backlog, "budget_ms": 50.0})
    cfg = demo_config.model_copy(update={"deadline": deadline})
    with loop_on_a_ring(cfg, tmp_path / f"{backlog}.jsonl", slots=8) as rig:
        loop = rig.loop
        loop.warm_up(20)
        loop.expected_ns = 5 * MS  # as if the model took 5 ms: stale = older than 50 - 2 x 5 = 40 ms
        now = time.monotonic_ns()
        for part, age in enumerate(ages_ms, start=1):
            rig.publish(part, now - int(age * MS))
        decided = 0
        while decided < len(ages_ms):
            rig.consumer.wait(0.2)  # a stale frame's wake-up is spent by the step that claimed it with the newest
            loop.step()
            decided = loop.counters.get(Count.DECIDED)
    return rig.frame_records()


def test_newest_first_decides_the_newest_and_fails_safe_the_stale(tmp_path: Path, demo_config: Config) -> None:
    """Frames 45, 42 and 41 ms old cannot make a 50 ms deadline after a 5 ms run and their own: the
    fail-safe verdict, at once; the newest (1 ms) is decided by the model first, then the 20 ms one."""
    frames = run_backlog(tmp_path, demo_config, "newest_first", [45, 42, 41, 20, 1])
    by_part = {r["part_id"]: r for r in frames}
    assert sorted(by_part) == [1, 2, 3, 4, 5]
    assert [by_part[p]["basis"] for p in (1, 2, 3)] == ["deadline_unreachable"] * 3
    assert [by_part[p]["verdict"] for p in (1, 2, 3)] == ["reject"] * 3  # the demo's fail-safe
    assert by_part[5]["basis"] == "model" and by_part[4]["basis"] == "model"
    order = [r["part_id"] for r in frames]
    assert order.index(5) < order.index(4), order


@pytest.mark.parametrize("backlog", ["oldest_first", "newest_first"])
def test_without_a_backlog_both_orders_decide_every_frame(tmp_path: Path, demo_config: Config, backlog: str) -> None:
    """Fresh frames: both orders decide all of them by the model; oldest_first in part order."""
    frames = run_backlog(tmp_path, demo_config, backlog, [3, 2, 1])
    assert sorted(r["part_id"] for r in frames) == [1, 2, 3]
    assert all(r["basis"] == "model" for r in frames)
    if backlog == "oldest_first":
        assert [r["part_id"] for r in frames] == [1, 2, 3]
