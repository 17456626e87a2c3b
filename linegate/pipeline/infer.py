"""The inference worker: a fixed-deadline loop giving every frame exactly one verdict and one record.

Per frame: claim the oldest ready slot, check the deadline is still reachable, preprocess straight
from the shared-memory slot into the engine's bound input, free the slot, infer, classify, settle
against the deadline, hand rejects to the PLC worker without waiting, and log one record. Frames the
ring dropped arrive through its journal and get the fail-safe verdict and a record too. A frame the
camera delivered defective (incomplete, wrong payload size: flagged in its ring header) is never
inspected: fail-safe verdict, basis ``incomplete_frame`` whichever way it arrives, its defect named
in the record.
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from linegate.camera.defects import FrameDefect
from linegate.config.schema import Config
from linegate.counters import Count, SharedCounters
from linegate.engine import Engine, create_engine
from linegate.errors import ConfigError
from linegate.logs import Sink, shutdown_logging
from linegate.pipeline.baton import HANDOVER_TIMEOUT_S, Baton
from linegate.pipeline.context import WorkerContext
from linegate.pipeline.inflight import InFlight, Outcome, Stage
from linegate.plc.reject_pipe import NO_CLASS, RejectOutbox
from linegate.ring import DropReason, FrameMeta, RingConsumer, RingHandle
from linegate.roles import Role
from linegate.timing.deadline import Basis, Deadline, Verdict, settle
from linegate.timing.latency import LatencyWindow
from linegate.vision.postprocess import Classifier
from linegate.vision.preprocess import Preprocessor, build_preprocessor

STATS_PERIOD_NS = 1_000_000_000
BASES = list(Basis)
_BASIS_INDEX = {basis: i for i, basis in enumerate(BASES)}  # stored in the in-flight entry; the PLC's basis word


def _score_word(score: float) -> int:
    """Score x 10000 as the PLC interface's 16-bit word (0 for no score)."""
    return 0 if score != score else max(0, min(10_000, round(score * 10_000)))
_COUNTER_OF_BASIS = {
    Basis.DEADLINE_MISSED: Count.DEADLINE_MISSED,
    Basis.DEADLINE_UNREACHABLE: Count.DEADLINE_UNREACHABLE,
    Basis.ENGINE_ERROR: Count.ENGINE_ERRORS,
    Basis.INCOMPLETE_FRAME: Count.INCOMPLETE_FRAMES,
}


def _fail_safe_basis(meta: FrameMeta, basis: Basis) -> Basis:
    """A frame the camera delivered defective is ``incomplete_frame`` however it reached its verdict."""
    return Basis.INCOMPLETE_FRAME if meta.defect else basis


def _ms(ns: int) -> float:
    return round(ns / 1e6, 4)


