"""The supervisor: starts the workers, keeps them healthy, reloads, stops them in order, reconciles.

Start: PLC worker, then inference (READY waits until its engine is warm), then acquisition.
Run: a worker that dies is restarted (its in-flight frames and rejects are recovered or
reported); one whose heartbeat goes stale is killed and restarted; more restarts than the budget
allows ends the run non-zero for systemd. The systemd watchdog is pinged only while every worker
is up and beating. SIGHUP reloads the configuration: an invalid one is logged and ignored, a
valid one replaces the inference and/or PLC worker through a hand-over at a frame boundary
(:mod:`linegate.pipeline.reloader`, which also follows the PLC's recipe).
Stop (SIGTERM/SIGINT, ``max_frames``, a fatal error): acquisition first, then inference drains
the ring, then the PLC worker delivers or reports every pending reject and sets its outputs safe.
Signal handlers only set flags; a second stop signal or the stop timeout kills the workers.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path
from types import FrameType
from typing import Any

from linegate.archive.store import ArchiveStore
from linegate.archive.writer import ArchiveWriter
from linegate.config.schema import Config
from linegate.counters import Count, SharedCounters, Snapshot, reconcile
from linegate.logs import LogOutputs, configure_logging, get_logger, shutdown_logging
from linegate.pipeline.log_pipes import LogCollector, PipeSink, log_pipe, warn_if_small
from linegate.pipeline.published_state import RunState, build_state
from linegate.pipeline.recovery import final_sweep, recover_after
from linegate.pipeline.reloader import Reloader
from linegate.pipeline.summary import RunSummary, camera_counts
from linegate.pipeline.workers import Shared, Worker, WorkerFactory
from linegate.roles import HEARTBEAT_OF_ROLE, PER_CAMERA, START_ORDER, Role
from linegate.service.faults import FaultTimes
from linegate.service.health import stalled
from linegate.service.instance_lock import InstanceLock
from linegate.service.metrics import LinegateCollector, RunView
from linegate.service.metrics_server import MetricsServer, serve_metrics
from linegate.service.notify import Notifier, watchdog_interval_ns
from linegate.service.restarts import RestartBudget
from linegate.service.state_file import state_path, write_state
from linegate.service.status import fault_reasons, fps_between, status_line

TICK_NS = 1_000_000_000
POLL_S = 0.05
PLC_DOWN_FAULT_S = 1.0
"""A PLC link down this long is a fault (shorter: a reconnect, rejects are held meanwhile)."""
EX_CONFIG = 78


Tick = Callable[[Snapshot, float], None]


ARCHIVE_DRAIN_S = 5.0
"""At stop, the archive writer gets this long to write the images still queued."""


class Supervisor:
    """Runs one pipeline from start to a clean, reconciled stop."""

    def __init__(
        self,
        cfg: Config,
        *,
        config_path: Path | None = None,
        log_file: Path | None = None,
        log_stdout: bool = True,
        max_frames: int | None = None,
        on_tick: Tick | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.log_file = log_file if log_file is not None else cfg.logging.file
        self.log_stdout = log_stdout
        self.max_frames = max_frames
        self.on_tick = on_tick
        self.notify = Notifier()
        self._stop_signals = 0
        self._reload_requested = False
        self._stop_reason = ""
        self._failures: list[tuple[str, int, str]] = []
        self.workers: dict[tuple[Role, int], Worker] = {}
        """The active worker of each job: (role, camera index; 0 for inference)."""
        self._faults = FaultTimes()
        self._fault_kinds: tuple[str, ...] = ()
        self._reasons: list[str] = []
        self._started = False  # every worker was up once: from then on, faults are timed
        self._plc_down_since: dict[int, int] = {}  # per camera: since when its PLC link is down
        self._plc_seen: set[int] = set()  # cameras whose PLC link was up once
        self._acquisition_done: set[int] = set()  # cameras whose acquisition reached max_frames
        self._forced = ""
        self._fps = 0.0
        self._state_failed = False
        self._inspecting = False
        self._metrics: MetricsServer | None = None

    # Signal handlers only record what happened; the main loop acts on it.
    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signals += 1
        self._stop_reason = self._stop_reason or signal.Signals(signum).name

    def _on_reload_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._reload_requested = True

    def run(self) -> RunSummary:
        instance_lock = InstanceLock.acquire(self.cfg.instance.name)  # first: a second run stops here (exit 78)
        handlers: dict[signal.Signals, Callable[[int, FrameType | None], None]] = {
            signal.SIGTERM: self._on_stop_signal,
            signal.SIGINT: self._on_stop_signal,
            signal.SIGHUP: self._on_reload_signal,
        }
        previous = {s: signal.signal(s, h) for s, h in handlers.items()}
        try:
            return self._run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            instance_lock.release()

    # -- the three phases ---------------------------------------------------------------------
    def _run(self) -> RunSummary:
        cfg = self.cfg
        self.ctx: Any = mp.get_context("spawn")
        self.counters = SharedCounters.create(self.ctx)
        outputs = LogOutputs(stream=sys.stdout if self.log_stdout else None, file=self.log_file)
        self.collector = LogCollector(outputs, self.counters)
        reader, writer = log_pipe(self.ctx)
        self.collector.add(reader, Role.SUPERVISOR)
        pipe = PipeSink(writer)
        self.sink = configure_logging(
            level=cfg.logging.level,
            sink=pipe,
            static={"instance": cfg.instance.name, "proc": Role.SUPERVISOR, "pid": os.getpid()},
        )
        self.log = get_logger()
        warn_if_small(pipe, self.log)
        self.shared = Shared.create(self.ctx, cfg, self.counters, self.collector)
        self.archive_writer: ArchiveWriter | None = None
        if self.shared.archive is not None:  # a thread here: writing images is no worker's hot path
            store = ArchiveStore.from_settings(cfg.archive, self.log)
            self.archive_writer = ArchiveWriter(self.shared.archive.handle, store, log=self.log)
            self.archive_writer.start()
        self.factory = WorkerFactory(self.shared, self.max_frames)
        for ring in (lane.ring for lane in self.shared.lanes if lane.ring.removed_stale):
            self.log.warning("stale_ring_removed", path=ring.handle.path, reason="left by a run that was killed")
        sup = cfg.supervisor
        self.budget = RestartBudget(sup.restart_limit, int(sup.restart_window_ms * 1e6))
        self.watchdog_ns = watchdog_interval_ns()
        # A heartbeat counts as fresh for the watchdog only if younger than the ping interval, so
        # a stalled loop stops the pings within one watchdog period even when the supervisor's
        # own stall timeout (kill and restart) is longer.
        self._fresh_ns = int(sup.heartbeat_timeout_ms * 1e6)
        if self.watchdog_ns:
            self._fresh_ns = min(self._fresh_ns, self.watchdog_ns)
        self.t_start = time.monotonic_ns()
        self.log.info(
            "linegate_starting",
            config=str(self.config_path) if self.config_path else None,
            model=cfg.model.id,
            watchdog_ms=self.watchdog_ns / 1e6 if self.watchdog_ns else None,
            notify=self.notify.enabled,
        )
        self.notify.status("starting: loading the engine")
        self._state_path = state_path(cfg.instance.name)
        self._run_state = RunState(cfg.instance.name, str(self.config_path) if self.config_path else None, time.time())
        self.reloader = Reloader(
            self,
            config_path=self.config_path,
            counters=self.counters,
            log=self.log,
            notify=self.notify,
            answers=self._run_state.reload,
        )
        cameras = [(lane.lane.name, lane.counters) for lane in self.shared.lanes if self.shared.several]
        collector = LinegateCollector(self.counters, self._metrics_view, cameras=cameras)
        self._metrics = serve_metrics(cfg.metrics, collector, self.log)
        self.publish("starting")
        try:
            if self._start():
                self.notify.ready(self.status_text())
                self.log.info("linegate_ready", startup_ms=round((time.monotonic_ns() - self.t_start) / 1e6, 1))
                self._supervise()
            self._stop_all()
        finally:
            for w in self._all_workers():
                if w.proc.is_alive():
                    w.proc.kill()
                    w.proc.join()
            if self._metrics is not None:  # before the ring closes: a scrape reads it
                self._metrics.stop()
            if self.archive_writer is not None:  # after the workers: every image offered is queued by now
                self.archive_writer.stop(ARCHIVE_DRAIN_S)
                self.log.info("archive_summary", directory=str(cfg.archive.directory), **self.archive_writer.stats())
            final_sweep(self.shared, self.log, self.cfg.deadline.fail_safe)
            self.shared.close()
            self._state_path.unlink(missing_ok=True)
        return self._summarize()

    def _start(self) -> bool:
        """PLC, then inference, then acquisition, each started once the previous one is ready
        (inference: engine loaded and warm); False if start-up failed or was interrupted."""
        deadline_ns = self.t_start + int(self.cfg.supervisor.start_timeout_ms * 1e6)
        for role in START_ORDER:
            started = [self._spawn(role, lane) for lane in self._lanes_of(role)]
            for worker in started:
                while not worker.ready.wait(POLL_S):
                    if self._stop_signals:
                        return False
                    dead = [w for w in self.workers.values() if not w.proc.is_alive()]
                    if dead:
                        code, message = self.factory.exit_of(dead[0])
                        self._fatal(dead[0].job, code, f"{dead[0].job} worker failed during start-up: {message}")
                        return False
                    if time.monotonic_ns() > deadline_ns:
                        limit = f"supervisor.start_timeout_ms ({self.cfg.supervisor.start_timeout_ms:.0f} ms)"
                        self._fatal(worker.job, 1, f"{worker.job} worker not ready within {limit}")
                        return False
                worker.up_since_ns = time.monotonic_ns()
        return True

    def _lanes_of(self, role: Role) -> range:
        """The cameras a *role* worker runs for: one inference worker for all, the others one each."""
        return range(len(self.shared.lanes) if role in PER_CAMERA else 1)

    def _spawn(self, role: Role, lane: int) -> Worker:
        worker = self.workers[(role, lane)] = self.factory.spawn(role, self.cfg, lane=lane)
        return worker

    def _supervise(self) -> None:
        next_ping = next_tick = time.monotonic_ns()
        previous: Snapshot | None = None
        last_tick = next_tick
        while not self._stop_signals and not self._stop_reason:
            sentinels: dict[Any, Worker] = {w.proc.sentinel: w for w in self._all_workers()}
            for sentinel in wait(list(sentinels), timeout=POLL_S):
                self._on_exit(sentinels[sentinel])
            if self._stop_reason:
                break
            if self._reload_requested:
                self._reload_requested = False
                self.reloader.request()
            self.reloader.follow_recipe()
            now = time.monotonic_ns()
            self._mark_up(now)
            self.reloader.advance()
            self._kill_stalled(now)
            healthy = self._update_inspecting()
            if self.watchdog_ns and healthy and now >= next_ping:
                self.notify.watchdog()
                next_ping = now + self.watchdog_ns
            if now >= next_tick:
                snapshot = self.shared.snapshot()
                self.notify.status(self._status_text(previous, (now - last_tick) / 1e9, snapshot))
                if self.on_tick is not None:
                    self.on_tick(snapshot, (now - self.t_start) / 1e9)
                self.counters.add_log_drops(Role.SUPERVISOR, self.sink.unreported_drops())
                self._fps = fps_between(snapshot, previous, (now - last_tick) / 1e9)
                self.publish(snapshot=snapshot)
                previous, last_tick, next_tick = snapshot, now, now + TICK_NS

    def publish(self, phase: str | None = None, snapshot: Snapshot | None = None) -> None:
        """Rewrite the state file (``linegate status`` / ``linegate reload`` read it)."""
        if phase is None:
            phase = "inspecting" if self._inspecting else ("fault" if self._started else "starting")
        state = build_state(
            self._run_state,
            phase,
            self._reasons,
            snapshot if snapshot is not None else self.shared.snapshot(),
            self._fps,
            (time.monotonic_ns() - self.t_start) / 1e9,
            self.cfg.model.id,
            f"{self.cfg.plc.protocol} {self.cfg.plc.mode}",
            self.shared.camera_snapshots(),
        )
        try:
            write_state(self._state_path, state)
        except OSError as exc:  # status is a convenience: never a reason to stop inspecting
            if not self._state_failed:
                self._state_failed = True
                self.log.warning("state_file_failed", path=str(self._state_path), error=str(exc))

    def _stop_all(self) -> None:
        """Acquisition, then inference (drains the ring), then PLC (delivers or reports, safe state)."""
        for lane in self.shared.lanes:
            lane.counters.set(Count.INSPECTING, 0)
        self.publish("stopping")
        reason = self._stop_reason or "stopping"
        self.notify.stopping(f"stopping ({reason}): draining the ring and pending rejects")
        self.log.info("linegate_stopping", reason=reason)
        end_ns = time.monotonic_ns() + int(self.cfg.supervisor.stop_timeout_ms * 1e6)
        for role in reversed(START_ORDER):
            active = [w for key, w in self.workers.items() if key[0] is role]
            successor = self.reloader.candidates.get(role)
            for w in (*active, successor):
                if w is not None:
                    w.stop.set()
            for w in active:
                self._join_on_stop(w, end_ns)
            worker = active[0] if active else None
            if successor is None:
                continue
            # A reload was handing this role over. If the successor never asked for the role, the
            # worker kept it and drained everything: cancel the successor. If it did ask, it may
            # hold frames or rejects now: it finds the stop set and drains them itself.
            if worker is not None and not worker.baton.handover.is_set():
                successor.proc.kill()
                successor.proc.join()
                self.log.info("successor_cancelled", worker=successor.name, role=str(role))
            else:
                self._join_on_stop(successor, end_ns)

    def _join_on_stop(self, worker: Worker, end_ns: int) -> None:
        """Wait for a stopping worker; kill it at the stop timeout or a second stop signal."""
        while worker.proc.is_alive() and time.monotonic_ns() < end_ns and self._stop_signals < 2:
            worker.proc.join(POLL_S)
        if worker.proc.is_alive():
            why = "second stop signal" if self._stop_signals >= 2 else "supervisor.stop_timeout_ms"
            self.log.error("worker_killed_on_stop", worker=worker.name, reason=why)
            self._forced = f"workers killed ({why})"
            worker.proc.kill()
            worker.proc.join()

    # -- workers ------------------------------------------------------------------------------
    def _all_workers(self) -> list[Worker]:
        return [*self.workers.values(), *self.reloader.candidates.values()]

    def _on_exit(self, w: Worker) -> None:
        w.proc.join()
        code, message = self.factory.exit_of(w)
        active = self.workers.get(w.key)
        if self.reloader.successor_exited(w, message):  # the reload is refused
            if active is not None:
                active.baton.recover()  # a baton lock the successor died holding; its request withdrawn
                if not active.proc.is_alive():
                    if active.baton.handed_over():  # the successor had the role: what it held, recovered
                        self._died(w, message)
                    else:  # died too: its own exit will find the restart the role's worker
                        self._died(active, self.factory.exit_of(active)[1])
                    self._restart(active, "its successor failed after the hand-over")
            return
        if active is not w:
            return  # handed over to a reload's successor, since promoted
        if w.baton.handed_over():  # let go (then exited, any code): nothing of its own in flight
            if w.proc.exitcode != 0:
                self.log.warning("worker_failed_after_hand_over", worker=w.name, exit_code=w.proc.exitcode,
                                 error=message)  # fmt: skip
            if self.reloader.candidates.get(w.role) is not None:
                return  # handed over to a reload's successor, which is promoted once ready
            self._restart(w, "it let go of its role as its successor gave up waiting")
            return
        if w.role is Role.ACQUIRE and w.proc.exitcode == 0 and self.max_frames is not None:
            self._acquisition_done.add(w.lane)  # each camera stops at max_frames: the run ends with the last
            if len(self._acquisition_done) == len(self.shared.lanes):
                self._stop_reason = "max_frames reached"
            return
        if code == EX_CONFIG:
            self._fatal(w.job, code, message)
            return
        self._died(w, message)
        self._restart(w, message)

    def _died(self, w: Worker, message: str) -> None:
        """A worker that crashed or was killed: reported, and what it held freed (recovery)."""
        self.log.error(
            "worker_died",
            worker=w.name,
            **({"camera": w.camera} if w.camera else {}),
            pid=w.proc.pid,
            exit_code=w.proc.exitcode,
            error=message,
            t_ns=time.monotonic_ns(),
        )
        recover_after(w, self.shared, self.log, self.cfg.deadline.fail_safe)
        w.baton.recover()  # a baton lock it died holding

    def _restart(self, w: Worker, why: str) -> None:
        """Start a successor for *w* with the same configuration, if the restart budget allows."""
        now = time.monotonic_ns()
        if not self.budget.allow(now):
            limit = self.cfg.supervisor
            self._fatal(
                w.job,
                1,
                f"{w.job} worker died ({why}); restart limit reached "
                f"({limit.restart_limit} in {limit.restart_window_ms:.0f} ms)",
            )
            return
        self.counters.add(Count.WORKER_RESTARTS)
        self._run_state.last_restart = {"role": w.job, "reason": why, "unix": round(time.time(), 1)}
        successor = self.factory.spawn(w.role, w.cfg, lane=w.lane)
        successor.down_since_ns = now
        self.workers[w.key] = successor
        self.log.warning(
            "worker_restarting", worker=successor.name, replaces=w.name, restarts_in_window=self.budget.used(now)
        )

    def _mark_up(self, now: int) -> None:
        """A (re)started worker is up once it says it is ready (engine warm, PLC rejects taken over,
        acquisition loop running)."""
        for w in self._all_workers():
            if w.up or not w.ready.is_set():
                continue
            w.up_since_ns = now
            if w.down_since_ns is not None and self.workers.get(w.key) is w:
                self.log.warning(
                    "worker_recovered", worker=w.name, down_ms=round((now - w.down_since_ns) / 1e6, 1), t_ns=now
                )

    def _stale(self, now: int, threshold_ns: int) -> dict[tuple[Role, int], int]:
        """Up workers whose heartbeat is older than *threshold_ns*, with its age (each camera's
        workers beat in that camera's counters)."""
        lanes = self.shared.lanes
        beats = {key: lanes[key[1]].counters.get(HEARTBEAT_OF_ROLE[key[0]]) for key in self.workers}
        started = {key: w.up_since_ns for key, w in self.workers.items() if w.up}
        return stalled(beats, started, now, threshold_ns)

    def _kill_stalled(self, now: int) -> None:
        """Kill a worker whose loop stopped turning (its exit is then handled as a crash)."""
        sup = self.cfg.supervisor
        for key, age_ns in self._stale(now, int(sup.heartbeat_timeout_ms * 1e6)).items():
            w = self.workers[key]
            self.counters.add(Count.WORKER_STALLS)
            self.log.error(
                "worker_stalled",
                worker=w.name,
                heartbeat_age_ms=round(age_ns / 1e6, 1),
                action="killing and restarting it",
            )
            self.factory.note(w, 1, f"stalled: no heartbeat for {age_ns / 1e6:.0f} ms")
            w.proc.kill()
            w.proc.join(1.0)  # gone before the next check, so it is reported once
        for w in self._all_workers():
            if not w.up and w.proc.is_alive() and now - w.started_ns > sup.start_timeout_ms * 1e6:
                self.factory.note(w, 1, "not ready within supervisor.start_timeout_ms")
                w.proc.kill()
                w.proc.join(1.0)

    def _update_inspecting(self) -> bool:
        """True while every worker is up and beating. Inspecting (the PLC's fault output off) also
        needs no fault: camera, PLC link, PLC alive counter, recipe. With several cameras each camera
        inspects on its own (its own fault output): one camera down does not stop the others.
        Faults are timed for the summary."""
        now = time.monotonic_ns()
        expected = sum(len(self._lanes_of(role)) for role in START_ORDER)
        all_up = all(w.up for w in self.workers.values()) and len(self.workers) == expected
        stale = self._stale(now, self._fresh_ns)
        healthy = all_up and not stale
        snapshot = self.shared.snapshot()
        shared_reasons = fault_reasons(  # the inference worker serves every camera
            Snapshot.of({}),
            [w.job for w in self.workers.values() if not w.up and w.role is Role.INFER],
            [str(key[0]) for key in stale if key[0] is Role.INFER],
        )
        infer = self.workers.get((Role.INFER, 0))
        infer_ok = infer is not None and infer.up and not shared_reasons
        reasons = list(shared_reasons)
        every_lane = True
        for lane in self.shared.lanes:
            index, lane_snapshot = lane.lane.index, lane.counters.snapshot()
            own = {role: self.workers.get((role, index)) for role in PER_CAMERA}
            lane_reasons = fault_reasons(
                lane_snapshot,
                [str(role) for role, w in own.items() if w is not None and not w.up],
                [str(role) for role, i in stale if i == index and role in PER_CAMERA],
                self._plc_unreachable_s(index, now, lane_snapshot),
            )
            if self.shared.several:
                lane_reasons = [f"camera {lane.lane.name}: {r}" for r in lane_reasons]
            lane_inspecting = infer_ok and not lane_reasons and all(w is not None and w.up for w in own.values())
            lane.counters.set(Count.INSPECTING, int(lane_inspecting))
            every_lane = every_lane and lane_inspecting
            reasons += lane_reasons
        inspecting = healthy and every_lane and not reasons
        self._started = self._started or all_up
        self._reasons = reasons if self._started else []  # before that, STATUS says "starting"
        if self._started:
            self._faults.update(reasons, now)
        kinds = tuple(r.split(" for ", 1)[0] for r in self._reasons) if self._started else ()
        if (inspecting, kinds) != (self._inspecting, self._fault_kinds):  # tell the journal and STATUS at once
            self._inspecting, self._fault_kinds = inspecting, kinds
            if inspecting:
                self.log.info("inspection_resumed")
            elif self._started:
                self.log.error("inspection_suspended", faults=self._reasons, plc_mode=self.cfg.plc.mode)
            self.notify.status(self._status_text(None, 0.0, snapshot))
            self.publish(snapshot=snapshot)
        return healthy

    def _plc_unreachable_s(self, lane: int, now: int, s: Snapshot) -> float | None:
        """Seconds camera *lane*'s PLC link has been down, once that is longer than a reconnect
        blip (or from the start, until it first connects: never inspecting without a PLC)."""
        if s[Count.PLC_CONNECTED]:
            self._plc_down_since.pop(lane, None)
            self._plc_seen.add(lane)
            return None
        since = self._plc_down_since.setdefault(lane, now)
        down = (now - since) / 1e9
        return down if down >= PLC_DOWN_FAULT_S or lane not in self._plc_seen else None

    def _fatal(self, role: str, code: int, message: str) -> None:
        self.log.error("linegate_failed", worker=role, exit_code=code, error=message)
        self._failures.append((role, code, message))
        self._stop_reason = self._stop_reason or message

    # -- what the reloader asks of the supervisor (linegate.pipeline.reloader.ReloadHost) -------
    def active(self, role: Role) -> Worker | None:
        return self.workers.get((role, 0))

    def spawn_successor(self, role: Role, cfg: Config, predecessor: Worker) -> Worker:
        return self.factory.spawn(role, cfg, predecessor=predecessor.baton, lane=predecessor.lane)

    def promote(self, successor: Worker) -> None:
        self.workers[successor.key] = successor

    def adopt(self, cfg: Config) -> None:
        self.cfg = cfg

    def status_text(self) -> str:
        return self._status_text(None, 0.0)

    def _metrics_view(self) -> RunView:
        """What a scrape needs beyond the counters (called from the metrics server's thread: reads only)."""
        slots = in_slots = 0
        for lane in self.shared.lanes:  # every camera's ring together
            ring = lane.ring.counters()
            journal = ring["journal_written"] - ring["journal_read"]
            in_slots += len(lane.ring.unresolved()) - journal  # unlocked reads: a gauge, clamped to the ring
            slots += lane.ring.handle.layout.slots
        return RunView(
            ready=self._started and not (self._stop_signals or self._stop_reason),
            faults=len(self._reasons),
            model_id=self.cfg.model.id,
            backend=self.cfg.model.backend,
            budget_ms=self.cfg.deadline.budget_ms,
            ring_slots=slots,
            ring_used=min(slots, max(0, in_slots)),
            archive=self.archive_writer.stats() if self.archive_writer is not None else {},
            classes=tuple(self.cfg.model.postprocess.classes),
        )

    # -- the end ------------------------------------------------------------------------------
    def _summarize(self) -> RunSummary:
        self.counters.add_log_drops(Role.SUPERVISOR, self.sink.unreported_drops())
        snapshot = self.shared.snapshot()
        now = time.monotonic_ns()
        undelivered = snapshot[Count.PLC_UNDELIVERED] + snapshot[Count.PLC_QUEUE_FULL]
        lasting = [f"{kind} (still at the end)" for kind in self._faults.active]
        if undelivered:
            lasting.append(f"{undelivered} rejects did not reach the PLC: pull those parts (see reject_undelivered)")
        p50, p99 = self.counters.latency_percentiles((50, 99))
        summary = RunSummary(
            counters=snapshot,
            problems=self._reconcile(snapshot),
            failures=self._failures,
            elapsed_s=(now - self.t_start) / 1e9,
            stop_reason=self._stop_reason,
            removed_stale_ring=self.shared.removed_stale_ring,
            faults=self._faults.report(now),
            lasting=lasting,
            bounded=self._stop_reason == "max_frames reached",
            forced=self._forced,
            latency_ms=(p50 / 1e6, p99 / 1e6),
            cameras=self.shared.camera_snapshots(),
        )
        self.log.info(
            "run_summary",
            exit_code=summary.exit_code,
            stop_reason=summary.stop_reason,
            problems=summary.problems,
            faults=summary.faults,
            lasting=summary.lasting,
            forced=summary.forced or None,
            # None, not NaN, when no frame was timed: the record stays strict JSON.
            latency_p50_ms=_ms_or_none(summary.latency_ms[0]),
            latency_p99_ms=_ms_or_none(summary.latency_ms[1]),
            **({"cameras": {name: camera_counts(cs) for name, cs in summary.cameras}} if summary.cameras else {}),
            elapsed_s=round(summary.elapsed_s, 3),
            **snapshot.as_record(),
        )
        shutdown_logging()
        self.collector.close()  # every worker has exited: their pipes are drained to the end
        summary.counters = self.shared.snapshot()  # with the collector's final write-failure counts
        return summary

    def _reconcile(self, total: Snapshot) -> list[str]:
        """Broken invariants: of the run, or of each camera (named) with several."""
        if not self.shared.several:
            return reconcile(total)
        return [
            f"camera {lane.lane.name}: {problem}"
            for lane in self.shared.lanes
            for problem in reconcile(lane.counters.snapshot())
        ]

    def _status_text(self, previous: Snapshot | None, dt_s: float, snapshot: Snapshot | None = None) -> str:
        faults = self._reasons or [f"{w.job} worker starting" for w in self.workers.values() if not w.up]
        return status_line(snapshot if snapshot is not None else self.shared.snapshot(), previous, dt_s, faults)


__all__ = ["RunSummary", "Supervisor"]


def _ms_or_none(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)
