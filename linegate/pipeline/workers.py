"""The worker processes: what they share, how one is spawned, and how its exit is explained."""

from __future__ import annotations

import os
import queue
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from linegate.archive.queue import ArchiveQueue
from linegate.config.lanes import Lane, lanes_of
from linegate.config.schema import Config
from linegate.counters import SharedCounters, Snapshot
from linegate.pipeline.acquire import acquisition_main
from linegate.pipeline.baton import Baton
from linegate.pipeline.context import WorkerContext, run_worker
from linegate.pipeline.infer import inference_main
from linegate.pipeline.inflight import InFlight
from linegate.pipeline.log_pipes import LogCollector, PipeEnd, log_pipe
from linegate.pipeline.plc_io import plc_main
from linegate.pipeline.process import start_shielded
from linegate.plc.pending import PendingTable
from linegate.plc.reject_pipe import reject_channel
from linegate.ring import FrameRing, RingGeometry, ring_path
from linegate.ring.sync import PipeQueue, SharedEvent, SharedSemaphore
from linegate.roles import Role


@dataclass
class Worker:
    """One worker process and what the supervisor knows about it."""

    role: Role
    generation: int
    proc: BaseProcess
    cfg: Config
    stop: Any
    baton: Baton
    ready: Any
    started_ns: int
    down_since_ns: int | None = None  # set for a restart: when its predecessor was found dead
    up_since_ns: int = 0  # when it was first seen ready (0: not yet)
    lane: int = 0  # the camera an acquisition or PLC worker serves (inference serves them all)
    camera: str = ""  # that camera's name, with several cameras ([[cameras]])
    log_end: PipeEnd | None = None  # its log pipe, as the collector reads it

    @property
    def up(self) -> bool:
        return self.up_since_ns > 0

    @property
    def key(self) -> tuple[Role, int]:
        """The supervisor's key for the job this worker does."""
        return self.role, self.lane

    @property
    def job(self) -> str:
        """The job in words: the role, and the camera with several cameras (``acquire left``)."""
        return f"{self.role} {self.camera}" if self.camera else str(self.role)

    @property
    def name(self) -> str:
        return worker_name(self.role, self.camera, self.generation)


def worker_name(role: Role, camera: str, generation: int) -> str:
    """``acquire#3``, or ``acquire-left#3`` for a camera's worker with several cameras."""
    return f"{role}-{camera}#{generation}" if camera else f"{role}#{generation}"


@dataclass
class LaneShared:
    """What one camera's workers share with the rest: its frame ring, its counters (reconciled per
    camera), the pipe its rejects go to its PLC worker through, and the rejects that worker holds."""

    lane: Lane
    ring: FrameRing
    counters: SharedCounters
    table: PendingTable
    reject_reader: Connection
    reject_writer: Connection

    def close(self) -> None:
        self.ring.close()
        self.reject_reader.close()
        self.reject_writer.close()


@dataclass
class Shared:
    """Everything the workers share, created once per run by the supervisor and outliving any
    one worker: that is what lets a restarted worker pick up where a dead one stopped."""

    ctx: Any  # the spawn context
    lanes: list[LaneShared]
    """One per camera (one without [[cameras]])."""
    inflight: InFlight  # the frame the inference loop is deciding
    errors: PipeQueue  # (worker name, exit code, message) of a worker that failed
    collector: LogCollector
    archive: ArchiveQueue | None = None  # frames for the reject image archive ([archive] enabled)

    @property
    def counters(self) -> SharedCounters:
        """The run's own counters (the supervisor's, the inference worker's): the first camera's."""
        return self.lanes[0].counters

    @property
    def several(self) -> bool:
        """Several cameras ([[cameras]]): workers, records and faults name their camera."""
        return len(self.lanes) > 1

    @property
    def removed_stale_ring(self) -> bool:
        """A ring file an older version's killed run left was removed at creation."""
        return any(lane.ring.removed_stale for lane in self.lanes)

    def camera_snapshots(self) -> list[tuple[str, Snapshot]]:
        """With several cameras, each one's name and counters now; none with one camera."""
        return [(lane.lane.name, lane.counters.snapshot()) for lane in self.lanes] if self.several else []

    def snapshot(self) -> Snapshot:
        """Every counter now, summed over the cameras."""
        if not self.several:
            return self.counters.snapshot()
        return Snapshot.total([lane.counters.snapshot() for lane in self.lanes])

    @classmethod
    def create(cls, ctx: Any, cfg: Config, counters: SharedCounters, collector: LogCollector) -> Shared:
        """No shared object here has a name in /dev/shm (no multiprocessing Lock, Event, Queue, ...:
        those are named semaphores that a SIGKILL of the whole service leaves behind): the ring and
        its lock live in anonymous shared memory, the events too (linegate.ring.sync), the rest are
        pipes and RawArrays."""
        geometry = RingGeometry(cfg.camera.height, cfg.camera.width, cfg.camera.channels, cfg.camera.pixel_format)
        lanes = lanes_of(cfg)
        ready = SharedSemaphore(0)  # one wake-up for the inference loop, whichever camera's ring posts it
        shared: list[LaneShared] = []
        try:
            for lane in lanes:
                ring = FrameRing.create(
                    ctx,
                    instance=cfg.instance.name,
                    path=ring_path(f"{cfg.instance.name}-{lane.name}") if cfg.cameras else None,
                    geometry=geometry,
                    slots=cfg.ring.slots,
                    journal_size=cfg.ring.journal_size,
                    when_full=cfg.ring.when_full,
                    ready=ready,
                )
                lane_counters = counters if lane.index == 0 else SharedCounters.create(ctx)
                reader, writer = reject_channel(ctx)
                table = PendingTable.create(ctx, cfg.plc.queue_size)
                shared.append(LaneShared(lane, ring, lane_counters, table, reader, writer))
        except BaseException:
            for made in shared:
                made.close()
            raise
        archive = None
        if cfg.archive.enabled:
            archive = ArchiveQueue.create(geometry, cfg.archive.queue_frames, instance=cfg.instance.name)
        return cls(ctx, shared, InFlight.create(ctx), PipeQueue(ctx), collector, archive)

    def close(self) -> None:
        for lane in self.lanes:
            lane.close()
        if self.archive is not None:
            self.archive.close()
        self.errors.close()


