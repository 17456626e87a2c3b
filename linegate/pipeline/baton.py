"""Handing a worker's role to its successor at a safe boundary (reload without dropping frames)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

HANDOVER_TIMEOUT_S = 10.0
"""How long a successor waits for the holder to let go before taking over anyway."""


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

    def take(self, beat: Callable[[], None], timeout_s: float) -> bool:
        """Successor side: ask the holder to let go and wait for it; False if it did not in time."""
        self.handover.set()
        end = time.monotonic() + timeout_s
        while not self.released.wait(0.01):
            beat()
            if time.monotonic() >= end:
                return False
        return True
