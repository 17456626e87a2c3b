"""A frame's reject received a second time is recognised, within the rejects remembered."""

from __future__ import annotations

from linegate.plc.recent_rejects import RecentRejects


def test_a_frame_seen_again_is_not_new_and_others_are() -> None:
    recent = RecentRejects(size=4)
    frames = [(1, 11), (2, 12), (1, 11), (3, 13), (2, 12), (2, 99)]  # (seq, part id)
    assert [recent.first_time(*f) for f in frames] == [True, True, False, True, False, True]


def test_only_the_last_rejects_are_remembered() -> None:
    recent = RecentRejects(size=2)
    assert recent.first_time(1, 1) and recent.first_time(2, 2) and recent.first_time(3, 3)  # 1 forgotten
    assert recent.first_time(1, 1)
    assert not recent.first_time(3, 3)
