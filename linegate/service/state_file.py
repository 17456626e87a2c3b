"""The running service's state, as a small JSON file other commands read (``linegate status``,
``linegate reload``).

The supervisor rewrites it atomically (write + rename) every second and at once when the fault
state or a reload changes. It lives in the runtime directory: ``$RUNTIME_DIRECTORY`` (systemd's
``RuntimeDirectory=linegate``: /run/linegate), else /run/linegate when writable, else a directory
of this user's under the temp dir. One file per instance: ``<instance>.state.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

SUFFIX = ".state.json"
STALE_S = 5.0
"""A file not rewritten for this long belongs to a linegate that is not running (or hung)."""


def runtime_dir() -> Path:
    """Where state files live (created if missing)."""
    env = os.environ.get("RUNTIME_DIRECTORY")
    if env:
        path = Path(env.split(":")[0])
    elif os.access("/run/linegate" if os.path.isdir("/run/linegate") else "/run", os.W_OK):
        path = Path("/run/linegate")
    else:
        path = Path(tempfile.gettempdir()) / f"linegate-{os.getuid()}"
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    return path


def state_path(instance: str, directory: Path | None = None) -> Path:
    return (directory or runtime_dir()) / f"{instance}{SUFFIX}"


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Replace the file atomically: a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps({**state, "written_unix": time.time()}))
    tmp.chmod(0o644)  # maintenance accounts read it (the service's UMask would hide it)
    os.replace(tmp, path)


def read_state(path: Path) -> dict[str, Any] | None:
    """The state, or None if there is no (readable) file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def running(state: dict[str, Any]) -> bool:
    """Its process exists and it rewrote the file recently."""
    pid = int(state.get("pid", 0))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's (e.g. the service user's)
        pass
    return time.time() - float(state.get("written_unix", 0)) < STALE_S


def instances(directory: Path | None = None) -> list[str]:
    """Instance names with a state file."""
    d = directory or runtime_dir()
    return sorted(p.name[: -len(SUFFIX)] for p in d.glob(f"*{SUFFIX}"))
