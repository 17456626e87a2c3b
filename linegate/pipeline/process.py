"""What every worker process does first: die with its parent, leave signals to the supervisor."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


SUPERVISOR_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGTERM})
"""Signals meant for the supervisor alone (reload, stop)."""


def start_shielded(proc: Any) -> None:
    """Start a worker process with :data:`SUPERVISOR_SIGNALS` blocked: the child inherits the mask,
    so one sent to the whole group while it imports and loads (seconds, for inference) stays
    pending until :func:`become_worker` ignores it, instead of killing it."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISOR_SIGNALS)
    try:
        proc.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def become_worker(supervisor_pid: int) -> None:
    """Make this process a supervised worker.

    SIGINT/SIGTERM are ignored: the supervisor stops workers in order (acquisition, then
    inference, then PLC) through events, so a Ctrl-C on the terminal's process group or a stop
    signal cannot cut the drain short. SIGHUP is ignored too: it asks the supervisor for a reload,
    and one sent to every process (``systemctl kill -s HUP``, a terminal hang-up) killed every
    worker. If the supervisor dies (even by SIGKILL), the kernel kills
    the worker, so no orphan keeps the camera or the PLC connection.
    """
    for signum in SUPERVISOR_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISOR_SIGNALS)  # pending ones are now ignored
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor_pid:  # the supervisor died before prctl took effect
        raise RuntimeError(f"supervisor {supervisor_pid} exited before this worker started")
