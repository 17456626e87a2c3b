"""One linegate per instance name on a machine: an exclusive ``flock`` held for the run's life.

Two runs with the same ``[instance] name`` are two daemons for one inspection station: both would
drive the same camera and reject output. The supervisor takes this lock before it creates anything
shared; a second run is refused (:class:`InstanceLocked`, exit 78: systemd must not restart it)
and touches nothing of the first.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on ``/dev/shm/linegate-<instance>.lock``. The kernel drops
it when the holder dies, however it dies, so a killed run never blocks the next one; the file is
unlinked on a clean release, and after a kill the 0-byte file stays (one per instance name, reused:
it does not grow with kills). The holder's pid is written into it and read back from
``/proc/locks`` for the refusal message.

Why /dev/shm: the lock works only if every run of the instance looks in the same place, whoever
starts it. The systemd unit runs with ``PrivateTmp=yes`` (its /tmp is not the shell's) and a
``$RUNTIME_DIRECTORY`` exists only under systemd, so a run started by hand while the service runs
would take a different lock there and not be refused: the very case to catch. /dev/shm is the same
tmpfs for the service (``PrivateDevices=no``) and for every user, it is always there, writable
under ``ProtectSystem=strict``, and it is the namespace the instance name used to claim (the frame
ring file of older versions). The file is made readable by all, so a run as another user can still
test the lock and be refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from linegate.errors import ConfigError

LOCK_DIR = Path("/dev/shm")
_ATTEMPTS = 10


class InstanceLocked(ConfigError):
    """Another process holds the instance's lock: this run must not start (exit 78)."""

    def __init__(self, instance: str, path: Path, pid: int | None) -> None:
        self.instance, self.path, self.pid = instance, path, pid
        holder = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"instance {instance!r} is already running ({holder} holds {path}); "
            f"stop it first, or give this run another [instance] name"
        )


def lock_path(instance: str, directory: Path = LOCK_DIR) -> Path:
    return directory / f"linegate-{instance}.lock"


class InstanceLock:
    """The exclusive lock of one instance name, held until :meth:`release` or the process's end."""

    def __init__(self, instance: str, path: Path, fd: int) -> None:
        self.instance, self.path, self._fd = instance, path, fd

    @classmethod
    def acquire(cls, instance: str, directory: Path = LOCK_DIR) -> InstanceLock:
        """Take *instance*'s lock or raise :class:`InstanceLocked` at once (never waits)."""
        path = lock_path(instance, directory)
        for _ in range(_ATTEMPTS):
            try:
                fd = _open(path)
            except PermissionError as exc:
                raise ConfigError(
                    f"cannot open the lock of instance {instance!r}, {path}: {exc.strerror} "
                    f"(is linegate running as another user?)"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _holder(fd)
                os.close(fd)
                raise InstanceLocked(instance, path, pid) from None
            except BaseException:
                os.close(fd)
                raise
            # The holder unlinks the file as it releases: locking a file that is no longer at *path*
            # would not exclude a run that creates a new one there. Start again with that one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                with contextlib.suppress(OSError):  # opened read-only (another user's file): pid from /proc/locks
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return cls(instance, path, fd)
            os.close(fd)
        raise OSError(f"{path}: could not lock it in {_ATTEMPTS} attempts (replaced each time)")

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Unlink the file (if still ours) and drop the lock. Idempotent."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                os.unlink(self.path)
        os.close(self._fd)  # drops the flock
        self._fd = -1

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open(path: Path) -> int:
    """Open the lock file, creating it readable by all; read-only if it is another user's (flock
    does not need write access)."""
    for flags in (os.O_RDWR, os.O_RDONLY):
        try:
            return os.open(path, flags | os.O_CLOEXEC)
        except FileNotFoundError:
            break
        except PermissionError:
            continue
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:  # another run created it in between
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o644)  # whatever the umask (the unit sets 0027)
    return fd


def _holder(fd: int) -> int | None:
    """Pid of the process holding the flock on *fd*'s file: /proc/locks, else the pid it wrote."""
    st = os.fstat(fd)
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "->" in fields:  # a waiter's entry
                continue
            if fields[1] == "FLOCK" and fields[5] == device:
                return int(fields[4])
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip()) or None
    return None
