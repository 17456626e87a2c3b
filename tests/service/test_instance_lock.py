"""The per-instance lock, held by real processes on the real lock directory (/dev/shm)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linegate.errors import ConfigError
from linegate.service.instance_lock import InstanceLock, InstanceLocked, lock_path
from tests.conftest import unique_instance

HOLD = """
import sys, time
from linegate.service.instance_lock import InstanceLock
lock = InstanceLock.acquire(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def hold_in_child(instance: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, instance], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_second_holder_is_refused_with_the_first_ones_pid() -> None:
    """While a process holds an instance's lock, acquiring it fails at once, naming the instance and its pid."""
    instance = unique_instance()
    holder = hold_in_child(instance)
    try:
        t0 = time.monotonic()
        with pytest.raises(InstanceLocked) as refused:
            InstanceLock.acquire(instance)
        assert time.monotonic() - t0 < 1.0  # never waits for the holder
        assert refused.value.pid == holder.pid and refused.value.instance == instance
        message = str(refused.value)
        assert "\n" not in message and instance in message and f"pid {holder.pid}" in message
        assert isinstance(refused.value, ConfigError)  # the CLI's exit 78: systemd does not restart it
        with InstanceLock.acquire(unique_instance()):  # other instance names are not affected
            pass
    finally:
        holder.kill()
        holder.wait()
    InstanceLock.acquire(instance).release()  # free again; and the file goes
    assert not lock_path(instance).exists()


def test_lock_of_a_sigkilled_holder_is_free_at_once() -> None:
    """SIGKILL of the holder frees the lock (the kernel drops it): the next run never has to clean up first."""
    instance = unique_instance()
    holder = hold_in_child(instance)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    lock = InstanceLock.acquire(instance)
    try:
        assert lock.held and lock_path(instance).read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()


def test_release_removes_the_file_and_the_name_can_be_taken_again() -> None:
    """A clean release leaves nothing in the lock directory; the name can be taken again, by any process."""
    instance = unique_instance()
    path = lock_path(instance)
    with InstanceLock.acquire(instance) as lock:
        assert path.exists()
    assert not lock.held and not path.exists()
    lock.release()  # idempotent
    holder = hold_in_child(instance)
    holder.kill()
    holder.wait()
    with InstanceLock.acquire(instance):
        pass
    assert not path.exists()


def test_lock_file_is_readable_by_other_users_whatever_the_umask(tmp_path: Path) -> None:
    """The lock file is created 0644 even under the unit's UMask=0027, so a run as another user can be refused."""
    old = os.umask(0o027)
    try:
        with InstanceLock.acquire("x", tmp_path):
            assert (tmp_path / "linegate-x.lock").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
