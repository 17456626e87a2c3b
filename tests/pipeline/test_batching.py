"""model.max_batch: under a backlog the inference loop decides up to max_batch waiting frames in
one engine run, oldest first, as many as the oldest frame's deadline allows; each frame still gets
exactly one verdict (the same as one at a time), one record and one hand-off, in part order.
In-process loop on a real ring and the demo model made batch-dynamic (ONNX Runtime)."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linegate.config import Config
from linegate.counters import Count, SharedCounters
from linegate.demo.ground_truth import expected_reject
from linegate.engine import create_engine
from linegate.logs import configure_logging, get_logger, shutdown_logging
from linegate.pipeline.infer import InferenceLoop
from linegate.plc.reject_pipe import RejectOutbox, reject_channel
from linegate.ring import FrameRing, RingConsumer, RingGeometry, RingProducer
from linegate.vision.preprocess import build_preprocessor
from tests.pipeline.harness import records
from tests.pipeline.loop_rig import POSITIONS, ball_frame

onnx = pytest.importorskip("onnx", reason="the onnx package (dev extra) makes the demo model batch-dynamic")

CTX = mp.get_context("spawn")
MS = 1_000_000
GEOMETRY = RingGeometry(480, 640, 1, "Mono8")


def batch_dynamic_copy(model: Path, out: Path) -> Path:
    """*model* with dimension 0 of its input and output symbolic (the demo's graph is batch-agnostic)."""
    proto = onnx.load(str(model))
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(proto, str(out))
    return out


@dataclass
class Bench:
    loop: InferenceLoop
    producer: RingProducer
    consumer: RingConsumer
    counters: SharedCounters
    log_path: Path

    def publish(self, frames: list[np.ndarray], age_ms: float = 1.0, first_part: int = 1) -> None:
        now = time.monotonic_ns()
        for part, pixels in enumerate(frames, start=first_part):
            _, slot = self.producer.reserve(part, part, now - int(age_ms * MS))
            assert slot is not None
            self.producer.pixels(slot)[...] = pixels
            self.producer.publish(slot, time.monotonic_ns())

    def decide(self, frames: int) -> list[dict[str, Any]]:
        end = time.monotonic() + 10
        while self.counters.get(Count.LOGGED) < frames and time.monotonic() < end:
            self.consumer.wait(0.05)
            self.loop.step()
        shutdown_logging()
        return [r for r in records(self.log_path) if r["event"] == "frame"]


@pytest.fixture
def bench_for(tmp_path: Path, demo_config: Config) -> Iterator[Any]:
    opened: list[Any] = []

    def make(max_batch: int, budget_ms: float = 10_000.0, batch_by: str = "dimension") -> Bench:
        """batch_by "dimension" on a batch-dynamic copy of the demo model; "sessions" on the model
        as it is (batch fixed at 1: one-frame sessions side by side)."""
        path = demo_config.model.path
        if batch_by == "dimension":
            path = batch_dynamic_copy(path, tmp_path / f"dyn{max_batch}.onnx")
        model = demo_config.model.model_copy(update={"path": path, "max_batch": max_batch, "batch_by": batch_by})
        deadline = demo_config.deadline.model_copy(update={"budget_ms": budget_ms})
        cfg = demo_config.model_copy(update={"model": model, "deadline": deadline})
        ring = FrameRing.create(CTX, instance=f"{cfg.instance.name}b{max_batch}", geometry=GEOMETRY, slots=16,
                                journal_size=16, when_full="drop_newest")  # fmt: skip
        producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
        pre = build_preprocessor(cfg.model.preprocess, GEOMETRY.shape, "Mono8")
        engine = create_engine(cfg.model, pre.spec.shape, pre.spec.dtype)
        engine.load()
        reader, writer = reject_channel(CTX)  # the reader kept open: rejects are handed off
        log_path = tmp_path / f"batch{max_batch}.jsonl"
        sink = configure_logging(file=log_path, stream=None)
        counters = SharedCounters.create(CTX)
        loop = InferenceLoop(cfg, consumer, engine, pre, RejectOutbox(writer, 64), counters, get_logger(), sink)
        loop.warm_up(10)
        opened.append((engine, producer, consumer, ring, reader))
        return Bench(loop, producer, consumer, counters, log_path)

    yield make
    shutdown_logging()
    for engine, producer, consumer, ring, reader in opened:
        reader.close()
        engine.close()
        producer.close()
        consumer.close()
        ring.close()


@pytest.mark.parametrize("batch_by", ["dimension", "sessions"])
def test_a_backlog_is_decided_in_batches_with_the_verdicts_of_one_at_a_time(bench_for: Any, batch_by: str) -> None:
    """Eight waiting frames, max_batch 4: two runs of four, in part order; each frame's label and
    score equal those of the same frame decided alone (max_batch 1), and match the ground truth;
    over the model's batch dimension or as four one-frame sessions side by side."""
    frames = [ball_frame(x, y) for x, y in POSITIONS]
    alone = bench_for(1)
    alone.publish(frames)
    singles = alone.decide(len(frames))
    batched = bench_for(4, batch_by=batch_by)
    assert [round(ns / 1e6, 3) > 0 for ns in batched.loop.batch_expected_ns] == [True] * 4
    batched.publish(frames)
    recs = batched.decide(len(frames))
    assert [r["part_id"] for r in recs] == list(range(1, 9))
    assert [(r["batch"], r["batch_row"]) for r in recs] == [(4, i) for i in range(4)] * 2
    assert all("batch" not in r for r in singles)
    for one, many, pixels in zip(singles, recs, frames, strict=True):
        assert many["basis"] == "model" and one["basis"] == "model"
        assert many["label"] == one["label"] and many["score"] == pytest.approx(one["score"], abs=1e-5)
        assert (many["verdict"] == "reject") == expected_reject(pixels)
    c = batched.counters
    assert c.get(Count.DECIDED) == 8 and c.get(Count.LOGGED) == 8 and c.get(Count.FAIL_SAFE) == 0
    assert c.get(Count.PLC_QUEUED) == sum(expected_reject(f) for f in frames)


def test_without_a_backlog_each_frame_runs_alone(bench_for: Any) -> None:
    """Frames decided as they arrive (one waiting at a time) never wait to fill a batch."""
    b = bench_for(4)
    for i, (x, y) in enumerate(POSITIONS[:3], start=1):
        b.publish([ball_frame(x, y)], first_part=i)
        b.consumer.wait(1.0)
        b.loop.step()
    recs = b.decide(3)
    assert [r["part_id"] for r in recs] == [1, 2, 3]
    assert all("batch" not in r and r["basis"] == "model" for r in recs)


def test_the_oldest_frames_deadline_limits_the_batch(bench_for: Any) -> None:
    """Batches of up to 2 fit the oldest waiting frame's deadline, larger ones do not: the loop
    takes two at a time, and every frame is decided by the model within its deadline."""
    b = bench_for(4, budget_ms=50.0)
    b.loop.batch_expected_ns = [5 * MS, 10 * MS, 60 * MS, 60 * MS]
    b.publish([ball_frame(x, y) for x, y in POSITIONS[:6]])
    recs = b.decide(6)
    assert [r["part_id"] for r in recs] == list(range(1, 7))
    assert [r.get("batch") for r in recs] == [2] * 6
    assert all(r["basis"] == "model" and r["deadline_met"] for r in recs)


def test_a_defective_frame_in_a_batch_fails_safe_and_the_others_are_decided(bench_for: Any) -> None:
    """A frame the camera delivered incomplete takes no row: fail-safe incomplete_frame, in its
    place in part order; the frames around it are decided by the model."""
    b = bench_for(4)
    now = time.monotonic_ns()
    for part, (x, y) in enumerate(POSITIONS[:3], start=1):
        defect = 1 if part == 2 else 0
        _, slot = b.producer.reserve(part, part, now - MS, payload_bytes=100 if defect else 0, defect=defect)
        assert slot is not None
        b.producer.pixels(slot)[...] = ball_frame(x, y)
        b.producer.publish(slot, time.monotonic_ns())
    recs = b.decide(3)
    assert [r["part_id"] for r in recs] == [1, 2, 3]
    assert [r["basis"] for r in recs] == ["model", "incomplete_frame", "model"]
    assert recs[1]["verdict"] == "reject" and [r["batch"] for r in recs] == [3, 3, 3]


def test_a_batch_cut_off_by_a_dead_worker_is_recovered_once_each(bench_for: Any) -> None:
    """A worker that died after claiming a batch of four and handing off the first frame: its
    successor's recover() gives the three frames without a verdict the fail-safe verdict (basis
    lost_in_flight), once each, and decides the frame still waiting by the model."""
    b = bench_for(4)
    b.publish([ball_frame(x, y) for x, y in POSITIONS[:5]])
    dead = b.loop
    first = b.consumer.claim()
    assert first is not None
    dead.inflight.take(first[1], Count.DECIDED)
    more = b.consumer.claim_more(3)
    assert [m.part_id for _, m in more] == [2, 3, 4]
    # What the dead worker finished: frame 1's verdict, hand-off and record (its slot freed).
    dead._decide(*first)
    dead.recover()  # the successor (same in-flight entry, same ring)
    recs = b.decide(5)
    by_part: dict[int, list[str]] = {}
    for r in recs:
        by_part.setdefault(r["part_id"], []).append(r["basis"])
    assert by_part == {1: ["model"], 2: ["lost_in_flight"], 3: ["lost_in_flight"], 4: ["lost_in_flight"],
                       5: ["model"]}  # fmt: skip
    assert b.counters.get(Count.DECIDED) == 5 and b.counters.get(Count.LOGGED) == 5


def test_batch_run_times_are_measured_at_powers_of_two_and_filled_upwards() -> None:
    """Warm-up measures batches of 2, 4, 8, ... and max_batch itself (so it grows about linearly
    with max_batch); a size in between is expected to take as long as the next measured size, and
    no size is expected faster than a smaller one."""
    from linegate.pipeline.infer import batch_estimates

    asked: list[int] = []

    def measure(size: int) -> int:
        asked.append(size)
        return {2: 30, 4: 25, 8: 80, 12: 100}[size]  # 4 came out faster than 2 (noise)

    assert batch_estimates(20, 12, measure) == [20, 30, 30, 30, 80, 80, 80, 80, 100, 100, 100, 100]
    assert asked == [2, 4, 8, 12]
    assert batch_estimates(20, 1, measure) == [20] and asked == [2, 4, 8, 12]  # nothing more measured
