"""The acquisition worker: camera frames into the shared-memory ring, every frame accounted for."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.camera.frame_ids import CameraClockMapper, FrameIdTracker
from linegate.camera.genicam import GenICamCamera
from linegate.logs import shutdown_logging
from linegate.pipeline.context import WorkerContext
from linegate.pipeline.counters import Count, SharedCounters
from linegate.ring import RingHandle, RingProducer


class FrameWriter:
    """Per-frame callback: sequence, part id, ring slot, copy, publish; counts what it cannot keep."""

    def __init__(self, producer: RingProducer, counters: SharedCounters, log: Any, shape: tuple[int, ...]) -> None:
        self.producer = producer
        self.counters = counters
        self.log = log
        self.shape = shape
        self.ids = FrameIdTracker()
        self.clock_map = CameraClockMapper()
        self.next_part_id = 1

    def __call__(self, data: npt.NDArray[np.uint8], frame_id: int, t_receipt_ns: int, camera_ns: int | None) -> None:
        t_acquired = t_receipt_ns if camera_ns is None else self.clock_map.to_host(camera_ns, t_receipt_ns)
        lost = self.ids.observe(frame_id)
        if lost:
            self.counters.add(Count.CAMERA_LOST, lost)
            self.log.warning("camera_frames_lost", count=lost, before_frame_id=frame_id)
        part_id = self.next_part_id
        self.next_part_id += 1
        self.counters.add(Count.ACQUIRED)
        seq, slot = self.producer.reserve(frame_id, part_id, t_acquired)
        if slot is None:
            if seq < 0:
                self._lost_to_lock(part_id, frame_id)
            return  # otherwise the ring journaled it: inference gives it the fail-safe verdict
        np.copyto(self.producer.pixels(slot), data.reshape(self.shape))
        if not self.producer.publish(slot, time.monotonic_ns()):
            self._lost_to_lock(part_id, frame_id)

    def _lost_to_lock(self, part_id: int, frame_id: int) -> None:
        """The ring's lock timed out (the consumer died mid-update): this frame is reported here."""
        self.counters.add(Count.RING_LOCK_TIMEOUTS)
        self.log.error("frame_dropped", part_id=part_id, frame_id=frame_id, reason="ring_lock_timeout")


def acquisition_main(ctx: WorkerContext, ring: RingHandle, stop: Any, max_frames: int | None) -> None:
    """Process entry: open the camera, stream into the ring until *stop* or *max_frames*."""
    log, _sink = ctx.enter("acquire")
    cfg = ctx.cfg
    producer = RingProducer(ring)
    writer = FrameWriter(producer, ctx.counters, log, ring.geometry.shape)
    camera = GenICamCamera(cfg.camera)
    try:
        info = camera.open()
        log.info(
            "camera_opened",
            producer=info.producer,
            model=info.model,
            serial_number=info.serial_number,
            applied=info.applied,
            skipped=info.skipped,
        )
        for key in info.skipped:
            log.warning("camera_setting_skipped", key=f"camera.{key}", reason="the camera has no such node")
        camera.start()
        counters = ctx.counters
        while not stop.is_set() and (max_frames is None or counters.get(Count.ACQUIRED) < max_frames):
            counters.set(Count.ACQ_HEARTBEAT_NS, time.monotonic_ns())
            if not camera.fetch(writer):
                counters.set(Count.CAMERA_TIMEOUTS, camera.timeouts)
        log.info("acquisition_stopped", acquired=counters.get(Count.ACQUIRED), lost=writer.ids.lost)
    finally:
        camera.close()
        producer.close()
        shutdown_logging()
