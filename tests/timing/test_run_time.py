"""The expected path time follows a machine that slows down, never below the warm-up's figure, and
forgets runs older than its horizon."""

from __future__ import annotations

from linegate.timing.run_time import EVERY, HORIZON_NS, WINDOW, PathTime

MS = 1_000_000


def test_it_starts_at_the_warm_up_p99_and_is_recomputed_every_few_frames() -> None:
    path = PathTime(10 * MS)
    assert path.expected_ns == 10 * MS and path.slowdown == 1.0
    recomputed = [path.observe(30 * MS, i * MS) for i in range(EVERY)]
    assert recomputed == [False] * (EVERY - 1) + [True]
    assert path.expected_ns == 30 * MS and path.slowdown == 3.0


def test_a_faster_machine_never_lowers_it_below_the_warm_up() -> None:
    path = PathTime(10 * MS)
    for i in range(WINDOW):
        path.observe(2 * MS, i * MS)
    assert path.expected_ns == 10 * MS


def test_it_is_the_p99_of_the_last_window_so_one_outlier_in_a_window_does_not_count() -> None:
    """64 recent times: p99 is the second largest, so a single hiccup is ignored, two are not, and
    times older than the window are forgotten."""
    path = PathTime(1 * MS)
    for i in range(WINDOW):
        path.observe(50 * MS if i == 5 else 4 * MS, i * MS)
    assert path.expected_ns == 4 * MS
    for i in range(WINDOW):
        path.observe(50 * MS if i in (3, 40) else 4 * MS, i * MS)
    assert path.expected_ns == 50 * MS
    for i in range(WINDOW):
        path.observe(6 * MS, i * MS)
    assert path.expected_ns == 6 * MS


def test_with_no_run_for_its_horizon_it_falls_back_to_the_warm_up() -> None:
    """Stalls raised it past what any frame can afford, so no frame runs and no faster time can come:
    after the horizon without a run it is the warm-up's figure again."""
    path = PathTime(10 * MS)
    for _ in range(EVERY):
        path.observe(80 * MS, 5 * MS)
    assert path.expected_ns == 80 * MS
    assert not path.expire(5 * MS + HORIZON_NS - 1)
    assert path.expire(5 * MS + HORIZON_NS)
    assert path.expected_ns == 10 * MS
    assert not path.expire(10 * HORIZON_NS), "already at the warm-up's figure"
