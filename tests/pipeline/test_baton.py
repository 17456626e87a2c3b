"""The hand-over of a worker's role at a reload (Baton): the successor asks, the holder lets go at a
frame boundary. A holder that does not let go in time keeps its role: the successor gives up with
an error naming the role instead of taking over beside a live holder (two workers in one role
would decide or pulse the same frames twice). Real processes and multiprocessing events."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from linegate.pipeline.baton import Baton, HandoverTimeout

CTX = mp.get_context("spawn")


def holder(baton: Baton, lets_go: bool) -> None:
    """A worker holding the role: lets go once asked (or never), then exits."""
    while not baton.should_hand_over():
        time.sleep(0.005)
    if lets_go:
        baton.released.set()
        return
    time.sleep(30)  # a model run that hangs


def test_a_holder_that_lets_go_hands_over() -> None:
    baton = Baton.create(CTX)
    proc = CTX.Process(target=holder, args=(baton, True))
    proc.start()
    try:
        beats: list[float] = []
        baton.take(lambda: beats.append(time.monotonic()), 10.0, "inference")
        assert baton.released.is_set() and baton.handover.is_set()  # the supervisor reads it as a hand-over
    finally:
        proc.join(5)
    assert proc.exitcode == 0


def test_a_holder_that_does_not_let_go_keeps_its_role_and_the_successor_gives_up() -> None:
    """After the timeout the successor raises HandoverTimeout naming the role, having called its beat
    while it waited, and withdraws the request (the holder, if it comes back, goes on)."""
    baton = Baton.create(CTX)
    proc = CTX.Process(target=holder, args=(baton, False))
    proc.start()
    try:
        beats: list[float] = []
        t0 = time.monotonic()
        with pytest.raises(HandoverTimeout, match=r"the running inference worker did not let go .* within 0.3 s"):
            baton.take(lambda: beats.append(time.monotonic()), 0.3, "inference")
        assert time.monotonic() - t0 >= 0.3
        assert beats and not baton.handover.is_set() and not baton.released.is_set()
        assert proc.is_alive()  # nothing was done to it: the supervisor judges it by its heartbeat
    finally:
        proc.kill()
        proc.join(5)
