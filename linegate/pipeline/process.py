"""What every worker process does first: die with its parent, leave signals to the supervisor."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def become_worker(supervisor_pid: int) -> None:
    """Make this process a supervised worker.

    SIGINT/SIGTERM are ignored: the supervisor stops workers in order (acquisition, then
    inference, then PLC) through events, so a Ctrl-C on the terminal's process group or a stop
    signal cannot cut the drain short. SIGHUP is ignored too: it asks the supervisor for a reload,
    and one sent to every process (``systemctl kill -s HUP``, a terminal hang-up) killed every
    worker. If the supervisor dies (even by SIGKILL), the kernel kills
    the worker, so no orphan keeps the camera or the PLC connection.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor_pid:  # the supervisor died before prctl took effect
        raise RuntimeError(f"supervisor {supervisor_pid} exited before this worker started")
