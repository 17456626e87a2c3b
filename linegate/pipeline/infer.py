"""The inference worker: a fixed-deadline loop giving every frame exactly one verdict and one record.

Per frame: claim the oldest ready slot, check the deadline is still reachable, preprocess straight
from the shared-memory slot into the engine's bound input, infer, classify, settle against the
deadline, hand rejects to the PLC worker without waiting, free the slot, and log one record. With
``model.max_batch`` > 1 and frames waiting, the oldest ones that fit the first one's deadline run as
one batch; each still gets its own verdict, hand-off and record, in order. With
``[[stages]]`` configured, a frame the first model labels with one of a stage's ``when`` labels
goes on to that stage's model (same pixels: the slot is freed only once no further stage needs
it), if the deadline can still be met; the last stage that ran decides. Frames the
ring dropped arrive through its journal and get the fail-safe verdict and a record too. A frame the
camera delivered defective (incomplete, wrong payload size: flagged in its ring header) is never
inspected: fail-safe verdict, basis ``incomplete_frame`` whichever way it arrives, its defect named
in the record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.archive.queue import ArchiveHandle, ArchiveProducer
from linegate.camera.defects import FrameDefect
from linegate.config.schema import Config, ModelSection, runnable_model
from linegate.counters import Count, SharedCounters
from linegate.engine import Engine, create_engine
from linegate.engine.parallel_runs import ParallelRuns
from linegate.errors import ConfigError
from linegate.logs import Sink, shutdown_logging
from linegate.pipeline.archiver import Archiver
from linegate.pipeline.baton import HANDOVER_TIMEOUT_S, Baton
from linegate.pipeline.context import WorkerContext
from linegate.pipeline.frame_wait import FrameWaiter
from linegate.pipeline.gpu_feed import Fed, GpuFeed
from linegate.pipeline.inflight import BACKLOG_DUE, InFlight, Outcome, Stage
from linegate.plc.reject_pipe import NO_CLASS, PASS, REJECT, RejectOutbox
from linegate.ring import DropReason, FrameMeta, FrameSource, RingConsumer, RingHandle, RingSet
from linegate.roles import Role
from linegate.timing.arrival import ArrivalPredictor
from linegate.timing.deadline import Basis, Deadline, Verdict, settle
from linegate.timing.latency import LatencyWindow
from linegate.timing.run_time import PathTime
from linegate.vision.postprocess import Classifier, Decision
from linegate.vision.preprocess import Preprocessor, build_preprocessor

STATS_PERIOD_NS = 1_000_000_000
WARM_PATH_MAX_NS = 500_000
"""Warm passes only for a path (preprocess, model, classify) whose warm-up p50 is at most this: a
longer one keeps its own caches warm, and a pass under way when the frame arrives delays it."""
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


def batch_estimates(one_ns: int, max_batch: int, measure: Callable[[int], int]) -> list[int]:
    """Expected run time (ns) of a batch of 1, 2, ... *max_batch* frames, *one_ns* for one.

    Only powers of two and *max_batch* itself are measured (``measure(size)``): warm-up then grows
    about linearly with *max_batch*. A size in between gets the time of the next measured size
    above it, and no size is expected faster than a smaller one.
    """
    measured = {1: one_ns}
    size = 2
    while size < max_batch:
        measured[size] = measure(size)
        size *= 2
    if max_batch > 1:
        measured[max_batch] = measure(max_batch)
    out: list[int] = []
    for size in range(1, max_batch + 1):
        above = min(s for s in measured if s >= size)
        out.append(max(measured[above], out[-1] if out else 0))
    return out


def _fail_safe_basis(meta: FrameMeta, basis: Basis) -> Basis:
    """A frame the camera delivered defective is ``incomplete_frame`` however it reached its verdict."""
    return Basis.INCOMPLETE_FRAME if meta.defect else basis


def _ms(ns: int) -> float:
    return round(ns / 1e6, 4)


@dataclass
class ModelStage:
    """A further model in series (``[[stages]]``): what runs it, and which labels of the stage
    before it send a frame here."""

    engine: Engine
    preprocess: Preprocessor
    when: frozenset[str]
    classify: Classifier = field(init=False)
    class_index: dict[str, int] = field(init=False)
    expected_ns: int = 0
    """p99 of its preprocess + infer + classify at warm-up: it runs only if that still fits the deadline."""

    def __post_init__(self) -> None:
        post = self.engine.cfg.postprocess
        self.classify = Classifier(post)
        self.class_index = {name: i for i, name in enumerate(post.classes)}

    @property
    def model_id(self) -> str:
        return self.engine.model_id


def _first_run(stage: ModelStage, blank: Any, key: str) -> None:
    """One run on a blank frame: an output that does not fit the configured classes is a config error."""
    stage.preprocess(blank, stage.engine.input)
    try:
        stage.classify(stage.engine.infer())
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc} ({stage.engine.cfg.path})") from exc


def _timed_runs(stage: ModelStage, blank: Any, runs: int) -> npt.NDArray[np.int64]:
    """Each of *runs* preprocess + infer + classify passes on a blank frame, in ns."""
    durations = np.zeros(max(runs, 1), dtype=np.int64)
    for i in range(durations.size):
        t0 = time.monotonic_ns()
        stage.preprocess(blank, stage.engine.input)
        stage.classify(stage.engine.infer())
        durations[i] = time.monotonic_ns() - t0
    return durations


@dataclass(frozen=True)
class _Times:
    """When a frame's steps ended (monotonic ns): picked from the ring, preprocessed, inferred,
    classified by the first model, decided (after any further stages)."""

    picked: int
    pre: int
    inf: int
    post: int
    final: int


@dataclass(frozen=True)
class CameraOut:
    """Where one camera's verdicts go (several cameras, ``[[cameras]]``): its name in its frames'
    records, its counters (reconciled per camera), its PLC worker's hand-off."""

    name: str
    counters: SharedCounters
    outbox: RejectOutbox


@dataclass(frozen=True)
class _Ended:
    """A session's run that ended, classified (its session free for the next frame), its verdict
    not yet settled and handed off."""

    session: int
    running: _Running
    t_end: int
    t_classified: int
    decision: Decision | None
    """None: the run or the classification failed (the frame fails safe)."""


