"""One-frame engine runs going on at once, each session on a thread of its own (``model.parallel``).

Unlike :class:`linegate.engine.side_by_side.SideBySide`, which runs a batch and returns when all of
its runs have ended, nothing here waits for the other sessions: the inference loop starts a
session on a frame, goes on, and collects each run as it ends. The loop keeps every verdict's
effects (hand-off, record, counts) on its own thread; a session's thread only runs the model.
The runs release the GIL (ONNX Runtime does), so Python threads are enough.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence

Finished = tuple[int, int, BaseException | None]
"""A run that ended: the session's index, when it ended (``time.monotonic_ns()``), what it raised."""


class ParallelRuns:
    """Sessions that each run one frame when started; *wake* is called from a session's thread as
    its run ends (the loop's wait returns: the ring's semaphore)."""

    def __init__(self, runs: Sequence[Callable[[], object]], wake: Callable[[], None],
                 name: str = "linegate-run") -> None:  # fmt: skip
        self._runs = list(runs)
        self._wake = wake
        self._go = [threading.Semaphore(0) for _ in self._runs]
        self._ended: queue.SimpleQueue[Finished] = queue.SimpleQueue()
        self._closing = False
        self.wakes = True
        """Whether a run's end calls *wake* (off while the caller times the sessions itself: each
        call would leave the loop a wake-up with nothing behind it)."""
        self.idle = list(range(len(self._runs)))[::-1]
        """Sessions free to start, the lowest index last (:meth:`start` takes from the end)."""
        self._threads = [
            threading.Thread(target=self._serve, args=(i,), name=f"{name}-{i}", daemon=True)
            for i in range(len(self._runs))
        ]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        return len(self._runs)

    @property
    def busy(self) -> int:
        """Sessions started whose end :meth:`finished` has not returned yet."""
        return len(self._runs) - len(self.idle)

    def start(self) -> int:
        """Start the next idle session's run (its input already written); returns its index."""
        if not self.idle:
            raise RuntimeError("no idle session to start")
        i = self.idle.pop()
        self._go[i].release()
        return i

    def next_idle(self) -> int | None:
        """The session :meth:`start` would start, None when all are busy."""
        return self.idle[-1] if self.idle else None

    def finished(self, timeout_s: float = 0.0) -> list[Finished]:
        """The runs that ended since the last call (their sessions idle again), waiting up to
        *timeout_s* for the first when none has (0: not at all)."""
        out: list[Finished] = []
        try:
            out.append(self._ended.get(timeout=timeout_s) if timeout_s > 0 else self._ended.get_nowait())
            while True:
                out.append(self._ended.get_nowait())
        except queue.Empty:
            pass
        self.idle.extend(i for i, _t, _exc in out)
        self.idle.sort(reverse=True)
        return out

    def _serve(self, i: int) -> None:
        go, run = self._go[i], self._runs[i]
        while True:
            go.acquire()
            if self._closing:
                return
            failed: BaseException | None = None
            try:
                run()
            except BaseException as exc:  # the loop fails this frame safe and names the error
                failed = exc
            self._ended.put((i, time.monotonic_ns(), failed))
            if self.wakes:
                self._wake()

    def close(self) -> None:
        """Let each run under way end, then stop the threads (before the sessions are closed)."""
        self._closing = True
        for go in self._go:
            go.release()
        for thread in self._threads:
            thread.join()
