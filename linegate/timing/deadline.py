"""Per-frame deadlines and the verdict a frame gets when it runs out of time (pure logic).

A frame's deadline is absolute: its acquisition time plus the budget. The loop asks two questions
of it: is it still worth starting the model (enough time left for a typical run), and, once the
model answered, was the answer in time. Either "no" gives the configured fail-safe verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(str, Enum):
    """What happens to the part."""

    PASS = "pass"
    REJECT = "reject"


class Basis(str, Enum):
    """Why a frame got its verdict."""

    MODEL = "model"
    """The model decided in time."""
    DEADLINE_MISSED = "deadline_missed"
    """The model answered after the deadline; the fail-safe verdict was used."""
    DEADLINE_UNREACHABLE = "deadline_unreachable"
    """Too little time was left to run the model; the fail-safe verdict was used without it."""
    DROPPED = "dropped"
    """The ring was full; the frame never reached the model."""
    LOST_IN_FLIGHT = "lost_in_flight"
    """The inference worker died while holding the frame."""
    ENGINE_ERROR = "engine_error"
    """The engine raised on this frame."""
    INCOMPLETE_FRAME = "incomplete_frame"
    """The camera delivered the frame incomplete or with a payload of the wrong size; it was not inspected.
    (Members keep their order: a basis's index is its code in the PLC interface, so new ones go last.)"""


FAIL_SAFE_BASES = frozenset(Basis) - {Basis.MODEL}


@dataclass(frozen=True)
class Deadline:
    """An absolute point on the monotonic clock by which a frame must be decided."""

    at_ns: int

    @classmethod
    def for_frame(cls, t_acquired_ns: int, budget_ns: int) -> Deadline:
        return cls(t_acquired_ns + budget_ns)

    def remaining_ns(self, now_ns: int) -> int:
        return self.at_ns - now_ns

    def met(self, now_ns: int) -> bool:
        return now_ns <= self.at_ns

    def worth_starting(self, now_ns: int, expected_ns: int) -> bool:
        """True when a run expected to take *expected_ns* can finish by the deadline."""
        return now_ns + expected_ns <= self.at_ns


def settle(model_verdict: Verdict, deadline: Deadline, decided_ns: int, fail_safe: Verdict) -> tuple[Verdict, Basis]:
    """The verdict that stands for a frame the model answered at *decided_ns*."""
    if deadline.met(decided_ns):
        return model_verdict, Basis.MODEL
    return fail_safe, Basis.DEADLINE_MISSED
