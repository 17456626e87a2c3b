"""The acquisition worker: camera frames into the shared-memory ring, every frame accounted for;
reconnects a lost camera with back-off."""

from __future__ import annotations

import contextlib
import signal
import time
from types import FrameType
from typing import Any

import numpy as np

from linegate.camera.frame_ids import CameraClockMapper, FrameIdTracker
from linegate.camera.genicam import CameraFrame, GenICamCamera
from linegate.config.schema import CameraSection
from linegate.counters import Count, SharedCounters, first_part_id
from linegate.errors import CameraError, CameraSettingError
from linegate.logs import shutdown_logging
from linegate.pipeline.context import WorkerContext
from linegate.ring import RingHandle, RingProducer
from linegate.roles import Role
from linegate.timing.backoff import Backoff

RING_FLUSH_TIMEOUT_S = 1.0


class FrameWriter:
    """Per-frame callback: sequence, part id, ring slot, copy, publish; counts what it cannot keep."""

    def __init__(self, producer: RingProducer, counters: SharedCounters, log: Any, first_part_id: int = 1) -> None:
        self.producer = producer
        self.counters = counters
        self.log = log
        self.ids = FrameIdTracker()
        self.clock_map = CameraClockMapper()
        self.next_part_id = first_part_id

    def __call__(self, frame: CameraFrame) -> None:
        t_receipt_ns, camera_ns = frame.t_receipt_ns, frame.camera_ns
        t_acquired = t_receipt_ns if camera_ns is None else self.clock_map.to_host(camera_ns, t_receipt_ns)
        if frame.frame_id is None:  # a buffer discarded before its id could be read: it takes the next id
            frame_id = self.ids.observe_unnumbered()
        else:
            frame_id = frame.frame_id
            lost = self.ids.observe(frame_id)
            if lost:
                self.counters.add(Count.CAMERA_LOST, lost)
                self.log.warning("camera_frames_lost", count=lost, before_frame_id=frame_id)
        part_id = self.next_part_id
        self.next_part_id += 1
        # A defective frame goes through the ring like any other (one part id, one sequence number),
        # flagged in its header and with its pixels not written: inference gives it the fail-safe verdict.
        defect, pixels = frame.defect, frame.pixels
        # The usual frame in one compiled call; anything else (a defect, the lock busy, the ring
        # full, deferred frames to catch up on) through reserve, which handles it.
        whole = defect is None and pixels is not None
        slot = self.producer.reserve_and_copy(frame_id, part_id, t_acquired, pixels) if whole else None
        if slot is None:
            flag = (int(defect.kind), defect.payload_bytes) if defect is not None else (0, 0)
            _seq, slot = self.producer.reserve(frame_id, part_id, t_acquired, *flag)
            if slot is not None and pixels is not None:
                np.copyto(self.producer.pixels(slot), pixels)
        # Counted once it is in the ring (or deferred there): if this process dies in between, the
        # supervisor counts it from the ring's last part id.
        self.counters.add(Count.ACQUIRED)
        if slot is None:  # journaled (ring full) or deferred (lock busy): inference gives it the fail-safe verdict
            self.counters.set(Count.RING_LOCK_WAITS, self.producer.lock_timeouts)
            return
        if not self.producer.publish(slot, time.monotonic_ns()):  # published at the next frame instead
            self.counters.set(Count.RING_LOCK_WAITS, self.producer.lock_timeouts)

    def flush(self, timeout_s: float) -> None:
        """At exit: hand over deferred frames; any that cannot be are reported here by part id."""
        for frame_id, part_id in self.producer.flush(timeout_s):
            self.counters.add(Count.RING_LOCK_TIMEOUTS)
            self.log.error("frame_dropped", part_id=part_id, frame_id=frame_id, reason="ring_lock_timeout")


