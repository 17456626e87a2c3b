"""The unnamed cross-process primitives (linegate.ring.sync), used between real spawned processes."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time

import pytest

from linegate.ring.sync import PipeQueue, SharedEvent, SharedLock, SharedSemaphore

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
    lock, sem, holding = SharedLock(), SharedSemaphore(1), SharedEvent()
    proc = CTX.Process(target=_take_and_hang, args=(lock, sem, holding))
    proc.start()
    assert holding.wait(20) and proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
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
