"""The inference loop in-process on a real ring, a real ONNX Runtime engine and a real reject pipe:
what the loop tests share to set it up and tear it down."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from linegate.config import Config
from linegate.counters import SharedCounters
from linegate.demo.ground_truth import BALL_SIZE
from linegate.engine import create_engine
from linegate.logs import configure_logging, get_logger, shutdown_logging
from linegate.pipeline.infer import CameraOut, InferenceLoop, model_stage
from linegate.pipeline.inflight import InFlight
from linegate.plc.reject_pipe import RejectOutbox, reject_channel
from linegate.ring import FrameRing, RingConsumer, RingGeometry, RingProducer, RingSet
from linegate.ring.sync import SharedSemaphore
from linegate.vision.preprocess import build_preprocessor
from tests.pipeline.harness import records

CTX = mp.get_context("spawn")
GEOMETRY = RingGeometry(480, 640, 1, "Mono8")


def ball_frame(x: int, y: int) -> np.ndarray:
    """A white 640x480 frame with the demo's black ball at top-left (x, y)."""
    frame = np.full((480, 640), 255, dtype=np.uint8)
    frame[y : y + BALL_SIZE, x : x + BALL_SIZE] = 0
    return frame


POSITIONS = [(300, 200), (20, 20), (200, 150), (600, 440), (400, 300), (50, 400), (250, 250), (500, 100)]
"""Balls inside and outside the demo's reject zone (x 160..480, y 120..360), alternating."""


@dataclass
class LoopRig:
    loop: InferenceLoop
    producer: RingProducer
    consumer: RingConsumer
    reader: Any
    """The reject pipe's reading end (RejectInbox(reader) takes what the loop handed off)."""
    counters: SharedCounters
    log_path: Path

    def publish(
        self, part_id: int, acquired_ns: int | None = None, value: int = 255, pixels: np.ndarray | None = None
    ) -> None:
        """One frame of *value* pixels (or *pixels*), acquired at *acquired_ns* (default now), ready
        for the loop."""
        _, slot = self.producer.reserve(part_id, part_id, time.monotonic_ns() if acquired_ns is None else acquired_ns)
        assert slot is not None, "ring full"
        self.producer.pixels(slot)[...] = value if pixels is None else pixels
        self.producer.publish(slot, time.monotonic_ns())

    def frame_records(self) -> list[dict[str, Any]]:
        return [r for r in records(self.log_path) if r["event"] == "frame"]


@contextmanager
def loop_on_a_ring(cfg: Config, log_path: Path, slots: int = 4, inflight: InFlight | None = None) -> Iterator[LoopRig]:
    """An InferenceLoop for *cfg* (its engine and its [[stages]]' loaded, not warmed up) logging to
    *log_path*; *inflight*: the shared in-flight entry a predecessor left (default: a fresh one)."""
    ring = FrameRing.create(CTX, instance=cfg.instance.name, geometry=GEOMETRY, slots=slots, journal_size=16,
                            when_full="drop_newest")  # fmt: skip
    producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
    pre = build_preprocessor(cfg.model.preprocess, GEOMETRY.shape, "Mono8")
    engine = create_engine(cfg.model, pre.spec.shape, pre.spec.dtype)
    engine.load()
    stages = [model_stage(st.model, frozenset(st.when), ring.handle) for st in cfg.stages]
    for stage in stages:
        stage.engine.load()
    reader, writer = reject_channel(CTX)
    counters = SharedCounters.create(CTX)
    sink = configure_logging(file=log_path, stream=None)
    loop: InferenceLoop | None = None
    try:
        loop = InferenceLoop(cfg, consumer, engine, pre, RejectOutbox(writer, 64), counters, get_logger(), sink,
                             inflight, stages)  # fmt: skip
        yield LoopRig(loop, producer, consumer, reader, counters, log_path)
    finally:
        if loop is not None:
            loop.close()  # model.parallel's threads, before the engine goes
        shutdown_logging()
        engine.close()
        for stage in stages:
            stage.engine.close()
        producer.close()
        consumer.close()
        ring.close()


@dataclass
class CamerasRig:
    """The loop over one ring per camera (``[[cameras]]``), as :class:`LoopRig` for one camera."""

    loop: InferenceLoop
    producers: list[RingProducer]
    consumer: RingSet
    readers: list[Any]
    """Each camera's reject pipe, reading end."""
    counters: list[SharedCounters]
    """Each camera's counters (the first one's also the worker's)."""
    log_path: Path

    def publish(self, camera: int, part_id: int, pixels: np.ndarray) -> None:
        """One frame of *pixels* into *camera*'s ring, acquired now, ready for the loop."""
        producer = self.producers[camera]
        _, slot = producer.reserve(part_id, part_id, time.monotonic_ns())
        assert slot is not None, f"camera {camera}: ring full"
        producer.pixels(slot)[...] = pixels
        producer.publish(slot, time.monotonic_ns())


@contextmanager
def loop_on_camera_rings(cfg: Config, log_path: Path, cameras: int, slots: int = 8) -> Iterator[CamerasRig]:
    """An InferenceLoop over *cameras* rings sharing one wake-up semaphore (as ``[[cameras]]`` runs
    it: cameras cam0, cam1, ..., each with its counters and reject pipe), its engine loaded."""
    ready = SharedSemaphore(0)
    pre = build_preprocessor(cfg.model.preprocess, GEOMETRY.shape, "Mono8")
    engine = create_engine(cfg.model, pre.spec.shape, pre.spec.dtype)
    with ExitStack() as stack:
        rings = [
            stack.enter_context(FrameRing.create(CTX, instance=f"{cfg.instance.name}-cam{i}", geometry=GEOMETRY,
                                                 slots=slots, journal_size=16, when_full="drop_newest", ready=ready))
            for i in range(cameras)
        ]  # fmt: skip
        producers = [RingProducer(ring.handle) for ring in rings]
        consumer = RingSet([ring.handle for ring in rings])
        channels = [reject_channel(CTX) for _ in range(cameras)]
        counters = [SharedCounters.create(CTX) for _ in range(cameras)]
        outs = [CameraOut(f"cam{i}", counters[i], RejectOutbox(channels[i][1], 64)) for i in range(cameras)]
        engine.load()
        sink = configure_logging(file=log_path, stream=None)
        loop: InferenceLoop | None = None
        try:
            loop = InferenceLoop(cfg, consumer, engine, pre, outs[0].outbox, counters[0], get_logger(), sink,
                                 cameras=outs)  # fmt: skip
            yield CamerasRig(loop, producers, consumer, [reader for reader, _ in channels], counters, log_path)
        finally:
            if loop is not None:
                loop.close()
            shutdown_logging()
            engine.close()
            consumer.close()
            for producer in producers:
                producer.close()
