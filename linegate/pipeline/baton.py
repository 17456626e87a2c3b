"""Handing a worker's role to its successor at a safe boundary (reload without dropping frames)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

from linegate.errors import LinegateError

HANDOVER_TIMEOUT_S = 10.0
"""How long a successor waits for the holder to let go; then it gives up (:class:`HandoverTimeout`)."""


class HandoverTimeout(LinegateError):
    """The holder did not let go in time. The successor must not take over: the holder is alive
    (a model run or PLC call that hangs), and two workers in one role would decide or pulse the
    same frames twice. The successor exits, the reload is refused, and a holder that hangs on
    stops its heartbeat and is killed and restarted by the supervisor (its frames recovered)."""


@dataclass(frozen=True)
class Baton:
    """Two events shared by a worker and, later, its successor (picklable at spawn)."""

    handover: Any  # set by the successor: finish the current frame or pulse, then let go
    released: Any  # set by the holder once it has let go, or as it exits for any reason

    @classmethod
    def create(cls, ctx: BaseContext) -> Baton:
        return cls(ctx.Event(), ctx.Event())

    def should_hand_over(self) -> bool:
        return bool(self.handover.is_set())

    def take(self, beat: Callable[[], None], timeout_s: float, role: str) -> None:
        """Successor side: ask the holder to let go and wait for it, calling *beat* meanwhile (the
        role's heartbeat: a holder finishing its frame is not stalled). Raises HandoverTimeout
        (the request withdrawn) if it did not let go within *timeout_s*."""
        self.handover.set()
        end = time.monotonic() + timeout_s
        while not self.released.wait(0.01):
            beat()
            if time.monotonic() >= end:
                self.handover.clear()  # a holder that comes back keeps its role
                if self.released.is_set():  # it let go just now: taken after all (the supervisor
                    self.handover.set()  # reads the request to tell a hand-over from a crash)
                    return
                raise HandoverTimeout(
                    f"the running {role} worker did not let go of its role within {timeout_s:g} s (a model "
                    "run or PLC call that hangs?); it keeps the role and this successor exits, so the "
                    "reload is refused; if it hangs on, its heartbeat stops and it is restarted"
                )