class CameraLink:
    """Keeps the camera streaming: opens it, and after a loss reopens it with back-off.

    While the camera is down the worker keeps its heartbeat (it is alive and trying), the
    ``CAMERA_DOWN`` counter is 1 so the supervisor reports the fault (STATUS, logs, the PLC's
    fault coil), and on recovery the frames the camera would have sent meanwhile are estimated
    from the configured frame rate and counted.
    """

    def __init__(self, cfg: CameraSection, counters: SharedCounters, log: Any, stop: Any) -> None:
        self.cfg = cfg
        self.camera = GenICamCamera(cfg)
        self.counters = counters
        self.log = log
        self.stop = stop
        self.backoff = Backoff(int(cfg.reconnect_min_ms * 1e6), int(cfg.reconnect_max_ms * 1e6))
        self.down_since_ns: int | None = None
        self.drill = False  # set by SIGUSR1: drop the device connection as a pulled cable would

    def connect(self) -> bool:
        """Open and start the camera; False (logged, back-off slept) when it is not there."""
        try:
            info = self.camera.open()
            self.camera.start()
        except CameraSettingError:
            raise  # the camera is there but refuses the configuration: exit 78, do not retry
        except CameraError as exc:
            with contextlib.suppress(Exception):
                self.camera.abort()
            self._mark_down()
            delay_ns = self.backoff.next_delay_ns()
            self.log.warning("camera_open_failed", error=str(exc), retry_in_ms=delay_ns / 1e6)
            self.idle(delay_ns)
            return False
        self.backoff.reset()
        self.log.info(
            "camera_opened",
            producer=info.producer,
            model=info.model,
            serial_number=info.serial_number,
            applied=info.applied,
            skipped=info.skipped,
        )
        for key in info.skipped:
            self.log.warning("camera_setting_skipped", key=f"camera.{key}", reason="the camera has no such node")
        self._mark_up()
        return True

    def lost(self, error: str) -> None:
        """The stream failed: drop the device and go to reconnecting."""
        self.log.error("camera_lost", error=error, action="reconnecting")
        with contextlib.suppress(Exception):
            self.camera.abort()
        self._mark_down()

    def _mark_down(self) -> None:
        if self.down_since_ns is None:
            self.down_since_ns = time.monotonic_ns()
            self.counters.set(Count.CAMERA_DOWN, 1)

    def _mark_up(self) -> None:
        if self.down_since_ns is None:
            return
        down_ns, missed = self._count_downtime()
        self.down_since_ns = None
        self.counters.add(Count.CAMERA_RECONNECTS)
        self.counters.set(Count.CAMERA_DOWN, 0)
        self.log.warning(
            "camera_recovered",
            down_ms=round(down_ns / 1e6, 1),
            frames_missed_estimate=missed,
            basis="downtime x camera.frame_rate_hz" if self.cfg.frame_rate_hz else "frame rate not configured",
        )

    def still_down_at_stop(self) -> None:
        """At stop with the camera still down: its downtime so far counts too (the fault stays set)."""
        if self.down_since_ns is not None:
            self._count_downtime()
            self.down_since_ns = None

    def _count_downtime(self) -> tuple[int, int]:
        """Add the downtime since :attr:`down_since_ns`, and the frames it cost, to the counters."""
        assert self.down_since_ns is not None
        down_ns = time.monotonic_ns() - self.down_since_ns
        missed = int(down_ns / 1e9 * self.cfg.frame_rate_hz) if self.cfg.frame_rate_hz else 0
        self.counters.add(Count.CAMERA_DOWNTIME_MS, down_ns // 1_000_000)
        self.counters.add(Count.CAMERA_MISSED_ESTIMATE, missed)
        return down_ns, missed

    def idle(self, duration_ns: int) -> None:
        """Sleep in short slices, keeping the heartbeat and honouring stop."""
        end = time.monotonic_ns() + duration_ns
        while not self.stop.is_set() and (now := time.monotonic_ns()) < end:
            self.counters.set(Count.ACQ_HEARTBEAT_NS, now)
            time.sleep(min(0.05, (end - now) / 1e9))


def wait_for_plc_part_id(counters: SharedCounters, log: Any, stop: Any, link: CameraLink) -> None:
    """plc.part_ids = "plc": no frame is taken before the PLC worker has read the PLC's part id
    (a reported fault meanwhile), so every part id continues the PLC's numbering."""
    if counters.get(Count.PART_ID_BASE) or stop.is_set():
        return
    counters.set(Count.AWAITING_PART_ID, 1)
    why = "plc.part_ids = plc; the PLC block's plc_part_id is 0 or not read yet"
    log.warning("camera_waiting_for_plc_part_id", reason=why)
    while not counters.get(Count.PART_ID_BASE) and not stop.is_set():
        link.idle(20_000_000)
    counters.set(Count.AWAITING_PART_ID, 0)


def acquisition_main(ctx: WorkerContext, ring: RingHandle, stop: Any, ready: Any, max_frames: int | None) -> None:
    """Process entry: stream the camera into the ring until *stop* or *max_frames*, reconnecting as needed."""
    log, sink = ctx.enter(Role.ACQUIRE)
    cfg = ctx.cfg
    counters = ctx.counters
    producer = RingProducer(ring)
    if producer.compiled_fallback is not None:
        log.warning("ring_write_not_compiled", reason=producer.compiled_fallback, effect="slower, still correct")
    link = CameraLink(cfg.camera, counters, log, stop)
    if cfg.plc.part_ids == "plc":
        wait_for_plc_part_id(counters, log, stop, link)
    # Part ids continue across worker restarts: one per acquired frame, in order.
    writer = FrameWriter(producer, counters, log, first_part_id=first_part_id(counters) + counters.get(Count.ACQUIRED))

    def on_drill(_signum: int, _frame: FrameType | None) -> None:
        link.drill = True

    signal.signal(signal.SIGUSR1, on_drill)
    ready.set()  # running; a camera that is not there yet is a reported fault, not a failed start
    try:
        while not stop.is_set() and (max_frames is None or counters.get(Count.ACQUIRED) < max_frames):
            now = time.monotonic_ns()
            counters.set(Count.ACQ_HEARTBEAT_NS, now)
            ctx.report_logs(Role.ACQUIRE, sink, now)
            if not link.camera.is_open:
                if link.connect():
                    writer.ids = FrameIdTracker()  # the camera numbers frames afresh after a reopen
                continue
            if link.drill:
                link.drill = False
                link.lost("fault drill (SIGUSR1): device connection dropped")
                # down as long as a cable pulled and plugged back: the fault is seen (STATUS, fault
                # coil) however fast the reopen; it took 70 ms here, about one supervisor tick
                link.idle(int(cfg.camera.reconnect_min_ms * 1e6))
                continue
            try:
                if not link.camera.fetch(writer):
                    counters.set(Count.CAMERA_TIMEOUTS, link.camera.timeouts)
            except CameraError as exc:
                counters.add(Count.CAMERA_ERRORS)
                link.lost(str(exc))
        link.still_down_at_stop()
        log.info("acquisition_stopped", acquired=counters.get(Count.ACQUIRED), lost=writer.ids.lost)
    finally:
        writer.flush(RING_FLUSH_TIMEOUT_S)
        link.camera.close()
        producer.close()
        ctx.report_logs(Role.ACQUIRE, sink, None)
        shutdown_logging()
