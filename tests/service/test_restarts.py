"""The restart budget: N restarts within a sliding window, then no more."""

from __future__ import annotations

from linegate.service.restarts import RestartBudget

S = 1_000_000_000


def test_allows_up_to_the_limit_within_the_window_then_refuses() -> None:
    """Three restarts in 10 s are allowed with limit 3; the fourth inside the window is refused."""
    budget = RestartBudget(3, 10 * S)
    assert [budget.allow(t * S) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert budget.used(3 * S) == 3


def test_old_restarts_leave_the_window() -> None:
    """A restart older than the window no longer counts against the limit."""
    budget = RestartBudget(2, 10 * S)
    assert budget.allow(0) and budget.allow(5 * S)
    assert not budget.allow(9 * S)
    assert budget.allow(10 * S)  # the one at t=0 has left the window
    assert budget.used(10 * S) == 2


def test_zero_limit_never_restarts() -> None:
    """restart_limit = 0 means the first worker death is fatal."""
    assert not RestartBudget(0, S).allow(0)