class InferenceLoop:
    """One step per wake-up of the ring; owns the engine, pre/postprocessing and the hand-off."""

    def __init__(
        self,
        cfg: Config,
        consumer: RingConsumer,
        engine: Engine,
        preprocess: Preprocessor,
        plc_outbox: RejectOutbox,
        counters: SharedCounters,
        log: Any,
        sink: Sink,
        inflight: InFlight | None = None,
    ) -> None:
        self.consumer = consumer
        self._frame_bytes = consumer.pixels(0).nbytes
        self.inflight = inflight if inflight is not None else InFlight.local()
        self.engine = engine
        self.preprocess = preprocess
        self.classify = Classifier(cfg.model.postprocess)
        self._class_index = {name: i for i, name in enumerate(cfg.model.postprocess.classes)}
        self.plc_outbox = plc_outbox
        self.counters = counters
        self.log = log
        self.sink = sink
        self.budget_ns = int(cfg.deadline.budget_ms * 1e6)
        self.fail_safe = Verdict(cfg.deadline.fail_safe)
        self.model_id = cfg.model.id
        self.expected_ns = 0
        self.latency = LatencyWindow()
        self._next_stats_ns = 0
        self._last_done_ns = time.monotonic_ns()

    def warm_up(self, runs: int) -> dict[str, float]:
        """Run the whole per-frame path on a blank frame; sets the expected run time (p99)."""
        blank = np.zeros_like(self.consumer.pixels(0))
        self.preprocess(blank, self.engine.input)
        try:
            self.classify(self.engine.infer())
        except ValueError as exc:  # the model's output does not fit the configured classes
            raise ConfigError(f"model.postprocess.classes: {exc} ({self.engine.cfg.path})") from exc
        durations = np.zeros(max(runs, 1), dtype=np.int64)
        for i in range(durations.size):
            t0 = time.monotonic_ns()
            self.preprocess(blank, self.engine.input)
            self.classify(self.engine.infer())
            durations[i] = time.monotonic_ns() - t0
        p50, p99 = np.percentile(durations, [50, 99])
        self.expected_ns = int(p99)
        self.counters.set(Count.ENGINE_P99_US, int(p99 / 1000))
        return {"runs": float(durations.size), "p50_ms": float(p50) / 1e6, "p99_ms": float(p99) / 1e6}

    def recover(self) -> None:
        """Finish what a killed predecessor left: the frame it was deciding (only the missing
        effects), frames it had claimed, and a journal entry it had taken but not yet advanced."""
        left = self.inflight.current()
        skip = left.meta.seq if left is not None else None
        if left is not None:
            if left.stage is Stage.TAKEN:
                basis = _fail_safe_basis(left.meta, Basis.LOST_IN_FLIGHT)
                self._finish(left.meta, self.fail_safe, basis, Count(left.counter), self.log.warning)
            else:
                verdict = Verdict.REJECT if left.reject else Verdict.PASS
                basis = BASES[left.basis_index]
                logged = left.logged
                if left.stage is Stage.HANDED:
                    logged = self._record(
                        self.log.warning, left.meta, verdict, basis, time.monotonic_ns(), recovered=True
                    )
                    self.inflight.recorded(logged)
                self._count(verdict, basis, Count(left.counter), logged, left.handed)
                self.inflight.done()
        for meta in self.consumer.recover_claimed():
            if meta.seq != skip:
                self._fail_safe(meta, Basis.LOST_IN_FLIGHT, Count.DECIDED)
        head = self.consumer.peek_journal()
        if head is not None and head.seq == skip:
            self.consumer.advance_journal()

    def step(self) -> bool:
        """Handle what the last wake-up announced: dropped frames first, then one ready frame.

        Returns whether there was anything to handle.
        """
        handled = False
        while (meta := self.consumer.peek_journal()) is not None:
            self.inflight.take(meta, Count.DROPPED)
            self.consumer.advance_journal()
            basis = Basis.LOST_IN_FLIGHT if meta.reason == DropReason.PRODUCER_DIED else Basis.DROPPED
            basis = _fail_safe_basis(meta, basis)
            self._finish(meta, self.fail_safe, basis, Count.DROPPED, self.log.warning)
            handled = True
        overflow = self.consumer.take_overflow()
        if overflow:
            self.counters.add(Count.JOURNAL_OVERFLOW, overflow)
            self.log.error("drop_journal_overflow", frames=overflow, hint="raise ring.journal_size")
        claimed = self.consumer.claim()
        if claimed is not None:
            self.inflight.take(claimed[1], Count.DECIDED)
            self._decide(*claimed)
        return handled or claimed is not None

    def _decide(self, slot: int, meta: FrameMeta) -> None:
        t_picked = time.monotonic_ns()
        deadline = Deadline.for_frame(meta.t_acquired_ns, self.budget_ns)
        label, score = "", float("nan")
        t_pre = t_inf = t_post = t_picked
        if meta.defect:  # not a whole image of the part: never read its slot
            self.consumer.release(slot)
            verdict, basis = self.fail_safe, Basis.INCOMPLETE_FRAME
        elif not deadline.worth_starting(t_picked, self.expected_ns):
            self.consumer.release(slot)
            verdict, basis = self.fail_safe, Basis.DEADLINE_UNREACHABLE
        else:
            try:
                try:
                    self.preprocess(self.consumer.pixels(slot), self.engine.input)
                finally:
                    # The pixels are in the engine input now (or useless): free the slot early, once.
                    self.consumer.release(slot)
                t_pre = time.monotonic_ns()
                output = self.engine.infer()
                t_inf = time.monotonic_ns()
                decision = self.classify(output)
                t_post = time.monotonic_ns()
                verdict, basis = settle(decision.verdict, deadline, t_post, self.fail_safe)
                label, score = decision.label, decision.score
            except Exception as exc:  # one bad frame must not stop the line: fail-safe and go on
                verdict, basis = self.fail_safe, Basis.ENGINE_ERROR
                self.log.error("engine_failed", seq=meta.seq, part_id=meta.part_id, error=repr(exc))
                t_pre = t_inf = t_post = time.monotonic_ns()

        def stages(t_done: int) -> dict[str, Any]:
            return {
                "t_picked_ns": t_picked,
                "write_ms": _ms(meta.t_written_ns - meta.t_acquired_ns),
                "queued_ms": _ms(t_picked - meta.t_written_ns),
                "loop_wait_ms": _ms(t_picked - self._last_done_ns),
                "preprocess_ms": _ms(t_pre - t_picked),
                "infer_ms": _ms(t_inf - t_pre),
                "postprocess_ms": _ms(t_post - t_inf),
                "handoff_ms": _ms(t_done - t_post),
                "total_ms": _ms(t_done - meta.t_acquired_ns),
                "label": label,
                "score": round(score, 5),
            }

        decided = (self._class_index.get(label, NO_CLASS), _score_word(score))
        t_done = self._finish(meta, verdict, basis, Count.DECIDED, self.log.info, stages, decided)
        self.latency.add(t_done - meta.t_acquired_ns)
        self.counters.add_latency(t_done - meta.t_acquired_ns)
        self._last_done_ns = time.monotonic_ns()
        if t_done >= self._next_stats_ns:
            self._publish_stats(t_done)

    def _fail_safe(self, meta: FrameMeta, basis: Basis, counter: Count) -> None:
        self.inflight.take(meta, counter)
        self._finish(meta, self.fail_safe, _fail_safe_basis(meta, basis), counter, self.log.warning)

    def _finish(
        self,
        meta: FrameMeta,
        verdict: Verdict,
        basis: Basis,
        counter: Count,
        emit: Any,
        stages: Any = None,
        decided: tuple[int, int] = (NO_CLASS, 0),
    ) -> int:
        """The decided frame's effects, reject hand-off first (it is on the PLC's critical path),
        then its one record, then its counts; each recorded in the in-flight entry. Returns the
        time the verdict was handed off."""
        f = self.inflight
        f.settle(verdict is Verdict.REJECT, _BASIS_INDEX[basis])
        handed = self._hand_off(verdict, basis, meta, decided)
        t_done = time.monotonic_ns()
        f.handed(handed)
        logged = self._record(emit, meta, verdict, basis, t_done, **(stages(t_done) if stages else {}))
        f.recorded(logged)
        self._count(verdict, basis, counter, logged, handed)
        f.done()
        return t_done

    def _record(
        self, emit: Any, meta: FrameMeta, verdict: Verdict, basis: Basis, t_done_ns: int, **stages: Any
    ) -> Outcome:
        """The frame's one record: OK, or DROPPED when the log pipe was full."""
        dropped_before = self.sink.dropped_full
        if meta.defect:
            stages["defect"] = str(FrameDefect(meta.defect, meta.payload_bytes, self._frame_bytes))
        emit(
            "frame",
            seq=meta.seq,
            frame_id=meta.frame_id,
            part_id=meta.part_id,
            t_acquired_ns=meta.t_acquired_ns,
            t_done_ns=t_done_ns,
            **stages,
            deadline_ms=_ms(self.budget_ns),
            deadline_met=basis is Basis.MODEL,
            verdict=verdict.value,
            basis=basis.value,
            model=self.model_id,
        )
        return Outcome.DROPPED if self.sink.dropped_full != dropped_before else Outcome.OK

    def _count(self, verdict: Verdict, basis: Basis, counter: Count, logged: Outcome, handed: Outcome) -> None:
        c = self.counters
        c.add(counter)
        c.add(Count.REJECTED if verdict is Verdict.REJECT else Count.PASSED)
        if basis is not Basis.MODEL:
            c.add(Count.FAIL_SAFE)
            extra = _COUNTER_OF_BASIS.get(basis)
            if extra is not None:
                c.add(extra)
        c.add(Count.LOG_DROPPED if logged is Outcome.DROPPED else Count.LOGGED)
        if handed is Outcome.OK:
            c.add(Count.PLC_QUEUED)
        elif handed is Outcome.DROPPED:
            c.add(Count.PLC_QUEUE_FULL)

    def _hand_off(self, verdict: Verdict, basis: Basis, meta: FrameMeta, decided: tuple[int, int]) -> Outcome:
        if verdict is not Verdict.REJECT:
            return Outcome.NONE
        if self.plc_outbox.offer(meta.part_id, meta.seq, meta.t_acquired_ns, _BASIS_INDEX[basis], *decided):
            return Outcome.OK
        self.log.error("reject_undelivered", part_id=meta.part_id, seq=meta.seq, reason="plc_queue_full")
        return Outcome.DROPPED

    def _publish_stats(self, now_ns: int) -> None:
        p50, p99 = self.latency.percentiles((50, 99))
        if p50 == p50:  # not NaN
            self.counters.set(Count.LATENCY_P50_US, int(p50 / 1000))
            self.counters.set(Count.LATENCY_P99_US, int(p99 / 1000))
        self._next_stats_ns = now_ns + STATS_PERIOD_NS


