"""Bounded polling: finished work is always taken, unfinished work is given up at the deadline, not
before, and a long wait sleeps between polls instead of burning a core."""

from __future__ import annotations

from linegate.timing.clock import ManualClock
from linegate.timing.polling import wait_until


class FakeWork:
    """Work that finishes at *done_at_ns* on a manual clock; counts polls; sleeping advances the clock."""

    def __init__(self, clock: ManualClock, done_at_ns: int) -> None:
        self.clock, self.done_at_ns, self.polls, self.sleeps = clock, done_at_ns, 0, []

    def done(self) -> bool:
        self.polls += 1
        self.clock.advance(1_000)  # a poll takes 1 us
        return self.clock.now_ns() >= self.done_at_ns

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(round(seconds * 1e9))


def test_wait_until_returns_true_when_work_finishes_in_time() -> None:
    """Work done before the deadline: True, found by polling, without sleeping through the spin phase."""
    clock = ManualClock()
    work = FakeWork(clock, done_at_ns=300_000)
    assert wait_until(work.done, 1_000_000, clock=clock, spin_ns=500_000, sleep=work.sleep)
    assert work.sleeps == [] and 300 <= work.polls <= 301


def test_wait_until_gives_up_at_the_deadline_not_before() -> None:
    """Work not done by the deadline: False, after a last poll at or past it, never sleeping past it."""
    clock = ManualClock()
    work = FakeWork(clock, done_at_ns=10_000_000)
    assert not wait_until(work.done, 2_000_000, clock=clock, spin_ns=100_000, sleep_s=300e-6, sleep=work.sleep)
    assert 2_000_000 <= clock.now_ns() <= 2_000_000 + 2_000  # one poll past the deadline at most
    assert work.sleeps and max(work.sleeps) <= 300e-6
    assert sum(work.sleeps) <= 2_000_000 / 1e9  # the sleeps stop at the deadline


def test_wait_until_sleeps_between_polls_after_the_spin() -> None:
    """After spin_ns of back-to-back polls the wait sleeps sleep_s between polls (does not burn a core)."""
    clock = ManualClock()
    work = FakeWork(clock, done_at_ns=5_000_000)
    assert wait_until(work.done, 10_000_000, clock=clock, spin_ns=1_000_000, sleep_s=100e-6, sleep=work.sleep)
    assert 1_000 <= work.polls < 1_000 + 45  # ~1000 spinning polls, then one per 100 us
    assert work.sleeps and all(s == 100e-6 for s in work.sleeps)


def test_wait_until_with_the_deadline_passed_still_takes_finished_work() -> None:
    """A deadline already past: one poll; finished work is taken, unfinished is given up at once."""
    clock = ManualClock(5_000_000)
    assert wait_until(lambda: True, 1_000_000, clock=clock)
    work = FakeWork(clock, done_at_ns=10**12)
    assert not wait_until(work.done, 1_000_000, clock=clock, sleep=work.sleep)
    assert work.polls == 1 and work.sleeps == []
