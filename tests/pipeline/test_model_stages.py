"""Two models in series (`[[stages]]`), end to end: `linegate run` on the simulated camera with the
demo model first and a second model that runs only on the frames the first labels "reject"."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import pytest

from linegate.config import Config
from linegate.config.schema import StageSection
from linegate.counters import SharedCounters
from linegate.demo.runner import PlcSimProcess, free_port
from linegate.engine import create_engine
from linegate.logs import configure_logging, get_logger, shutdown_logging
from linegate.pipeline.infer import InferenceLoop, model_stage
from linegate.plc.reject_pipe import RejectInbox, RejectOutbox, reject_channel
from linegate.ring import FrameRing, RingConsumer, RingGeometry, RingProducer
from linegate.vision.preprocess import build_preprocessor
from tests.engine.onnx_models import constant_classifier
from tests.pipeline.harness import LinegateRun, assert_every_frame_and_reject_accounted, records

CTX = mp.get_context("spawn")

pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the second-stage model")


def second_stage(model: Path, model_id: str) -> str:
    return f"""
[[stages]]
when = ["reject"]
[stages.model]
id = "{model_id}"
path = "{model}"
[stages.model.preprocess]
resize = [32, 24]
[stages.model.postprocess]
classes = ["pass", "reject"]
scores = "probabilities"
reject_thresholds = {{ reject = 0.5 }}
"""


@pytest.mark.parametrize("parallel", [1, 2])
def test_second_stage_runs_only_on_flagged_frames_and_its_verdict_stands(tmp_path: Path, parallel: int) -> None:
    """A second stage that always says pass: the frames the demo model flags go through it (their
    record lists the stage with its timing and score) and end as pass; the others never reach it;
    no reject reaches the PLC; every frame keeps one verdict and one record. Also with the first
    model on two sessions (model.parallel = 2; the stage runs one frame at a time)."""
    clears = constant_classifier(tmp_path / "clears.onnx", (1, 1, 24, 32), (0.9, 0.1))
    sim = PlcSimProcess(free_port())
    sessions = {"warmup_runs = 50": f"warmup_runs = 50\nparallel = {parallel}"}
    try:
        run = LinegateRun(tmp_path, sim.port, sessions, append=second_stage(clears, "always-pass"))
        run.wait_event("inspection_resumed", timeout_s=60)
        run.wait_frames(300)
        stderr = run.stop()
    finally:
        sim.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, sim.rising_part_ids(0))
    frames = [r for r in recs if r["event"] == "frame" and r["basis"] == "model"]
    staged = [r for r in frames if "stages" in r]
    assert staged and len(staged) < len(frames), (len(staged), len(frames))  # the demo flags about a quarter
    for r in staged:
        (stage,) = r["stages"]
        assert stage["model"] == "always-pass" and stage["label"] == "pass" and stage["score"] == pytest.approx(0.9)
        assert stage["infer_ms"] >= 0 and r["verdict"] == "pass" and r["label"] == "pass"
    assert all(r["verdict"] == "pass" for r in frames)
    assert not sim.rising_part_ids(0)
    (ready,) = [r for r in recs if r["event"] == "engine_ready"]
    assert ready["stage2_p99_ms"] > 0 and ready.get("parallel", 1) == parallel


def run_loop_in_process(
    tmp_path: Path, cfg: Config, expected_stage_ns: int | None
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Three frames through the real InferenceLoop with the configured stages; optionally force the
    second stage's expected run time. Returns the frame records and what reached the reject pipe."""
    geometry = RingGeometry(480, 640, 1, "Mono8")
    ring = FrameRing.create(CTX, instance=cfg.instance.name, geometry=geometry, slots=4, journal_size=16,
                            when_full="drop_newest")  # fmt: skip
    producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
    pre = build_preprocessor(cfg.model.preprocess, geometry.shape, "Mono8")
    engine = create_engine(cfg.model, pre.spec.shape, pre.spec.dtype)
    stages = [model_stage(s.model, frozenset(s.when), ring.handle) for s in cfg.stages]
    for stage in [engine, *(s.engine for s in stages)]:
        stage.load()
    reader, writer = reject_channel(CTX)
    log_path = tmp_path / "frames.jsonl"
    sink = configure_logging(file=log_path, stream=None)
    try:
        loop = InferenceLoop(cfg, consumer, engine, pre, RejectOutbox(writer, 64), SharedCounters.create(CTX),
                             get_logger(), sink, stages=stages)  # fmt: skip
        loop.warm_up(3)
        if expected_stage_ns is not None:
            stages[0].expected_ns = expected_stage_ns
        for part in (1, 2, 3):
            _, slot = producer.reserve(part, part, time.monotonic_ns())
            assert slot is not None
            producer.pixels(slot)[...] = 40 * part
            producer.publish(slot, time.monotonic_ns())
            assert consumer.wait(1.0)
            loop.step()
    finally:
        shutdown_logging()
        for e in [engine, *(s.engine for s in stages)]:
            e.close()
        producer.close()
        consumer.close()
        ring.close()
    return [r for r in records(log_path) if r["event"] == "frame"], RejectInbox(reader).take(1.0)


def always_reject_stage(tmp_path: Path, demo: Config) -> Config:
    model = constant_classifier(tmp_path / "rejects.onnx", (1, 1, 24, 32), (0.1, 0.9))
    stage = StageSection.model_validate({
        "when": ["pass", "reject"],
        "model": {"id": "always-reject", "path": str(model), "preprocess": {"resize": [32, 24]},
                  "postprocess": {"classes": ["pass", "reject"], "reject_thresholds": {"reject": 0.5}}},
    })
    return demo.model_copy(update={"stages": [stage]})


def test_the_last_stage_decides_and_its_class_and_score_go_to_the_plc(tmp_path: Path, demo_config: Config) -> None:
    """Every frame goes on to an always-reject second stage: each is a model reject whose reject record
    carries the second stage's class index (1) and score (0.9 x 10000)."""
    frames, rejects = run_loop_in_process(tmp_path, always_reject_stage(tmp_path, demo_config), None)
    assert [(r["verdict"], r["basis"], r["stages"][0]["model"]) for r in frames] == [
        ("reject", "model", "always-reject")
    ] * 3
    assert [(r.part_id, r.class_index, r.score) for r in rejects] == [(1, 1, 9000), (2, 1, 9000), (3, 1, 9000)]


def test_a_stage_that_cannot_finish_by_the_deadline_gives_the_fail_safe_verdict(
    tmp_path: Path, demo_config: Config
) -> None:
    """A second stage expected to take longer than the budget is not started: the frame gets the
    fail-safe verdict, basis deadline_unreachable, and its record says the stage was skipped."""
    frames, rejects = run_loop_in_process(tmp_path, always_reject_stage(tmp_path, demo_config), 10**10)
    assert [(r["verdict"], r["basis"]) for r in frames] == [("reject", "deadline_unreachable")] * 3
    assert all(r["stages"] == [{"model": "always-reject", "skipped": "deadline_unreachable"}] for r in frames)
    assert [r.part_id for r in rejects] == [1, 2, 3]
