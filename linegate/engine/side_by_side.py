"""Several one-frame engine runs side by side, one per thread, for a batch under overload
(``model.batch_by = "sessions"``). ``model.parallel`` (:mod:`linegate.engine.parallel_runs`) runs
one-frame sessions without this lockstep: each takes the next frame as its own run ends.

Why it was tried: one run spread over every core (intra-op threads) waits at each operator for
its slowest thread, and a thread preempted by the acquisition worker stalls them all; independent
one-frame runs have nothing to wait for. ONNX Runtime releases the GIL while it runs, so Python
threads are enough. What it gives is measured, not assumed, so it is a choice, not the default
(ResNet-18, frames per second, the engine alone in a tight loop unless said):

- 2-core VM: one session on 2 threads 116-120; two one-thread sessions 122-127 (lockstep pairs,
  the batch pattern here). Inside the pipeline at 200 fps (``linegate bench``, overload): 82 by
  the model against 79-85 for one frame at a time: no gain, the camera's share of the CPUs bounds
  both (tests/bench/bench_beside.py: the engine alone beside the camera does 85-104).
- 16-core machine, ``threads = 14``: one session 219, two sessions of 7 threads 266, four of 3
  threads 224 (the sessions' threads spinning, which inside the pipeline starved the acquisition
  worker: 502 of 2,000 frames lost; spinning is now judged over all the sessions' threads at once).
  With ``threads = 4``: one session 131-143, two sessions of 2 threads 78-98.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor


class SideBySide:
    """Runs a batch of callables at once: the first on the caller's thread, the others on helper
    threads started at the first batch (they inherit the caller's scheduling policy and CPUs)."""

    def __init__(self, width: int, name: str = "linegate-batch") -> None:
        self.width = width
        self._pool = ThreadPoolExecutor(max_workers=max(1, width - 1), thread_name_prefix=name)

    def run(self, calls: Sequence[Callable[[], object]]) -> None:
        """Run every call in *calls* (at most :attr:`width`) and return once all have ended; the
        first exception raised, after all have ended (a run still going may be writing into
        buffers the caller reads next)."""
        if len(calls) > self.width:
            raise ValueError(f"{len(calls)} runs side by side, at most {self.width}")
        futures: list[Future[object]] = [self._pool.submit(call) for call in calls[1:]]
        first: BaseException | None = None
        try:
            calls[0]()
        except BaseException as exc:  # re-raised below, once the helpers have ended
            first = exc
        for future in futures:
            failed = future.exception()
            if first is None and failed is not None:
                first = failed
        if first is not None:
            raise first

    def close(self) -> None:
        self._pool.shutdown(wait=True)
