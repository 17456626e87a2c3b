"""Handing a worker's role to its successor at a safe boundary (reload without dropping frames)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from linegate.errors import LinegateError
from linegate.ring.sync import SharedEvent, SharedLock, free_abandoned

HANDOVER_TIMEOUT_S = 10.0
"""How long a successor waits for the holder to let go; then it gives up (:class:`HandoverTimeout`)."""
LOCK_TIMEOUT_S = 0.5
"""The baton's lock is held for a few instructions; a holder killed inside them must not block."""


class HandoverTimeout(LinegateError):
    """The holder did not let go in time. The successor must not take over: the holder is alive
    (a model run or PLC call that hangs), and two workers in one role would decide or pulse the
    same frames twice. The successor exits, the reload is refused, and a holder that hangs on
    stops its heartbeat and is killed and restarted by the supervisor (its frames recovered)."""


@dataclass(frozen=True)
class Baton:
    """Shared by a worker and, later, its successor (picklable at spawn). Letting go is a commit:
    the holder accepts under the lock, so a successor cannot give up on a holder that is already
    letting go (nobody would hold the role), nor a holder accept a request already withdrawn."""

    handover: SharedEvent  # set by the successor: finish the current frame or pulse, then let go
    released: SharedEvent  # set by the holder once it has let go, or as it exits for any reason
    accepted: SharedEvent  # set by the holder as it starts letting go (it then must hand over)
    lock: SharedLock  # makes accepting and withdrawing the request exclusive

    @classmethod
    def create(cls) -> Baton:
        """A new baton (unnamed primitives: a service killed whole leaves nothing behind)."""
        return cls(SharedEvent(), SharedEvent(), SharedEvent(), SharedLock())

    def should_hand_over(self) -> bool:
        """Holder side: True once a successor asks, and from then the holder has accepted: it
        must let go (finish its frame or pulse, hand over, exit)."""
        if not self.handover.is_set():
            return False
        if not self.lock.acquire(timeout=LOCK_TIMEOUT_S):
            return False  # a successor holds it only for a moment: the next call decides
        try:
            if self.handover.is_set():  # not withdrawn meanwhile
                self.accepted.set()
            return bool(self.accepted.is_set())
        finally:
            self.lock.release()

    def take(self, timeout_s: float, role: str) -> None:
        """Successor side: ask the holder to let go and wait for it. Raises HandoverTimeout (the
        request withdrawn) if it has not accepted within *timeout_s*; once it has, waits for it
        to finish letting go up to *timeout_s* more. Nothing here beats the role's heartbeat: a
        holder that hangs must show as stalled."""
        self.handover.set()
        end = time.monotonic() + timeout_s
        while not self.released.wait(0.01):
            if time.monotonic() < end:
                continue
            if time.monotonic() >= end + timeout_s:  # bounded, whatever holds the lock
                if self.accepted.is_set():  # committed: the request stands (it exits when done)
                    raise HandoverTimeout(
                        f"the running {role} worker began to let go of its role but did not finish within "
                        f"{2 * timeout_s:g} s; this successor exits, so the reload is refused; the "
                        "supervisor restarts that worker once its heartbeat stops or it exits"
                    )
                self.handover.clear()  # its lock left held by a process killed inside it
                raise HandoverTimeout(f"the running {role} worker did not let go of its role within "
                                      f"{2 * timeout_s:g} s; this successor exits, so the reload is refused")
            if self.accepted.is_set():  # letting go: wait for it, bounded (above)
                continue
            if self._withdraw():
                raise HandoverTimeout(
                    f"the running {role} worker did not let go of its role within {timeout_s:g} s (a model "
                    "run or PLC call that hangs?); it keeps the role and this successor exits, so the "
                    "reload is refused; if it hangs on, its heartbeat stops and it is restarted"
                )
        if not self.accepted.is_set():  # it exited without letting go: a crash, or stopped
            raise HandoverTimeout(f"the running {role} worker exited without handing over its role; this "
                                  "successor exits, so the reload is refused (the supervisor restarts the role)")

    def handed_over(self) -> bool:
        """Whether the holder let go of its role to a successor (accepted, then released): a
        worker that exits so, with any exit code, left nothing in flight of its own."""
        return bool(self.accepted.is_set() and self.released.is_set())

    def recover(self) -> None:
        """After a process using this baton died: free its lock if the dead one held it (it is
        held for microseconds at a time; any process may release it), and withdraw a request
        nobody accepted (a dead successor's)."""
        free_abandoned(self.lock)
        if not self.lock.acquire(timeout=LOCK_TIMEOUT_S):
            return
        try:
            if not self.accepted.is_set():
                self.handover.clear()
        finally:
            self.lock.release()

    def _withdraw(self) -> bool:
        """Withdraw the request unless the holder has accepted it meanwhile; True if withdrawn."""
        if not self.lock.acquire(timeout=LOCK_TIMEOUT_S):
            return False  # try again on the next turn
        try:
            if self.accepted.is_set():
                return False
            self.handover.clear()
            return True
        finally:
            self.lock.release()


class LetGo:
    """*baton*'s hand-over request as a flag for a loop that polls ``is_set()`` (the PLC worker):
    set means the holder has accepted it."""

    def __init__(self, baton: Baton) -> None:
        self._baton = baton

    def is_set(self) -> bool:
        return self._baton.should_hand_over()