class WorkerFactory:
    """Spawns numbered workers over the shared state and explains how each one ended."""

    def __init__(self, shared: Shared, max_frames: int | None) -> None:
        self.shared = shared
        self.max_frames = max_frames
        self._generation = 0
        self._messages: dict[str, tuple[int, str]] = {}

    def spawn(self, role: Role, cfg: Config, predecessor: Baton | None = None, lane: int = 0) -> Worker:
        """A *role* worker on *cfg*; an acquisition or PLC worker for camera *lane*, on that
        camera's configuration and counters (the inference worker serves every camera)."""
        self._generation += 1
        s, ctx = self.shared, self.shared.ctx
        own = s.lanes[lane]
        camera = own.lane.name if s.several and role is not Role.INFER else ""
        worker_cfg = lanes_of(cfg)[lane].cfg if role is not Role.INFER else cfg
        log_reader, log_writer = log_pipe(ctx)
        wctx = WorkerContext(worker_cfg, own.counters, log_writer, os.getpid(), camera)
        stop, ready = SharedEvent(), SharedEvent()
        baton = Baton.create()
        name = worker_name(role, camera, self._generation)
        if role is Role.PLC:
            args: tuple[Any, ...] = (
                plc_main,
                wctx,
                own.reject_reader,
                stop,
                ready,
                own.table,
                baton,
                predecessor,
                s.inflight,
            )
        elif role is Role.INFER:
            rings = [each.ring.handle for each in s.lanes]
            writers = [each.reject_writer for each in s.lanes]
            cameras = [(each.lane.name, each.counters) for each in s.lanes] if s.several else None
            archive = s.archive.handle if s.archive is not None else None
            args = (inference_main, wctx, rings, stop, writers, ready, baton, predecessor, s.inflight, archive, cameras)
        else:
            args = (acquisition_main, wctx, own.ring.handle, stop, ready, self.max_frames)
        proc = ctx.Process(target=run_worker, args=(name, s.errors, *args), name=f"linegate-{name.split('#')[0]}")
        start_shielded(proc)
        log_writer.close()  # the worker has its copy: the pipe ends (EOF) when the worker does
        log_end = s.collector.add(log_reader, role)
        return Worker(role, self._generation, proc, cfg, stop, baton, ready, time.monotonic_ns(), lane=lane,
                      camera=camera, log_end=log_end)  # fmt: skip

    def note(self, w: Worker, code: int, message: str) -> None:
        """Record why the supervisor is about to kill *w* (its exit will be explained by this)."""
        self._messages[w.name] = (code, message)

    def exit_of(self, w: Worker) -> tuple[int, str]:
        """``(exit code, message)`` of a worker that has exited."""
        self._collect()
        if w.name in self._messages:
            return self._messages[w.name]
        code = w.proc.exitcode
        if code is not None and code < 0:
            return 1, f"killed by {signal.Signals(-code).name}"
        return code or 0, f"exited with code {code}"

    def _collect(self) -> None:
        while True:
            try:
                name, code, message = self.shared.errors.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            self._messages[name] = (code, message)
