"""ParallelRuns: one-frame runs on threads of their own, started one by one and collected as each
ends, without waiting for the others (model.parallel)."""

from __future__ import annotations

import threading
import time

from linegate.engine.parallel_runs import ParallelRuns


def test_the_runs_overlap_and_each_end_wakes_the_loop() -> None:
    """Two runs wait at one barrier for each other: run one after the other, the barrier would break
    (its timeout) and both would end with BrokenBarrierError. Each end calls wake once."""
    barrier = threading.Barrier(2, timeout=10)
    woken: list[int] = []
    runs = ParallelRuns([barrier.wait, barrier.wait], wake=lambda: woken.append(1))
    try:
        assert [runs.start(), runs.start()] == [0, 1]
        assert runs.next_idle() is None and runs.busy == 2
        ended = runs.finished(10.0)
        while len(ended) < 2:
            ended += runs.finished(10.0)
    finally:
        runs.close()
    assert sorted(i for i, _t, _exc in ended) == [0, 1]
    assert all(exc is None for _i, _t, exc in ended)
    assert len(woken) == 2 and runs.busy == 0


def test_a_run_that_ends_first_is_collected_while_the_other_still_runs() -> None:
    """Session 1's quick run is returned (and its session idle again) while session 0 is still
    running: nothing waits for the slowest, unlike a side-by-side batch."""
    release = threading.Event()
    runs = ParallelRuns([lambda: release.wait(10), lambda: None], wake=lambda: None)
    try:
        runs.start()
        runs.start()
        (quick,) = runs.finished(5.0)
        assert quick[0] == 1 and runs.busy == 1 and runs.next_idle() == 1
        release.set()
        (slow,) = runs.finished(5.0)
        assert slow[0] == 0 and slow[1] > quick[1] and runs.busy == 0
    finally:
        release.set()
        runs.close()


def test_a_failing_run_is_returned_with_its_error_and_its_session_serves_again() -> None:
    """An exception in a run is not raised on the session's thread: it comes back with the run's
    end, so the loop fails that one frame safe; the session then runs the next frame."""
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("session 0 broke")

    runs = ParallelRuns([flaky], wake=lambda: None)
    try:
        runs.start()
        ((i, _t, exc),) = runs.finished(5.0)
        assert i == 0 and isinstance(exc, RuntimeError) and "session 0 broke" in str(exc)
        runs.start()
        ((_i, _t, again),) = runs.finished(5.0)
        assert again is None and len(calls) == 2
    finally:
        runs.close()


def test_close_lets_the_run_under_way_end_first() -> None:
    """close() returns only once a run under way has ended: the engine's buffers it writes into
    are closed after it."""
    ended: list[float] = []

    def slow() -> None:
        time.sleep(0.3)
        ended.append(time.monotonic())

    runs = ParallelRuns([slow], wake=lambda: None)
    runs.start()
    time.sleep(0.05)
    runs.close()
    assert len(ended) == 1, "close() returned before the run ended"
