"""SideBySide: a batch's one-frame runs at the same time, and nothing returned before all ended."""

from __future__ import annotations

import threading
import time

import pytest

from linegate.engine.side_by_side import SideBySide


def test_the_runs_overlap_in_time() -> None:
    """Each call waits at one barrier for the others: were they run one after another, the barrier
    would break (its timeout) and the batch would raise."""
    runner = SideBySide(3)
    barrier = threading.Barrier(3, timeout=10)
    ran: list[int] = []
    try:
        runner.run([lambda: ran.append(barrier.wait())] * 3)
    finally:
        runner.close()
    assert sorted(ran) == [0, 1, 2]


def test_a_failure_is_raised_only_after_every_run_ended() -> None:
    """The first exception reaches the caller, but only once the slower helper is done (it may be
    writing into buffers the caller reads next)."""
    runner = SideBySide(2)
    finished: list[str] = []

    def slow() -> None:
        time.sleep(0.2)
        finished.append("slow")

    def fails() -> None:
        raise RuntimeError("row 0 broke")

    try:
        with pytest.raises(RuntimeError, match="row 0 broke"):
            runner.run([fails, slow])
        assert finished == ["slow"]
        with pytest.raises(ValueError, match="row 1 broke"):
            runner.run([lambda: None, lambda: (_ for _ in ()).throw(ValueError("row 1 broke"))])
    finally:
        runner.close()


def test_more_runs_than_its_width_are_refused() -> None:
    runner = SideBySide(2)
    try:
        with pytest.raises(ValueError, match="3 runs side by side, at most 2"):
            runner.run([lambda: None] * 3)
    finally:
        runner.close()