@dataclass(frozen=True)
class _Running:
    """A frame on one of ``model.parallel``'s sessions: its slot (held until its verdict is handed
    off), and when it was picked from the ring and preprocessed."""

    slot: int
    meta: FrameMeta
    picked: int
    pre: int
    """When its run started (for a staged frame: preprocessing and the wait for a session both
    end there)."""
    staged_ns: int = -1
    """A staged frame (preprocessed while every session ran, into the main session's input, then
    copied to the session that freed first): how long it waited for that session; -1: not staged."""


class _AbandonedLate(Exception):
    """The GPU frame path did not finish the frame by its deadline: fail-safe, its slot stays held."""


class InferenceLoop:
    """One step per wake-up of the ring; owns the engine, pre/postprocessing and the hand-off."""

    def __init__(
        self,
        cfg: Config,
        consumer: FrameSource,
        engine: Engine,
        preprocess: Preprocessor,
        plc_outbox: RejectOutbox,
        counters: SharedCounters,
        log: Any,
        sink: Sink,
        inflight: InFlight | None = None,
        stages: list[ModelStage] | None = None,
        gpu: GpuFeed | None = None,
        archiver: Archiver | None = None,
        cameras: list[CameraOut] | None = None,
    ) -> None:
        self.consumer = consumer
        self._cameras = cameras or [CameraOut("", counters, plc_outbox)]
        """Indexed by FrameMeta.camera; the first one's counters and hand-off are *counters* and *plc_outbox*."""
        named = len(self._cameras) > 1
        self._camera_fields: list[dict[str, str]] = [{"camera": c.name} if named else {} for c in self._cameras]
        """Indexed by FrameMeta.camera: what a frame's record and reports add to name its camera
        (nothing with one camera), made once here, off the frame's path."""
        self.archiver = archiver
        """Offers rejects (and sampled passes) to the image archive, after their hand-off."""
        self.stages = stages or []
        self.gpu = gpu
        """The GPU frame path (model.gpu_preprocess): slot -> device -> kernel -> engine, deadline-bounded."""
        self._frame_bytes = consumer.pixels(0).nbytes
        self.inflight = inflight if inflight is not None else InFlight.local()
        self.engine = engine
        self.preprocess = preprocess
        self.classify = Classifier(cfg.model.postprocess)
        self._class_index = {name: i for i, name in enumerate(cfg.model.postprocess.classes)}
        self.send_pass = cfg.plc.mode == "handshake" and cfg.plc.handshake.results == "all"
        """Every verdict goes to the PLC worker, pass ones too (positive release)."""
        self.counters = counters
        self.log = log
        self.sink = sink
        self.budget_ns = int(cfg.deadline.budget_ms * 1e6)
        self.newest_first = cfg.deadline.backlog == "newest_first"
        self.fail_safe = Verdict(cfg.deadline.fail_safe)
        self.model_id = cfg.model.id
        self.expected_ns = 0
        """How long a frame's path is expected to take: frames that cannot make their deadline at
        this are not started (:mod:`linegate.timing.run_time`)."""
        self.path_time = PathTime(0)
        self._verdict_after_ns = 0
        """A taken frame's verdict is due this long after (the path's warm-up p50 x the slowdown):
        the PLC worker polls for it from shortly before, not from the start of the frame."""
        self.batch_expected_ns: list[int] = []
        """p99 of the path for a batch of 1, 2, ... ``engine.max_batch`` frames, measured at warm-up."""
        self.latency = LatencyWindow()
        self._next_stats_ns = 0
        self._last_done_ns = time.monotonic_ns()
        self.path_p50_ns = 0
        self._blank = np.zeros_like(consumer.pixels(0))
        self.arrivals = ArrivalPredictor(cfg.scheduling.infer_poll_max_us * 1000)
        """Learns when frames arrive, for the loop's wait (:class:`FrameWaiter`)."""
        self.parallel: ParallelRuns | None = None
        """``model.parallel`` > 1: the sessions deciding frames at once; their runs end on their own
        threads and wake the loop's wait, and everything else stays on the loop's thread."""
        self._frame_runs = engine.frame_runs() if engine.parallel > 1 else []
        if self._frame_runs:
            self.parallel = ParallelRuns([r.run for r in self._frame_runs], consumer.wake)
        self._running: dict[int, _Running] = {}
        """By session: the frames ``model.parallel``'s sessions are running."""
        self._staged: _Running | None = None
        """``model.parallel``, oldest first: the next frame, claimed and preprocessed into the main
        session's (idle) input while every session runs, so that the first one to finish starts it
        at once instead of waiting for its preprocessing."""
        self.session_time = PathTime(0)
        """``model.parallel``: a frame's expected path on a session, all of them running (a frame
        alone runs on the main session with every thread, :attr:`path_time`)."""

    def warm_up(self, runs: int) -> dict[str, float]:
        """Run the whole per-frame path on a blank frame; sets the expected run time (p99)."""
        blank = np.zeros_like(self.consumer.pixels(0))
        first = ModelStage(self.engine, self.preprocess, frozenset())
        _first_run(first, blank, "model.postprocess.classes")
        if self.gpu is not None:  # the path frames take: slot -> device -> kernel -> engine (reads slot 0 only)
            durations = self.gpu.warm_up(runs)
            for _ in durations:
                self.classify(self.gpu.engine.output)
        else:
            durations = _timed_runs(first, blank, runs)
        p50, p99 = np.percentile(durations, [50, 99])
        self.expected_ns = int(p99)
        self.path_time = PathTime(self.expected_ns)
        self.path_p50_ns = self._verdict_after_ns = int(p50)
        self.batch_expected_ns = batch_estimates(
            self.expected_ns, self.engine.max_batch,
            lambda size: int(np.percentile(self._timed_batches(blank, size, runs), 99)),
        )  # fmt: skip
        self.counters.set(Count.ENGINE_P99_US, int(p99 / 1000))
        out = {"runs": float(durations.size), "p50_ms": float(p50) / 1e6, "p99_ms": float(p99) / 1e6}
        for size, ns in enumerate(self.batch_expected_ns[1:], start=2):
            out[f"batch{size}_p99_ms"] = ns / 1e6
        for i, stage in enumerate(self.stages):
            out[f"stage{i + 2}_p99_ms"] = self._warm_stage(stage, blank, runs) / 1e6
        if self.parallel is not None:
            on_sessions = self._timed_parallel(blank, runs)
            p50, p99 = np.percentile(on_sessions, [50, 99])
            self.session_time = PathTime(int(p99))
            out.update(parallel_p50_ms=float(p50) / 1e6, parallel_p99_ms=float(p99) / 1e6)
        return out

    def _timed_parallel(self, blank: Any, runs: int) -> npt.NDArray[np.int64]:
        """``model.parallel``: one frame's path (preprocess, its session's run, classify) while every
        session runs, as under a backlog, timed about *runs* times after one untimed round."""
        assert self.parallel is not None
        runner, frame_runs = self.parallel, self._frame_runs
        durations: list[int] = []
        runner.wakes = False  # a reload's successor warms up while its predecessor waits on the same ring
        for _ in range(1 + max(1, -(-runs // runner.size))):
            started: dict[int, int] = {}
            while (i := runner.next_idle()) is not None:
                t0 = time.monotonic_ns()
                self.preprocess(blank, frame_runs[i].input)
                started[runner.start()] = t0
            while runner.busy:
                for i, _t_end, failed in runner.finished(60.0):
                    if failed is not None:
                        raise failed
                    self.classify(frame_runs[i].output)
                    durations.append(time.monotonic_ns() - started[i])
        runner.wakes = True
        return np.array(durations[runner.size :], dtype=np.int64)

    def _timed_batches(self, blank: Any, size: int, runs: int) -> npt.NDArray[np.int64]:
        """The batch path of *size* blank frames (preprocess each, one run, classify each), timed
        ``max(5, runs // size)`` times after one untimed pass (a first run at a new shape
        allocates): what a batch of that size must fit into a deadline (ns)."""
        durations = np.zeros(1 + max(5, runs // size), dtype=np.int64)
        for i in range(durations.size):
            t0 = time.monotonic_ns()
            for row in range(size):
                self.preprocess(blank, self.engine.input_row(row))
            output = self.engine.infer_batch(size)
            for row in range(size):
                self.classify(output[row : row + 1])
            durations[i] = time.monotonic_ns() - t0
        return durations[1:]

    def _warm_stage(self, stage: ModelStage, blank: Any, runs: int) -> int:
        """A further stage's path on a blank frame; sets and returns its expected run time (p99, ns)."""
        _first_run(stage, blank, f"stages: {stage.model_id}: postprocess.classes")
        stage.expected_ns = int(np.percentile(_timed_runs(stage, blank, runs), 99))
        return stage.expected_ns

    def warm_pass(self) -> None:
        """The first model's path on a blank frame, results discarded: keeps it in the caches
        while the loop polls for the next frame (:mod:`linegate.pipeline.frame_wait`)."""
        self.preprocess(self._blank, self.engine.input)
        self.classify(self.engine.infer())

    @property
    def warm_worthwhile(self) -> bool:
        """Warm passes pay only for a path short enough that cold caches dominate it (measured at
        warm-up), and never on the GPU frame path (its work is on the device)."""
        return self.gpu is None and self.parallel is None and 0 < self.path_p50_ns <= WARM_PATH_MAX_NS

    def recover(self) -> None:
        """Finish what a killed predecessor left: the frame it was deciding (only the missing
        effects), frames it had claimed, and a journal entry it had taken but not yet advanced."""
        left = self.inflight.current()
        skip = (left.meta.camera, left.meta.seq) if left is not None else None
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
                self._count(verdict, basis, Count(left.counter), logged, left.handed, left.meta.camera)
                self.inflight.done()
        for meta in self.consumer.recover_claimed():
            if (meta.camera, meta.seq) != skip:
                self._fail_safe(meta, Basis.LOST_IN_FLIGHT, Count.DECIDED)
        head = self.consumer.peek_journal()
        if head is not None and (head.camera, head.seq) == skip:
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
        if self.parallel is not None:
            return self._step_parallel(self.parallel) or handled
        claimed = self._claim_newest() if self.newest_first else self.consumer.claim()
        if claimed is not None:
            self.inflight.take(claimed[1], Count.DECIDED, self._verdict_due())
            more = self._claim_batch(claimed[1]) if len(self.batch_expected_ns) > 1 else []
            if more:
                self._decide_batch([claimed, *more])
            else:
                self._decide(*claimed)
            for _slot, meta in (claimed, *more):  # after the frames' verdicts: off their path
                self.arrivals.observe(meta.t_written_ns)
        return handled or claimed is not None

    def _verdict_due(self) -> int:
        """When the verdict of the frame just claimed is expected, or BACKLOG_DUE if others wait."""
        return BACKLOG_DUE if self.consumer.any_ready() else time.monotonic_ns() + self._verdict_after_ns

    def _step_parallel(self, runner: ParallelRuns) -> bool:
        """``model.parallel``: classify the frames whose runs ended, start the staged frame on an
        idle session, conclude the ended frames, then start a waiting frame on each idle session,
        and stage the next waiting frame while every session runs (a session that finishes then
        waits only for a copy of its input, not for the preprocessing). The ended frames are
        concluded before anything else is claimed: a frame alone is decided on the main session,
        and their verdicts must not wait for that run. True while a session runs or a frame is
        staged (a run's end wakes the loop's wait)."""
        ended = [self._classify_ended(*run) for run in runner.finished()]
        started = self._staged is not None and bool(runner.idle)
        if started:
            self._start_staged(runner)
        for one in ended:
            self._conclude_ended(one)
        while runner.idle:
            claimed = self._claim_newest() if self.newest_first else self.consumer.claim()
            if claimed is None:
                break
            if runner.busy == 0 and not self.consumer.any_ready():  # alone: one run on every thread
                self.inflight.take(claimed[1], Count.DECIDED, time.monotonic_ns() + self._verdict_after_ns)
                self._decide(*claimed)
            else:
                self._start(*claimed)
            self.arrivals.observe(claimed[1].t_written_ns)
            started = True
        if self._staged is None and not runner.idle and not self.newest_first:
            claimed = self.consumer.claim()
            if claimed is not None:
                self._stage(*claimed)
                self.arrivals.observe(claimed[1].t_written_ns)
        return bool(ended) or started or runner.busy > 0 or self._staged is not None

    def _stage(self, slot: int, meta: FrameMeta) -> None:
        """Every session is running: preprocess the next frame into the main session's input now, or
        give it the fail-safe verdict if it cannot make its deadline after a session's run and its own."""
        t_picked = time.monotonic_ns()
        wait_and_run = 2 * self.session_time.expected_ns
        deadline = Deadline.for_frame(meta.t_acquired_ns, self.budget_ns)
        if meta.defect:  # never read its slot
            basis = Basis.INCOMPLETE_FRAME
        elif not deadline.worth_starting(t_picked, wait_and_run):
            basis = Basis.DEADLINE_UNREACHABLE
        else:
            try:
                self.preprocess(self.consumer.pixels(slot), self.engine.input)
            except Exception as exc:  # this frame fails safe, the line goes on
                self._engine_failed(meta, exc)
                basis = Basis.ENGINE_ERROR
            else:
                self._staged = _Running(slot, meta, t_picked, time.monotonic_ns(), staged_ns=0)
                return
        self._fail_safe_now(slot, meta, t_picked, basis)

    def _start_staged(self, runner: ParallelRuns) -> None:
        """The staged frame onto the first idle session: its input copied over, its run started."""
        staged, self._staged = self._staged, None
        session = runner.next_idle()
        assert staged is not None and session is not None
        np.copyto(self._frame_runs[session].input, self.engine.input)
        now = time.monotonic_ns()
        self._running[runner.start()] = replace(staged, pre=now, staged_ns=now - staged.pre)

    def _start(self, slot: int, meta: FrameMeta) -> None:
        """Preprocess a claimed frame into the next idle session's input and start its run; a frame
        that is not to be inspected (defective, deadline out of reach, preprocessing failed) gets the
        fail-safe verdict now instead."""
        assert self.parallel is not None
        t_picked = time.monotonic_ns()
        deadline = Deadline.for_frame(meta.t_acquired_ns, self.budget_ns)
        expected = self.session_time
        if meta.defect:  # never read its slot
            basis = Basis.INCOMPLETE_FRAME
        elif not deadline.worth_starting(t_picked, expected.expected_ns) and not (
            expected.expire(t_picked) and deadline.worth_starting(t_picked, expected.expected_ns)
        ):
            basis = Basis.DEADLINE_UNREACHABLE
        else:
            session = self.parallel.next_idle()
            assert session is not None
            try:
                self.preprocess(self.consumer.pixels(slot), self._frame_runs[session].input)
            except Exception as exc:  # this frame fails safe, the line goes on
                self._engine_failed(meta, exc)
                basis = Basis.ENGINE_ERROR
            else:
                self._running[self.parallel.start()] = _Running(slot, meta, t_picked, time.monotonic_ns())
                return
        self._fail_safe_now(slot, meta, t_picked, basis)

    def _fail_safe_now(self, slot: int, meta: FrameMeta, t_picked: int, basis: Basis) -> None:
        """A claimed frame not to be inspected after all: its slot freed, the fail-safe verdict. The
        in-flight entry is taken first: a worker killed between the two leaves the frame for its
        successor, never a freed slot with no entry."""
        self.inflight.take(meta, Count.DECIDED)
        self.consumer.release(slot)
        now = time.monotonic_ns()
        self._conclude(meta, self.fail_safe, basis, _Times(t_picked, now, now, now, now), "", float("nan"), {}, None)

    def _classify_ended(self, session: int, t_end: int, failed: BaseException | None) -> _Ended:
        """A session's run ended at *t_end*: its output classified (the session's output buffer is
        then free for its next run)."""
        running = self._running.pop(session)
        decision: Decision | None = None
        if failed is not None:
            self._engine_failed(running.meta, failed, session=session)
        else:
            try:
                decision = self.classify(self._frame_runs[session].output)
            except Exception as exc:
                self._engine_failed(running.meta, exc, session=session)
        return _Ended(session, running, t_end, time.monotonic_ns(), decision)

    def _conclude_ended(self, ended: _Ended) -> None:
        """An ended run's frame: the further stages its label is due for (``[[stages]]``, here on
        the loop's thread, its slot still held), its verdict settled against its deadline, handed
        off, recorded."""
        running, decision = ended.running, ended.decision
        meta = running.meta
        self.inflight.take(meta, Count.DECIDED)
        label, score = "", float("nan")
        verdict, basis = self.fail_safe, Basis.ENGINE_ERROR
        t_post = t_final = time.monotonic_ns()
        extra: dict[str, Any] = {"session": ended.session}
        class_index: dict[str, int] | None = None
        if decision is not None:
            deadline = Deadline.for_frame(meta.t_acquired_ns, self.budget_ns)
            reachable = True
            if self.stages:
                try:
                    pixels = self.consumer.pixels(running.slot)
                    decision, class_index, cascade, reachable = self._further_stages(pixels, decision, deadline)
                except Exception as exc:  # one bad frame must not stop the line: fail-safe and go on
                    self._engine_failed(meta, exc, session=ended.session)
                    decision = None
                else:
                    if cascade:
                        extra["stages"] = cascade
                t_final = time.monotonic_ns()
            if decision is not None:
                verdict, basis = self.fail_safe, Basis.DEADLINE_UNREACHABLE
                if reachable:
                    verdict, basis = settle(decision.verdict, deadline, t_final, self.fail_safe)
                label, score = decision.label, decision.score
        # postprocess_ms: run end -> classified; the frames started after that are in total_ms only
        times = _Times(running.picked, running.pre, ended.t_end, ended.t_classified, t_final)
        if running.staged_ns >= 0:  # its preprocess_ms holds this wait for a session
            extra["staged_ms"] = _ms(running.staged_ns)
        self._conclude(meta, verdict, basis, times, label, score, extra, running.slot, class_index)
        if decision is not None:  # after the hand-off: off the frame's path; a staged frame's wait is not its path
            self.session_time.observe(t_post - running.picked - max(0, running.staged_ns), t_post)
        self._last_done_ns = time.monotonic_ns()

    def heartbeat_ns(self, now_ns: int) -> int:
        """What the loop's heartbeat says: *now_ns*, or the start of the oldest session run still
        under way. A run that hangs then stops the heartbeat, as a blocked engine call does on
        the one-frame path, and the supervisor kills and replaces the worker (its frames get the
        fail-safe verdict from the successor); the loop turning meanwhile must not hide it."""
        return min(now_ns, *(r.pre for r in self._running.values())) if self._running else now_ns

    def drain(self, beat: Callable[[], None] | None = None) -> None:
        """Conclude every frame a session is still running: before a hand-over, so that the
        successor starts at a frame boundary. *beat* is called while it waits (the heartbeat: a
        run that hangs here stops it too)."""
        runner = self.parallel
        while runner is not None and (runner.busy or self._staged is not None):
            if beat is not None:
                beat()
            if self._staged is not None and runner.idle:
                self._start_staged(runner)
            for run in runner.finished(0.05):
                self._conclude_ended(self._classify_ended(*run))

    def close(self) -> None:
        """Stop the sessions' threads (each run under way ends first), before the engine closes."""
        if self.parallel is not None:
            self.parallel.close()
            self.parallel = None

    def _claim_batch(self, first: FrameMeta) -> list[tuple[int, FrameMeta]]:
        """``model.max_batch`` > 1: the frames waiting after *first* (claimed), oldest first, as many
        as a batch can hold and still finish by *first*'s deadline (the earliest); none when
        nothing else waits, so a sustainable rate runs one frame at a time."""
        if first.defect:
            return []
        deadline = Deadline.for_frame(first.t_acquired_ns, self.budget_ns)
        now, expected, size = time.monotonic_ns(), self.batch_expected_ns, 1
        slowdown = self.path_time.slowdown
        while size < len(expected) and deadline.worth_starting(now, int(expected[size] * slowdown)):
            size += 1
        return self.consumer.claim_more(size - 1)

    def _claim_newest(self) -> tuple[int, FrameMeta] | None:
        """deadline.backlog = "newest_first": the newest waiting frame; the waiting frames that
        could not be decided in time after it (its run, then their own) get the fail-safe verdict now."""
        # model.parallel: the frame claimed now may run on a session, all of them busy (slower)
        expected = max(self.expected_ns, self.session_time.expected_ns) if self.parallel else self.expected_ns
        stale_before = time.monotonic_ns() + 2 * expected - self.budget_ns
        claimed, stale = self.consumer.claim_newest(stale_before)
        for slot, meta in stale:
            self.inflight.take(meta, Count.DECIDED)
            self.consumer.release(slot)
            basis = _fail_safe_basis(meta, Basis.DEADLINE_UNREACHABLE)
            self._finish(meta, self.fail_safe, basis, Count.DECIDED, self.log.warning)
        return claimed

    def _decide(self, slot: int, meta: FrameMeta) -> None:
        t_picked = time.monotonic_ns()
        if self.gpu is not None and (freed := self.gpu.reclaim()) is not None:
            self.consumer.release(freed)  # a late frame's slot, now that the GPU is done with it
        deadline = Deadline.for_frame(meta.t_acquired_ns, self.budget_ns)
        label, score = "", float("nan")
        release: int | None = None
        t_pre = t_inf = t_post = t_final = t_picked
        ran = False  # the first model's path ran (in time or not): its duration updates path_time
        class_index = self._class_index
        cascade: list[dict[str, Any]] = []
        if meta.defect:  # not a whole image of the part: never read its slot
            self.consumer.release(slot)
            verdict, basis = self.fail_safe, Basis.INCOMPLETE_FRAME
        elif (not deadline.worth_starting(t_picked, self.expected_ns) and not self._expired(t_picked, deadline)) or (
            self.gpu is not None and not self.gpu.idle
        ):
            self.consumer.release(slot)
            verdict, basis = self.fail_safe, Basis.DEADLINE_UNREACHABLE
        else:
            held = bool(self.stages)  # a further stage may need the pixels after the first model decides
            try:
                pixels = self.consumer.pixels(slot)
                if self.gpu is not None:
                    # While the GPU path runs it holds the slot: if it fails or is late, it hands the
                    # slot back through reclaim() once the GPU is done with it, never before.
                    held = False
                    if self.gpu.run(slot, deadline.at_ns) is Fed.LATE:
                        raise _AbandonedLate
                    held = bool(self.stages)
                    if not held:
                        release = slot  # freed after the hand-off, as below
                    output = self.gpu.engine.output
                else:
                    if not held:
                        # Freed once the verdict is handed off (_finish): the pixels are in the
                        # engine's input after preprocessing, but the lock round trip of freeing it
                        # is then off the frame's path. Every way out of here reaches _finish.
                        release, held = slot, False
                    self.preprocess(pixels, self.engine.input)
                t_pre = time.monotonic_ns() if self.gpu is None else t_picked  # GPU: one step, counted as infer
                if self.gpu is None:
                    output = self.engine.infer()
                t_inf = time.monotonic_ns()
                decision = self.classify(output)
                t_post = time.monotonic_ns()
                t_final = t_post
                ran = True
                reachable = True
                if held:
                    decision, class_index, cascade, reachable = self._further_stages(pixels, decision, deadline)
                    held, release = False, slot
                    t_final = time.monotonic_ns()
                if reachable:
                    verdict, basis = settle(decision.verdict, deadline, t_final, self.fail_safe)
                else:
                    verdict, basis = self.fail_safe, Basis.DEADLINE_UNREACHABLE
                label, score = decision.label, decision.score
            except _AbandonedLate:
                verdict, basis = self.fail_safe, Basis.DEADLINE_MISSED
                t_pre = t_inf = t_post = t_final = time.monotonic_ns()
                ran = True  # at least this long: it counts towards the expected time
            except Exception as exc:  # one bad frame must not stop the line: fail-safe and go on
                verdict, basis = self.fail_safe, Basis.ENGINE_ERROR
                self._engine_failed(meta, exc)
                t_pre = t_inf = t_post = t_final = time.monotonic_ns()
            finally:
                if held:
                    self.consumer.release(slot)

        times = _Times(t_picked, t_pre, t_inf, t_post, t_final)
        extra = {"stages": cascade} if cascade else {}
        self._conclude(meta, verdict, basis, times, label, score, extra, release, class_index)
        if ran:  # after the hand-off: off the frame's path
            self._observe_path(t_post - t_picked, t_post)
        self._last_done_ns = time.monotonic_ns()

    def _observe_path(self, ns: int, now_ns: int) -> None:
        """One path time (a single frame's, or a batch's scaled to one frame) for the expected time."""
        if self.path_time.observe(ns, now_ns):
            self._set_expected()

    def _expired(self, now_ns: int, deadline: Deadline) -> bool:
        """The expected time was raised by runs too long ago and falls back to the warm-up's: True
        when the frame can start after all."""
        if not self.path_time.expire(now_ns):
            return False
        self._set_expected()
        return deadline.worth_starting(now_ns, self.expected_ns)

    def _set_expected(self) -> None:
        """Off the frame's path: what follows from a new expected time."""
        self.expected_ns = self.path_time.expected_ns
        self._verdict_after_ns = int(self.path_p50_ns * self.path_time.slowdown)
        self.counters.set(Count.ENGINE_P99_US, self.expected_ns // 1000)

    def _decide_batch(self, batch: list[tuple[int, FrameMeta]]) -> None:
        """``model.max_batch``: the claimed frames (oldest first, the first one's in-flight entry
        taken) in one engine run, then each frame's verdict, hand-off and record in order. A frame
        the camera delivered defective, or whose preprocessing fails, takes no row; an engine
        failure fails the batch's frames safe, each named in the log."""
        t_picked = time.monotonic_ns()
        rows: list[int | None] = []  # each frame's row in the engine's input, None: not inspected
        failed: dict[int, Exception] = {}
        used = 0
        for i, (slot, meta) in enumerate(batch):
            if meta.defect:
                rows.append(None)
                continue
            try:
                self.preprocess(self.consumer.pixels(slot), self.engine.input_row(used))
            except Exception as exc:  # this frame fails safe, the others go on
                failed[i] = exc
                rows.append(None)
            else:
                rows.append(used)
                used += 1
        t_pre = time.monotonic_ns()
        output: Any = None
        if used:
            try:
                output = self.engine.infer_batch(used)
            except Exception as exc:
                failed.update({i: exc for i, row in enumerate(rows) if row is not None})
        t_inf = time.monotonic_ns()
        if output is not None:  # as one frame's path: scaled by the warm-up's batch-to-single ratio
            expected = self.batch_expected_ns
            self._observe_path(int((t_inf - t_picked) * expected[0] / expected[used - 1]), t_inf)
        for i, ((slot, meta), row) in enumerate(zip(batch, rows, strict=True)):
            if i:
                self.inflight.take(meta, Count.DECIDED)
            label, score = "", float("nan")
            release: int | None = slot
            if meta.defect:  # never read its slot (as _decide)
                self.consumer.release(slot)
                release = None
                verdict, basis = self.fail_safe, Basis.INCOMPLETE_FRAME
            elif i in failed or row is None:
                verdict, basis = self.fail_safe, Basis.ENGINE_ERROR
                self._engine_failed(meta, failed.get(i), batch=len(batch))
            else:
                try:
                    decision = self.classify(output[row : row + 1])
                except Exception as exc:
                    verdict, basis = self.fail_safe, Basis.ENGINE_ERROR
                    self._engine_failed(meta, exc)
                else:
                    deadline = Deadline.for_frame(meta.t_acquired_ns, self.budget_ns)
                    verdict, basis = settle(decision.verdict, deadline, time.monotonic_ns(), self.fail_safe)
                    label, score = decision.label, decision.score
            t_post = time.monotonic_ns()
            # preprocess_ms and infer_ms are the batch's; postprocess_ms runs from the batch's run to
            # this frame's class, so it holds the frames before it in the batch.
            times = _Times(t_picked, t_pre, t_inf, t_post, t_post)
            self._conclude(meta, verdict, basis, times, label, score, {"batch": len(batch), "batch_row": i}, release)
        self._last_done_ns = time.monotonic_ns()

    def _conclude(
        self,
        meta: FrameMeta,
        verdict: Verdict,
        basis: Basis,
        times: _Times,
        label: str,
        score: float,
        extra: dict[str, Any],
        release: int | None,
        class_index: dict[str, int] | None = None,
    ) -> None:
        """A frame the loop decided (its in-flight entry taken): its effects (:meth:`_finish`), then
        its latencies and counts (:meth:`_account`). *class_index*: the deciding model's (the first one's)."""
        stages = self._stages_of(meta, times, label, score, extra)
        decided = ((class_index or self._class_index).get(label, NO_CLASS), _score_word(score))
        t_done = self._finish(meta, verdict, basis, Count.DECIDED, self.log.info, stages, decided, release)
        self._account(meta, basis, label, times, t_done)

    def _engine_failed(self, meta: FrameMeta, exc: BaseException | None, **extra: Any) -> None:
        self.log.error("engine_failed", seq=meta.seq, part_id=meta.part_id, error=repr(exc),
                       **extra, **self._camera_fields[meta.camera])  # fmt: skip

    def _stages_of(self, meta: FrameMeta, times: _Times, label: str, score: float, extra: dict[str, Any]) -> Any:
        """The frame record's stage fields, given the time of its hand-off."""
        t_picked, last_done = times.picked, self._last_done_ns

        def stages(t_done: int) -> dict[str, Any]:
            return {
                "t_picked_ns": t_picked,
                "write_ms": _ms(meta.t_written_ns - meta.t_acquired_ns),
                "queued_ms": _ms(t_picked - meta.t_written_ns),
                "loop_wait_ms": _ms(t_picked - last_done),
                "preprocess_ms": _ms(times.pre - t_picked),
                "infer_ms": _ms(times.inf - times.pre),
                "postprocess_ms": _ms(times.post - times.inf),
                **extra,
                "handoff_ms": _ms(t_done - times.final),
                "total_ms": _ms(t_done - meta.t_acquired_ns),
                "label": label,
                "score": round(score, 5),
            }

        return stages

    def _account(self, meta: FrameMeta, basis: Basis, label: str, times: _Times, t_done: int) -> None:
        """Latency window, histograms and class counts, after the hand-off and the record."""
        self.latency.add(t_done - meta.t_acquired_ns)
        self.counters.add_latency(t_done - meta.t_acquired_ns)
        if basis is Basis.MODEL:
            self.counters.add_stage_latencies(
                meta.t_written_ns - meta.t_acquired_ns, times.picked - meta.t_written_ns, times.pre - times.picked,
                times.inf - times.pre, times.post - times.inf, t_done - times.final,
            )  # fmt: skip
            self.counters.add_class_verdict(self._class_index.get(label, -1))
        if t_done >= self._next_stats_ns:
            self._publish_stats(t_done)

    def _fail_safe(self, meta: FrameMeta, basis: Basis, counter: Count) -> None:
        self.inflight.take(meta, counter)
        self._finish(meta, self.fail_safe, _fail_safe_basis(meta, basis), counter, self.log.warning)

    def _further_stages(
        self, pixels: Any, decision: Decision, deadline: Deadline
    ) -> tuple[Decision, dict[str, int], list[dict[str, Any]], bool]:
        """Run each stage whose ``when`` names the label so far, in order; the last one that ran
        decides. Also returns that stage's class indices, each stage's record, and False when a
        stage that was due could not finish by the deadline (the frame then gets the fail-safe verdict)."""
        index = self._class_index
        ran: list[dict[str, Any]] = []
        for stage in self.stages:
            if decision.label not in stage.when:
                break
            t0 = time.monotonic_ns()
            if not deadline.worth_starting(t0, stage.expected_ns):
                ran.append({"model": stage.model_id, "skipped": "deadline_unreachable"})
                return decision, index, ran, False
            stage.preprocess(pixels, stage.engine.input)
            t1 = time.monotonic_ns()
            output = stage.engine.infer()
            t2 = time.monotonic_ns()
            decision = stage.classify(output)
            t3 = time.monotonic_ns()
            index = stage.class_index
            ran.append(
                {
                    "model": stage.model_id,
                    "label": decision.label,
                    "score": round(decision.score, 5),
                    "preprocess_ms": _ms(t1 - t0),
                    "infer_ms": _ms(t2 - t1),
                    "postprocess_ms": _ms(t3 - t2),
                }
            )
        return decision, index, ran, True

    def _finish(
        self,
        meta: FrameMeta,
        verdict: Verdict,
        basis: Basis,
        counter: Count,
        emit: Any,
        stages: Any = None,
        decided: tuple[int, int] = (NO_CLASS, 0),
        release: int | None = None,
    ) -> int:
        """The decided frame's effects, reject hand-off first (it is on the PLC's critical path),
        then its one record, then its counts; each recorded in the in-flight entry. Frees the ring
        slot *release* after the hand-off (a successor that finds the entry handed frees it without
        a second verdict). Returns the time the verdict was handed off."""
        f = self.inflight
        f.settle(verdict is Verdict.REJECT, _BASIS_INDEX[basis])
        handed = self._hand_off(verdict, basis, meta, decided)
        t_done = time.monotonic_ns()
        f.handed(handed)
        if release is not None:
            if self.archiver is not None and self.archiver.wants(verdict):
                record = {**(stages(t_done) if stages else {}), **self._camera_fields[meta.camera]}
                self.archiver.offer(self.consumer.pixels(release), meta, verdict, basis, record, t_done)
            self.consumer.release(release)
        logged = self._record(emit, meta, verdict, basis, t_done, **(stages(t_done) if stages else {}))
        f.recorded(logged)
        self._count(verdict, basis, counter, logged, handed, meta.camera)
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
            **self._camera_fields[meta.camera],
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

    def _count(
        self, verdict: Verdict, basis: Basis, counter: Count, logged: Outcome, handed: Outcome, camera: int
    ) -> None:
        c = self._cameras[camera].counters
        c.add(counter)
        c.add(Count.REJECTED if verdict is Verdict.REJECT else Count.PASSED)
        if basis is not Basis.MODEL:
            c.add(Count.FAIL_SAFE)
            extra = _COUNTER_OF_BASIS.get(basis)
            if extra is not None:
                c.add(extra)
        c.add(Count.LOG_DROPPED if logged is Outcome.DROPPED else Count.LOGGED)
        reject = verdict is Verdict.REJECT
        if handed is Outcome.OK:
            c.add(Count.PLC_QUEUED if reject else Count.PLC_PASS_QUEUED)
        elif handed is Outcome.DROPPED:
            c.add(Count.PLC_QUEUE_FULL if reject else Count.PLC_PASS_QUEUE_FULL)

    def _hand_off(self, verdict: Verdict, basis: Basis, meta: FrameMeta, decided: tuple[int, int]) -> Outcome:
        reject = verdict is Verdict.REJECT
        if not reject and not self.send_pass:
            return Outcome.NONE
        code = REJECT if reject else PASS
        outbox = self._cameras[meta.camera].outbox
        if outbox.offer(meta.part_id, meta.seq, meta.t_acquired_ns, _BASIS_INDEX[basis], *decided, code):
            return Outcome.OK
        if reject:
            self.log.error("reject_undelivered", part_id=meta.part_id, seq=meta.seq, reason="plc_queue_full",
                           **self._camera_fields[meta.camera])  # fmt: skip
        else:
            self.log.warning("result_undelivered", part_id=meta.part_id, seq=meta.seq, verdict="pass",
                             reason="plc_queue_full", **self._camera_fields[meta.camera])  # fmt: skip
        return Outcome.DROPPED

    def _publish_stats(self, now_ns: int) -> None:
        p50, p99 = self.latency.percentiles((50, 99))
        if p50 == p50:  # not NaN
            self.counters.set(Count.LATENCY_P50_US, int(p50 / 1000))
            self.counters.set(Count.LATENCY_P99_US, int(p99 / 1000))
        self._next_stats_ns = now_ns + STATS_PERIOD_NS


def inference_main(
    ctx: WorkerContext,
    rings: list[RingHandle],
    stop: Any,
    rejects: list[Connection],
    ready: Any,
    own: Baton,
    predecessor: Baton | None,
    inflight: InFlight,
    archive: ArchiveHandle | None = None,
    cameras: list[tuple[str, SharedCounters]] | None = None,
) -> None:
    """Process entry: load and warm the engine, take over from a predecessor (reload) or recover
    what a dead one left, signal ready, then decide frames until stopped and drained, or until a
    successor takes the baton at a frame boundary. With several cameras, *rings*, *rejects* and
    *cameras* (name, counters) hold one entry per camera, in the same order."""
    # The loop thread alone gets the real-time priority, once the engine's threads are started
    # (below): a FIFO pool of every CPU starved the acquisition worker under overload.
    log, sink = ctx.enter(Role.INFER, rt_later=True)
    cfg = ctx.cfg
    counters = ctx.counters
    ring = rings[0]
    consumer: FrameSource = RingConsumer(ring) if len(rings) == 1 else RingSet(rings)
    preprocess = build_preprocessor(cfg.model.preprocess, ring.geometry.shape, ring.geometry.pixel_format)
    engine = create_engine(runnable_model(cfg, cfg.model), preprocess.spec.shape, preprocess.spec.dtype)
    stages = [model_stage(runnable_model(cfg, st.model, stage=True), frozenset(st.when), ring) for st in cfg.stages]
    for key, pre in (("model", preprocess), *((f"stages.{i}.model", s.preprocess) for i, s in enumerate(stages))):
        if pre.fallback:  # still correct, only slower: the run goes on
            log.warning("preprocess_kernel_fallback", key=f"{key}.preprocess.kernel", reason=pre.fallback)
    outboxes = [RejectOutbox(pipe, cfg.plc.queue_size) for pipe in rejects]
    outbox = outboxes[0]
    lanes = None
    if cameras is not None and len(cameras) > 1:
        lanes = [
            CameraOut(name, lane_counters, out) for (name, lane_counters), out in zip(cameras, outboxes, strict=True)
        ]
    handed_over = False
    gpu: GpuFeed | None = None
    archiver: Archiver | None = None
    loop: InferenceLoop | None = None
    try:
        engine.load()
        for stage in stages:
            stage.engine.load()
        if cfg.model.gpu_preprocess and not isinstance(consumer, RingConsumer):
            log.warning("gpu_preprocess_not_used", reason="several cameras: preprocessing runs on the CPU")
        elif cfg.model.gpu_preprocess and isinstance(consumer, RingConsumer):
            layout = ring.layout
            gpu = GpuFeed(engine, cfg.model.preprocess, consumer, layout.slots, layout.slot_stride,
                          ring.geometry.shape, ring.geometry.pixel_format)  # fmt: skip
        archiver = Archiver(ArchiveProducer(archive), cfg) if archive is not None else None
        loop = InferenceLoop(
            cfg, consumer, engine, preprocess, outbox, counters, log, sink, inflight, stages, gpu, archiver, lanes
        )
        warm = loop.warm_up(cfg.model.warmup_runs)  # starts the engine's threads (a batch's too)
        ctx.apply_rt_priority(Role.INFER, log)
        log.info("engine_ready", model=cfg.model.id, backend=cfg.model.backend, path=str(cfg.model.path),
                 preprocess_on="gpu" if gpu is not None else "cpu", **engine.settings, **warm)  # fmt: skip
        if predecessor is not None:
            predecessor.take(HANDOVER_TIMEOUT_S, "inference")
        loop.recover()
        keep_warm = loop.warm_pass if cfg.scheduling.infer_keep_warm and loop.warm_worthwhile else None
        waiter = FrameWaiter(consumer, loop.arrivals, keep_warm, loop.path_p50_ns)
        counters.set(Count.READY, 1)
        ready.set()
        heartbeat_of = loop.heartbeat_ns
        heartbeat = lambda: counters.set(Count.INFER_HEARTBEAT_NS, heartbeat_of(time.monotonic_ns()))  # noqa: E731
        while True:
            now = time.monotonic_ns()
            counters.set(Count.INFER_HEARTBEAT_NS, loop.heartbeat_ns(now))
            ctx.report_logs(Role.INFER, sink, now)
            if own.should_hand_over():
                loop.drain(heartbeat)  # model.parallel: the frames still running get their verdicts here
                handed_over = True
                break
            woke = waiter.wait(0.05)
            # A step also runs on a timeout: a predecessor that died may have left frames announced
            # to it, and stop must not cut off frames still in the ring.
            if not loop.step() and not woke and stop.is_set():
                break
        log.info(
            "inference_handed_over" if handed_over else "inference_stopped",
            model=cfg.model.id,
            decided=counters.get(Count.DECIDED),
            dropped=counters.get(Count.DROPPED),
            **waiter.stats(),
        )
    finally:
        if gpu is not None:  # before the engine's buffers and the ring mapping go, and before a successor looks
            freed = gpu.close()  # at the ring: a late frame's slot (its verdict given) is released, not re-decided
            if freed is not None:
                consumer.release(freed)
        if loop is not None:
            loop.close()
        own.released.set()
        engine.close()
        for stage in stages:
            if stage.engine.loaded:
                stage.engine.close()
        consumer.close()
        for out in outboxes:
            out.close()
        if archiver is not None:
            archiver.producer.close()
        ctx.report_logs(Role.INFER, sink, None)
        shutdown_logging()


def model_stage(model: ModelSection, when: frozenset[str], ring: RingHandle) -> ModelStage:
    """A further stage for frames of *ring*'s geometry, its engine created but not loaded."""
    pre = build_preprocessor(model.preprocess, ring.geometry.shape, ring.geometry.pixel_format)
    return ModelStage(create_engine(model, pre.spec.shape, pre.spec.dtype), pre, when)
