"""How many CPU threads ONNX Runtime gets, and whether its pool spins (pure, but for reading the CPU set).

``model.threads = "auto"`` leaves cores for the workers beside the loop: on up to 4 CPUs one (the
acquisition worker; the PLC worker mostly waits), above that two; a heavy model (:data:`HEAVY_RUN_NS`)
on up to 4 CPUs gets them all. Spinning (pool threads busy-wait
for the next piece of work instead of sleeping) is on, under ``spinning = "auto"``, only for a pool
of several threads that takes at most half the CPUs: a spinning pool keeps its cores busy between
runs, and the camera's frames need CPU too. On the 16-core GPU machine, ResNet-18 at 14 threads
ran p50 3.8 ms spinning against 5.2 ms not on its own (tests/bench/bench_threads.py), but inside
linegate at 100 fps (``linegate bench --quick --models resnet18 --spinning on|off``, alternated,
one run) spinning gained nothing (p50 6.6 and 6.7 ms against 6.8 and 6.3) and the acquisition
worker fell behind the camera: 91 and 169 of 1,500 frames late or lost, against none.
"""

from __future__ import annotations

import os
from typing import Literal

ThreadsSetting = int | Literal["auto"]
SpinSetting = Literal["auto", "on", "off"]


def cpus_available() -> int:
    """CPUs this process may run on (its affinity: ``scheduling.infer_cpus`` when set)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def reserved_cpus(cpus: int) -> int:
    """Cores left to the acquisition and PLC workers."""
    return 1 if cpus <= 4 else 2


HEAVY_RUN_NS = 2_000_000
"""A model whose one-thread run takes at least this long is "heavy": on up to 4 CPUs it gets every
core, as its frames come slowly enough that the acquisition worker's share of a core hardly slows
it. On the 2-CPU machine ResNet-18 ran 47 ms with 1 thread and 27 ms with 2 (bench_threads.py, 20 ms
idle between runs), while the demo model (0.3 ms) gained nothing from a second thread."""


def intra_op_threads(setting: ThreadsSetting, cpus: int, heavy: bool = False) -> int:
    """The thread count for *setting* on a machine with *cpus* usable CPUs (*heavy*: see
    :data:`HEAVY_RUN_NS`)."""
    if setting != "auto":
        return int(setting)
    if heavy and cpus <= 4:
        return cpus
    return max(1, cpus - reserved_cpus(cpus))


def may_be_heavy(setting: ThreadsSetting, cpus: int) -> bool:
    """Whether "auto" could choose differently for a heavy model (worth timing the model once)."""
    return setting == "auto" and intra_op_threads(setting, cpus, heavy=True) != intra_op_threads(setting, cpus)


def spinning(setting: SpinSetting, threads: int, cpus: int) -> bool:
    """Whether ONNX Runtime's pool threads spin between runs."""
    if setting != "auto":
        return setting == "on"
    return threads > 1 and 2 * threads <= cpus


def parallel_sessions(setting: int | Literal["auto"], threads: int, run_ns: int | None) -> int:
    """How many one-frame sessions decide a backlog (``model.parallel``): a number as set; "auto": 2
    for a model whose run on *threads* threads takes *run_ns* >= :data:`HEAVY_RUN_NS` (None: not
    timed, as it cannot matter), where *threads* >= 2 gives each session a thread, else 1. A model
    that short hands a frame to another thread for about as long as it runs (the demo model as two
    sessions ran 27,000 frames a second against 60,000 as one)."""
    if setting != "auto":
        return int(setting)
    return 2 if threads >= 2 and run_ns is not None and run_ns >= HEAVY_RUN_NS else 1