def inference_main(
    ctx: WorkerContext,
    ring: RingHandle,
    stop: Any,
    rejects: Connection,
    ready: Any,
    own: Baton,
    predecessor: Baton | None,
    inflight: InFlight,
) -> None:
    """Process entry: load and warm the engine, take over from a predecessor (reload) or recover
    what a dead one left, signal ready, then decide frames until stopped and drained, or until a
    successor takes the baton at a frame boundary."""
    log, sink = ctx.enter(Role.INFER)
    cfg = ctx.cfg
    counters = ctx.counters
    consumer = RingConsumer(ring)
    preprocess = build_preprocessor(cfg.model.preprocess, ring.geometry.shape, ring.geometry.pixel_format)
    engine = create_engine(cfg.model, preprocess.spec.shape, preprocess.spec.dtype)
    outbox = RejectOutbox(rejects, cfg.plc.queue_size)
    handed_over = False
    try:
        engine.load()
        loop = InferenceLoop(cfg, consumer, engine, preprocess, outbox, counters, log, sink, inflight)
        warm = loop.warm_up(cfg.model.warmup_runs)
        log.info("engine_ready", model=cfg.model.id, backend=cfg.model.backend, path=str(cfg.model.path), **warm)
        if predecessor is not None:
            beat = lambda: counters.set(Count.INFER_HEARTBEAT_NS, time.monotonic_ns())  # noqa: E731
            if not predecessor.take(beat, HANDOVER_TIMEOUT_S):
                log.warning("infer_handover_timeout", waited_s=HANDOVER_TIMEOUT_S, action="taking over anyway")
        loop.recover()
        counters.set(Count.READY, 1)
        ready.set()
        while True:
            now = time.monotonic_ns()
            counters.set(Count.INFER_HEARTBEAT_NS, now)
            ctx.report_logs(Role.INFER, sink, now)
            if own.should_hand_over():
                handed_over = True
                break
            woke = consumer.wait(0.05)
            # A step also runs on a timeout: a predecessor that died may have left frames announced
            # to it, and stop must not cut off frames still in the ring.
            if not loop.step() and not woke and stop.is_set():
                break
        log.info(
            "inference_handed_over" if handed_over else "inference_stopped",
            model=cfg.model.id,
            decided=counters.get(Count.DECIDED),
            dropped=counters.get(Count.DROPPED),
        )
    finally:
        own.released.set()
        engine.close()
        consumer.close()
        outbox.close()
        ctx.report_logs(Role.INFER, sink, None)
        shutdown_logging()
