"""The hand-over of a worker's role at a reload (Baton): the successor asks, the holder accepts and
lets go at a frame boundary. A holder that does not accept in time keeps its role: the successor
gives up with an error naming the role instead of taking over beside a live holder (two workers in
one role would decide or pulse the same frames twice). Accepting is a commit: a holder that
accepted just before the successor's deadline is waited for, never left without a successor.
Real processes and multiprocessing events."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import pytest

from linegate.pipeline.baton import Baton, HandoverTimeout

CTX = mp.get_context("spawn")


def holder(baton: Baton, accept_after_s: float, release_after_s: float | None, up: Any) -> None:
    """A worker holding the role: once asked, it goes on for *accept_after_s* (a frame under way),
    accepts, and lets go *release_after_s* later (None: hangs in its drain for ever); or, with a
    negative *accept_after_s*, never looks at the request (a model run that hangs)."""
    up.set()
    while not baton.handover.is_set():
        time.sleep(0.002)
    if accept_after_s < 0:
        time.sleep(30)
        return
    time.sleep(accept_after_s)
    if not baton.should_hand_over():
        time.sleep(30)  # the request was withdrawn: it keeps its role
        return
    if release_after_s is None:
        time.sleep(30)
        return
    time.sleep(release_after_s)
    baton.released.set()


def start(baton: Baton, accept_after_s: float, release_after_s: float | None) -> mp.process.BaseProcess:
    """The holder process, running (so that its timings count from the request)."""
    up = CTX.Event()
    proc = CTX.Process(target=holder, args=(baton, accept_after_s, release_after_s, up))
    proc.start()
    assert up.wait(30)
    return proc


def stop(proc: mp.process.BaseProcess) -> None:
    proc.kill()
    proc.join(5)


def test_a_holder_that_lets_go_hands_over() -> None:
    baton = Baton.create()
    proc = start(baton, 0.0, 0.0)
    try:
        baton.take(10.0, "inference")
        assert baton.released.is_set() and baton.accepted.is_set()
        assert baton.handover.is_set()  # the supervisor reads a clean exit as a hand-over by it
    finally:
        stop(proc)


def test_a_holder_that_does_not_let_go_keeps_its_role_and_the_successor_gives_up() -> None:
    """After the timeout the successor raises HandoverTimeout naming the role and withdraws the
    request (the holder, if it comes back, goes on)."""
    baton = Baton.create()
    proc = start(baton, -1.0, None)
    try:
        t0 = time.monotonic()
        with pytest.raises(HandoverTimeout, match=r"the running inference worker did not let go .* within 0.3 s"):
            baton.take(0.3, "inference")
        assert time.monotonic() - t0 >= 0.3
        assert not baton.handover.is_set() and not baton.accepted.is_set() and not baton.released.is_set()
        assert proc.is_alive()  # nothing was done to it: the supervisor judges it by its heartbeat
        assert not baton.should_hand_over()  # what it finds when it comes back: keep the role
    finally:
        stop(proc)


def test_a_holder_that_accepts_just_before_the_deadline_is_waited_for() -> None:
    """The holder accepts 0.2 s into a 1 s wait and takes 1 s more to let go (a drain): the
    successor takes the role after the deadline instead of giving up on a holder already letting
    go (which would leave the role to nobody)."""
    baton = Baton.create()
    proc = start(baton, 0.2, 1.0)
    try:
        t0 = time.monotonic()
        baton.take(1.0, "inference")
        assert time.monotonic() - t0 >= 1.1
        assert baton.released.is_set() and baton.handover.is_set()
    finally:
        stop(proc)


def test_a_holder_that_accepts_and_then_hangs_is_given_up_on_after_twice_the_timeout() -> None:
    """Accepted, never released: the successor waits twice the timeout, then gives up with the
    request left standing (the holder is committed; the supervisor restarts it when it stops
    beating or exits)."""
    baton = Baton.create()
    proc = start(baton, 0.0, None)
    try:
        t0 = time.monotonic()
        with pytest.raises(HandoverTimeout, match=r"began to let go of its role but did not finish within 0.6 s"):
            baton.take(0.3, "PLC")
        assert time.monotonic() - t0 >= 0.6
        assert baton.accepted.is_set() and baton.handover.is_set() and not baton.released.is_set()
    finally:
        stop(proc)


def crashing_holder(baton: Baton, up: Any) -> None:
    """A holder that fails while the successor waits: its exit sets released (as a worker's
    ``finally`` does) without having accepted."""
    up.set()
    while not baton.handover.is_set():
        time.sleep(0.002)
    baton.released.set()
    raise SystemExit(1)


def test_a_holder_that_exits_without_accepting_is_not_taken_over() -> None:
    """released without accepted (a crash, or a stop) is no hand-over: the successor raises, so
    that it never works beside the worker the supervisor restarts in the crashed one's place."""
    baton = Baton.create()
    up = CTX.Event()
    proc = CTX.Process(target=crashing_holder, args=(baton, up))
    proc.start()
    try:
        assert up.wait(30)
        with pytest.raises(HandoverTimeout, match="the running inference worker exited without handing over"):
            baton.take(10.0, "inference")
        assert not baton.handed_over()
    finally:
        proc.join(5)
    assert proc.exitcode == 1


def dies_holding_the_lock(baton: Baton, up: Any) -> None:
    baton.lock.acquire()
    up.set()
    time.sleep(30)


def test_a_baton_lock_left_held_by_a_dead_process_is_recovered() -> None:
    """A process killed inside the baton's lock (microseconds, but an OOM kill can land there):
    recover() frees it and withdraws a request nobody accepted, so the holder goes on without
    waiting on the lock at every turn and a successor can give up."""
    baton = Baton.create()
    up = CTX.Event()
    proc = CTX.Process(target=dies_holding_the_lock, args=(baton, up))
    proc.start()
    assert up.wait(30)
    proc.kill()
    proc.join(5)
    baton.handover.set()  # a successor's request, standing
    baton.recover()
    assert not baton.handover.is_set() and not baton.accepted.is_set()
    assert baton.lock.acquire(timeout=0.1)
    baton.lock.release()
