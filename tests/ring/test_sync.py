"""The unnamed cross-process primitives (linegate.ring.sync), used between real spawned processes."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from typing import Any

import pytest

from linegate.ring.sync import PipeQueue, SharedEvent, SharedLock, SharedSemaphore, _Sem, free_abandoned

CTX = mp.get_context("spawn")


def _child(go: SharedEvent, done: SharedEvent, sem: SharedSemaphore, errors: PipeQueue) -> None:
    assert go.wait(20)
    for _ in range(3):
        sem.release()
    errors.put(("child", 78, "x" * 100_000))
    done.set()


def _take_and_hang(lock: SharedLock, sem: SharedSemaphore, holding: SharedEvent) -> None:
    lock.acquire()
    sem.acquire()
    holding.set()
    time.sleep(60)


def kill_holder(target: Any, *args: Any) -> int:
    """Run *target(*args, holding)* in a child, SIGKILL it once it holds what it takes; its pid."""
    holding = SharedEvent()
    proc = CTX.Process(target=target, args=(*args, holding))
    proc.start()
    assert holding.wait(20) and proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    return proc.pid


def shm() -> set[str]:
    return set(os.listdir("/dev/shm"))


def test_event_semaphore_and_queue_work_across_spawned_processes() -> None:
    """Event wakes a spawned child, its semaphore posts arrive, its long message arrives shortened."""
    before = shm()
    go, done, sem, errors = SharedEvent(), SharedEvent(), SharedSemaphore(0), PipeQueue(CTX)
    assert shm() == before  # nothing named in /dev/shm
    proc = CTX.Process(target=_child, args=(go, done, sem, errors))
    proc.start()
    t0 = time.monotonic()
    assert not done.wait(0.2) and 0.15 < time.monotonic() - t0 < 5
    go.set()
    assert done.wait(20) and go.is_set()
    assert all(sem.acquire(timeout=5) for _ in range(3)) and not sem.acquire(timeout=0.05)
    role, code, message = errors.get_nowait()
    assert (role, code) == ("child", 78) and message.startswith("xxx") and len(message) < 4096
    with pytest.raises(queue.Empty):
        errors.get_nowait()
    proc.join(20)
    assert proc.exitcode == 0
    errors.close()


def test_lock_and_semaphore_of_a_killed_holder_are_recoverable_and_leave_nothing() -> None:
    """A child SIGKILLed holding the lock: any process may release it, like multiprocessing's; /dev/shm unchanged."""
    before = shm()
    lock, sem = SharedLock(), SharedSemaphore(1)
    kill_holder(_take_and_hang, lock, sem)
    assert not lock.acquire(timeout=0.01) and not sem.acquire(block=False)
    lock.release()  # what FrameRing.recover_lock does
    with lock:
        pass
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()
    assert shm() == before


def test_pickling_outside_a_spawn_is_refused() -> None:
    """Like multiprocessing's primitives they travel only to a process being spawned (as its arguments)."""
    from multiprocessing.reduction import ForkingPickler

    for primitive in (SharedEvent(), SharedLock(), SharedSemaphore()):
        with pytest.raises(RuntimeError, match="inheritance"):
            ForkingPickler.dumps(primitive)


def _hold(lock: SharedLock, holding: SharedEvent, done: SharedEvent) -> None:
    lock.acquire()
    holding.set()
    done.wait(60)
    lock.release()


def test_a_lock_a_live_process_holds_is_never_freed_by_recovery() -> None:
    """The holder's pid is kept with the lock: recovery after some other process died leaves a live
    holder's lock alone, however long it is held (the old guess freed any lock held for 50 ms,
    and two processes then held it)."""
    lock, holding, done = SharedLock(), SharedEvent(), SharedEvent()
    proc = CTX.Process(target=_hold, args=(lock, holding, done))
    proc.start()
    assert holding.wait(20)
    assert lock.owner == proc.pid
    assert free_abandoned(lock) is False
    assert not lock.acquire(timeout=0.01)  # still held by the live process
    done.set()
    proc.join(20)
    assert proc.exitcode == 0 and lock.owner == 0
    assert free_abandoned(lock) is False  # free: nothing to recover
    with lock:
        assert lock.owner == os.getpid()


def test_a_lock_a_killed_process_held_is_freed_at_once() -> None:
    lock = SharedLock()
    pid = kill_holder(_take_and_hang, lock, SharedSemaphore(1))
    assert lock.owner == pid
    assert free_abandoned(lock, attempts=1, timeout_s=60) is True  # by the pid: no timed tries
    assert lock.owner == 0 and lock.acquire(timeout=1)
    lock.release()


def _take_without_naming_itself(lock: SharedLock, holding: SharedEvent) -> None:
    _Sem.acquire(lock)  # the semaphore only: as a holder killed before it wrote its pid
    holding.set()
    time.sleep(60)


def test_a_lock_held_without_a_holder_named_is_freed_after_the_timed_tries() -> None:
    """A holder killed between taking the lock and writing its pid: no pid to go by, so the lock is
    tried for the timed attempts and, held throughout, freed."""
    lock = SharedLock()
    kill_holder(_take_without_naming_itself, lock)
    assert lock.owner == 0
    assert free_abandoned(lock, attempts=3, timeout_s=0.01) is True
    assert lock.acquire(timeout=1)
    lock.release()


def test_a_lock_whose_holder_died_unreaped_is_freed_too() -> None:
    """A holder killed but not yet reaped by its parent (a zombie) still has a process entry: it
    counts as dead, so its lock is freed."""
    lock, sem, holding = SharedLock(), SharedSemaphore(1), SharedEvent()
    proc = CTX.Process(target=_take_and_hang, args=(lock, sem, holding))
    proc.start()
    assert holding.wait(20) and proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    for _ in range(200):  # dead, not reaped: /proc says Z
        with open(f"/proc/{proc.pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                break
        time.sleep(0.01)
    else:
        pytest.fail("the killed child never showed as a zombie")
    assert free_abandoned(lock, attempts=1, timeout_s=60) is True
    proc.join()
