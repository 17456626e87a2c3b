"""The supervisor: starts the workers in order, watches them, stops them in order, reconciles.

Start: PLC worker, then inference (waits until its engine is warm), then acquisition.
Stop (signal, ``max_frames`` reached, or a worker failing): acquisition first, then inference
drains the ring (every frame still gets a verdict), then the PLC worker delivers or reports every
pending reject and puts its outputs in the safe state. Signal handlers only set flags; a second
signal kills the workers at once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from linegate.config.schema import Config
from linegate.pipeline.acquire import acquisition_main
from linegate.pipeline.context import WorkerContext, run_worker
from linegate.pipeline.counters import Count, SharedCounters, reconcile
from linegate.pipeline.handoff import reject_channel
from linegate.pipeline.infer import inference_main
from linegate.pipeline.plc_io import plc_main
from linegate.ring import FrameRing, RingGeometry

TICK_S = 1.0
ENGINE_READY_TIMEOUT_S = 120.0
ACQ_STOP_TIMEOUT_S = 5.0
INFER_STOP_TIMEOUT_S = 10.0


@dataclass
class RunSummary:
    """How a run ended, with its final counters and any broken invariant."""

    counters: dict[str, int]
    problems: list[str]
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    elapsed_s: float = 0.0
    stop_reason: str = ""
    removed_stale_ring: bool = False

    @property
    def exit_code(self) -> int:
        if self.failures:
            return max(code for _, code, _ in self.failures)
        return 1 if self.problems else 0


Tick = Callable[[dict[str, int], float], None]


class Supervisor:
    """Runs one pipeline from start to a clean, reconciled stop."""

    def __init__(
        self,
        cfg: Config,
        *,
        log_file: Path | None = None,
        log_stdout: bool = True,
        max_frames: int | None = None,
        on_tick: Tick | None = None,
    ) -> None:
        self.cfg = cfg
        self.log_file = log_file if log_file is not None else cfg.logging.file
        self.log_stdout = log_stdout
        self.max_frames = max_frames
        self.on_tick = on_tick
        self._signals = 0
        self._stop_reason = ""

    # Signal handlers only record what happened; the main loop acts on it.
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        self._stop_reason = self._stop_reason or signal.Signals(signum).name

    def run(self) -> RunSummary:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _run(self) -> RunSummary:
        cfg = self.cfg
        ctx = mp.get_context("spawn")
        geometry = RingGeometry(cfg.camera.height, cfg.camera.width, cfg.camera.channels, cfg.camera.pixel_format)
        ring = FrameRing.create(
            ctx,
            instance=cfg.instance.name,
            geometry=geometry,
            slots=cfg.ring.slots,
            journal_size=cfg.ring.journal_size,
            when_full=cfg.ring.when_full,
        )
        counters = SharedCounters.create(ctx)
        wctx = WorkerContext(cfg, counters, self.log_file, self.log_stdout, os.getpid())
        errors: Any = ctx.Queue()
        reject_reader, reject_writer = reject_channel(ctx)
        acq_stop, infer_stop, plc_stop, ready = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Event()

        def spawn(role: str, main: Any, *args: Any) -> BaseProcess:
            proc = ctx.Process(target=run_worker, args=(role, errors, main, *args), name=f"linegate-{role}")
            proc.start()
            return proc

        t_start = time.monotonic_ns()
        procs: dict[str, BaseProcess] = {}
        failures: list[tuple[str, int, str]] = []
        try:
            procs["plc"] = spawn("plc", plc_main, wctx, reject_reader, plc_stop)
            procs["infer"] = spawn("infer", inference_main, wctx, ring.handle, infer_stop, reject_writer, ready)
            if self._wait_ready(ready, procs):
                procs["acquire"] = spawn("acquire", acquisition_main, wctx, ring.handle, acq_stop, self.max_frames)
                self._watch(procs, counters, t_start)
            self._stop_in_order(procs, acq_stop, infer_stop, plc_stop)
        finally:
            for proc in procs.values():
                if proc.is_alive():
                    proc.kill()
                    proc.join()
            failures = _collect(errors)
            for role, proc in procs.items():
                if proc.exitcode not in (0, None) and not any(f[0] == role for f in failures):
                    failures.append((role, proc.exitcode or 1, f"exited with code {proc.exitcode}"))
            ring.close()
            reject_reader.close()
            reject_writer.close()
        snapshot = counters.snapshot()
        return RunSummary(
            counters=snapshot,
            problems=reconcile(snapshot),
            failures=failures,
            elapsed_s=(time.monotonic_ns() - t_start) / 1e9,
            stop_reason=self._stop_reason,
            removed_stale_ring=ring.removed_stale,
        )

    def _wait_ready(self, ready: Any, procs: dict[str, BaseProcess]) -> bool:
        deadline = time.monotonic() + ENGINE_READY_TIMEOUT_S
        while time.monotonic() < deadline and not self._signals:
            if ready.wait(0.1):
                return True
            dead = [r for r, p in procs.items() if not p.is_alive()]
            if dead:
                self._stop_reason = f"{dead[0]} worker exited during start-up"
                return False
        self._stop_reason = self._stop_reason or "engine not ready in time"
        return False

    def _watch(self, procs: dict[str, BaseProcess], counters: SharedCounters, t_start: int) -> None:
        next_tick = time.monotonic() + TICK_S
        sentinels = {p.sentinel: role for role, p in procs.items()}
        while not self._signals:
            ended = wait(list(sentinels), timeout=max(0.0, min(0.1, next_tick - time.monotonic())))
            if ended:
                role = sentinels[ended[0]]  # type: ignore[index]
                code = procs[role].exitcode
                self._stop_reason = (
                    "max_frames reached" if role == "acquire" and code == 0 else f"{role} exited ({code})"
                )
                return
            if time.monotonic() >= next_tick:
                next_tick += TICK_S
                if self.on_tick is not None:
                    self.on_tick(counters.snapshot(), (time.monotonic_ns() - t_start) / 1e9)

    def _stop_in_order(self, procs: dict[str, BaseProcess], acq_stop: Any, infer_stop: Any, plc_stop: Any) -> None:
        steps = (
            ("acquire", acq_stop, ACQ_STOP_TIMEOUT_S),
            ("infer", infer_stop, INFER_STOP_TIMEOUT_S),
            ("plc", plc_stop, self.cfg.plc.drain_timeout_ms / 1000 + 2.0),
        )
        for role, event, timeout_s in steps:
            event.set()
            proc = procs.get(role)
            if proc is None:
                continue
            end = time.monotonic() + timeout_s
            while proc.is_alive() and time.monotonic() < end and self._signals < 2:
                proc.join(0.05)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _collect(errors: Any) -> list[tuple[str, int, str]]:
    out = []
    while True:
        try:
            out.append(errors.get(timeout=0.05))
        except queue.Empty:
            return out


def live_line(snapshot: dict[str, int], elapsed_s: float, previous: dict[str, int] | None, dt_s: float) -> str:
    """The one-line summary printed each second."""
    done = snapshot["decided"] + snapshot["dropped"]
    fps = (done - (previous["decided"] + previous["dropped"] if previous else 0)) / dt_s if dt_s > 0 else 0.0
    return (
        f"[{elapsed_s:6.1f}s] fps {fps:6.1f} | latency p50 {snapshot['latency_p50_us'] / 1000:6.2f} ms "
        f"p99 {snapshot['latency_p99_us'] / 1000:6.2f} ms | frames {done} | rejects {snapshot['rejected']} "
        f"(delivered {snapshot['plc_delivered']}) | deadline misses "
        f"{snapshot['deadline_missed'] + snapshot['deadline_unreachable']} | drops {snapshot['dropped']} "
        f"| lost {snapshot['camera_lost']}"
    )


__all__ = ["Count", "RunSummary", "Supervisor", "live_line"]
