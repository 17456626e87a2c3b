"""The inference worker's GPU frame path: ring slot -> device -> preprocessing kernel -> TensorRT run,
waited for no longer than the frame's deadline.

Built only where ``model.gpu_preprocess`` holds (a TensorRT engine; cuda-python is imported when a
:class:`GpuFeed` is made, never on the CPU path). The ring's slots are registered as pinned memory in
this process once, so each frame's copy is a DMA straight from its slot. A frame not done by its
deadline is abandoned (the caller gives it the fail-safe verdict) and its slot stays held until the
GPU has finished with it: :meth:`GpuFeed.reclaim` hands it back. See
:class:`linegate.engine.gpu_preprocess.GpuFramePath`.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.config.schema import PreprocessSection
from linegate.errors import EngineError
from linegate.ring import RingConsumer
from linegate.vision.preprocess import plan_preprocess


class Fed(Enum):
    """How a frame's trip through the GPU ended."""

    DONE = "done"
    """The model's output is in the engine's output buffer; the slot may be released."""
    LATE = "late"
    """Abandoned at its deadline: fail-safe verdict; the slot is held until :meth:`GpuFeed.reclaim`."""
    BUSY = "busy"
    """Not started: an abandoned frame still occupies the GPU; fail-safe verdict, release the slot."""


class GpuFeed:
    """One TensorRT engine fed from the ring's slots on its own stream."""

    def __init__(self, engine: Any, pre: PreprocessSection, consumer: RingConsumer, slots: int, stride: int,
                 frame_shape: tuple[int, ...], pixel_format: str) -> None:  # fmt: skip
        for attr in ("device_input", "stream", "enqueue_on_device_input", "output"):
            if not hasattr(engine, attr):
                raise EngineError(f"{engine.cfg.path}: the GPU frame path needs a TensorRT engine")
        from linegate.engine import cuda_memory as cm
        from linegate.engine.gpu_preprocess import GpuFramePath, GpuPreprocessor

        self.engine = engine
        self.consumer = consumer
        self._closed = False
        self._registration = cm.HostRegistration(consumer.slot_address(0), slots * stride)
        try:
            self.preprocessor = GpuPreprocessor(plan_preprocess(pre, frame_shape, pixel_format))
            self.path = GpuFramePath(
                self.preprocessor, engine.device_input, engine.stream, then=engine.enqueue_on_device_input
            )
        except BaseException:
            self._registration.close()
            raise

    @property
    def idle(self) -> bool:
        return bool(self.path.idle)

    def reclaim(self) -> int | None:
        """The slot of an abandoned frame the GPU has finished with since (release it now), else None."""
        slot = self.path.reclaim()
        return None if slot is None else int(slot)

    def run(self, slot: int, deadline_ns: int) -> Fed:
        """Copy *slot*, preprocess, run the model and fetch its output, waiting until *deadline_ns* at most."""
        if not self.path.idle:
            return Fed.BUSY
        self.path.start(slot, self.consumer.slot_address(slot))
        return Fed.DONE if self.path.wait(deadline_ns) else Fed.LATE

    def warm_up(self, runs: int) -> npt.NDArray[np.int64]:
        """Run the whole path on slot 0 *runs* times (reading it only); each run's duration in ns."""
        durations = np.zeros(max(runs, 1), dtype=np.int64)
        far = 2**62
        for i in range(durations.size):
            t0 = time.monotonic_ns()
            if self.run(0, far) is not Fed.DONE:
                raise EngineError(f"{self.engine.cfg.path}: the GPU frame path did not finish a warm-up run")
            durations[i] = time.monotonic_ns() - t0
        return durations

    def close(self) -> int | None:
        """Wait for queued work, free the path and unregister the ring (before the ring goes). Returns
        the slot a late frame still held (its verdict was given: release it), if any. Idempotent."""
        if self._closed:
            return None
        self._closed = True
        try:
            self.engine.stream.synchronize()
            held = self.reclaim()
            self.path.close()
            self.preprocessor.close()
        finally:
            self._registration.close()
        return held
