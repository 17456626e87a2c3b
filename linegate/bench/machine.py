"""Facts about the machine a benchmark ran on, for the results file."""

from __future__ import annotations

import datetime
import os
import platform
import socket
import sys
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def facts() -> dict[str, str]:
    """CPU count and model, OS, Python, onnxruntime, numpy, linegate, host and date (UTC)."""
    import linegate

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "host": socket.gethostname() or "this-machine",
        "cpus": f"{os.cpu_count()} ({usable} usable)",
        "cpu_model": cpu_model(),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": sys.version.split()[0],
        "onnxruntime": version("onnxruntime"),
        "numpy": version("numpy"),
        "linegate": linegate.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "load_average_at_start": " ".join(f"{v:.2f}" for v in load),
    }
