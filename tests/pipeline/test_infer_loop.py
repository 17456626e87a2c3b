"""The inference loop in-process, on a real ring and a real ONNX Runtime engine."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pytest

from linegate.config import Config
from linegate.counters import Count, SharedCounters
from linegate.engine import create_engine
from linegate.logs import configure_logging, get_logger, shutdown_logging
from linegate.pipeline.infer import InferenceLoop
from linegate.plc.reject_pipe import RejectInbox, RejectOutbox, reject_channel
from linegate.ring import FrameRing, RingConsumer, RingGeometry
from linegate.vision.preprocess import build_preprocessor
from tests.pipeline.harness import records
from tests.pipeline.loop_rig import loop_on_a_ring

pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test model")

CTX = mp.get_context("spawn")


def model_failing_at_run_time(path: Path) -> Path:
    """A model that loads fine but raises on every frame: it gathers at an index out of bounds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.array([[0.5, 0.5]], dtype=np.float32), "table")
    big = numpy_helper.from_array(np.array(1000.0, dtype=np.float32), "big")
    nodes = [
        helper.make_node("ReduceMax", ["image"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "big"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "index"], ["row"], axis=0),
        helper.make_node("Unsqueeze", ["row", "axes"], ["scores"]),
    ]
    axes = numpy_helper.from_array(np.array([0], dtype=np.int64), "axes")
    graph = helper.make_graph(
        nodes,
        "fails",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 120, 160])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, None)],
        [table, big, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_engine_errors_give_fail_safe_rejects_with_records(tmp_path: Path, demo_config: Config) -> None:
    """Frames the engine fails on get the fail-safe reject, a record, a hand-off and the counters."""
    cfg = demo_config.model_copy(
        update={"model": demo_config.model.model_copy(update={"path": model_failing_at_run_time(tmp_path / "f.onnx")})}
    )
    log_path = tmp_path / "frames.jsonl"
    with loop_on_a_ring(cfg, log_path) as rig:
        for part in (1, 2, 3):
            rig.publish(part)
        for _ in range(3):
            assert rig.consumer.wait(1.0)
            rig.loop.step()
        reader, counters = rig.reader, rig.counters
    frames = [r for r in records(log_path) if r["event"] == "frame"]
    assert [(r["part_id"], r["verdict"], r["basis"]) for r in frames] == [
        (p, "reject", "engine_error") for p in (1, 2, 3)
    ]
    assert sum(r["event"] == "engine_failed" for r in records(log_path)) == 3
    assert [r[0] for r in RejectInbox(reader).take(1.0)] == [1, 2, 3]
    s = counters.snapshot()
    assert (s[Count.DECIDED], s[Count.ENGINE_ERRORS], s[Count.FAIL_SAFE], s[Count.PLC_QUEUED]) == (3, 3, 3, 3)
    assert s[Count.LOGGED] == 3


@pytest.mark.parametrize(
    ("stage", "expect_handoff", "expect_record"),
    [("TAKEN", True, True), ("HANDED", False, True), ("RECORDED", False, False), ("HANDED_LOGGED", False, False)],
)
def test_successor_finishes_exactly_the_effects_a_killed_loop_left_out(
    tmp_path: Path, demo_config: Config, stage: str, expect_handoff: bool, expect_record: bool
) -> None:
    """A predecessor killed at each stage of a frame: its successor's recover() hands off, records
    and counts only what is missing, so the frame ends with one of each. HANDED_LOGGED: killed
    between its record and the stage saying so; the supervisor found the record as the dead
    worker's last line (recovery.found_record), so the successor only counts."""
    from linegate.pipeline.inflight import InFlight, Outcome
    from linegate.pipeline.recovery import found_record
    from linegate.ring import FrameMeta
    from linegate.timing.deadline import Basis

    cfg = demo_config
    geometry = RingGeometry(480, 640, 1, "Mono8")
    ring = FrameRing.create(CTX, instance=cfg.instance.name, geometry=geometry, slots=4, journal_size=16,
                            when_full="drop_newest")  # fmt: skip
    consumer = RingConsumer(ring.handle)
    pre = build_preprocessor(cfg.model.preprocess, geometry.shape, "Mono8")
    engine = create_engine(cfg.model, pre.spec.shape, pre.spec.dtype)
    reader, writer = reject_channel(CTX)
    counters = SharedCounters.create(CTX)
    inflight = InFlight.create(CTX)
    # what the killed predecessor had done: a model reject for part 42, up to *stage*
    inflight.take(FrameMeta(41, 42, 42, time.monotonic_ns(), time.monotonic_ns()), Count.DECIDED)
    inflight.settle(True, list(Basis).index(Basis.MODEL))
    if stage != "TAKEN":
        inflight.handed(Outcome.OK)
    if stage == "RECORDED":
        inflight.recorded(Outcome.OK)
    if stage == "HANDED_LOGGED":
        last = {"event": "frame", "seq": 41, "part_id": 42, "verdict": "reject", "basis": "model"}
        assert found_record(inflight, json.dumps(last).encode(), None) is not None
    log_path = tmp_path / "frames.jsonl"
    sink = configure_logging(file=log_path, stream=None)
    try:
        loop = InferenceLoop(
            cfg, consumer, engine, pre, RejectOutbox(writer, 64), counters, get_logger(), sink, inflight
        )
        loop.recover()
    finally:
        shutdown_logging()
        consumer.close()
        ring.close()
    frames = [r for r in records(log_path) if r["event"] == "frame"]
    handed = [r[0] for r in RejectInbox(reader).take(0.2)]
    assert handed == ([42] if expect_handoff else [])
    assert len(frames) == (1 if expect_record else 0)
    if frames:
        expected_basis = "lost_in_flight" if stage == "TAKEN" else "model"
        assert (frames[0]["part_id"], frames[0]["verdict"], frames[0]["basis"]) == (42, "reject", expected_basis)
    s = counters.snapshot()
    assert (s[Count.DECIDED], s[Count.REJECTED], s[Count.PLC_QUEUED], s[Count.LOGGED]) == (1, 1, 1, 1)  # once, always
    assert inflight.current() is None


def test_a_path_that_slows_down_raises_the_expected_time_so_frames_it_cannot_finish_are_not_started(
    tmp_path: Path, demo_config: Config
) -> None:
    """Warm-up measures the path on an idle machine; when frames then take 20 ms (a loaded machine),
    the loop expects 20 ms within a few frames, and a frame with 10 ms of its budget left gets the
    fail-safe verdict at once instead of a model verdict after its deadline."""
    budget_ns = int(demo_config.deadline.budget_ms * 1e6)
    with loop_on_a_ring(demo_config, tmp_path / "frames.jsonl") as rig:
        loop = rig.loop

        def feed(part: int, age_ns: int) -> None:
            rig.publish(part, time.monotonic_ns() - age_ns)
            assert rig.consumer.wait(1.0)
            loop.step()

        loop.warm_up(20)
        warm = loop.expected_ns
        assert warm < 10_000_000, "the demo model's path should take well under 10 ms"
        fast = loop.preprocess

        def slow(frame: np.ndarray, out: np.ndarray) -> None:
            time.sleep(0.02)
            fast(frame, out)

        loop.preprocess = slow  # type: ignore[method-assign]
        for part in range(1, 17):
            feed(part, 0)
        assert loop.expected_ns >= 20_000_000 > warm
        feed(17, budget_ns - 10_000_000)  # 10 ms left: enough for the warm-up's figure, not for 20 ms
    assert [r["basis"] for r in rig.frame_records()] == ["model"] * 16 + ["deadline_unreachable"]


def test_an_expected_time_raised_beyond_the_budget_falls_back_after_its_horizon(
    tmp_path: Path, demo_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stalls longer than the budget raise the expected time so far that no frame can start, and
    none would ever run again to lower it; once the slow runs are older than the horizon, the next
    frame starts on the warm-up's figure and is decided by the model."""
    from linegate.timing import run_time

    monkeypatch.setattr(run_time, "HORIZON_NS", 200_000_000)  # 0.2 s instead of 1 s: a quicker test
    budget_ms = 30.0
    cfg = demo_config.model_copy(update={"deadline": demo_config.deadline.model_copy(update={"budget_ms": budget_ms})})
    with loop_on_a_ring(cfg, tmp_path / "frames.jsonl") as rig:
        loop = rig.loop
        loop.warm_up(20)
        fast = loop.preprocess

        def stalled(frame: np.ndarray, out: np.ndarray) -> None:
            time.sleep(0.04)  # longer than the 30 ms budget
            fast(frame, out)

        def feed(part: int) -> None:
            rig.publish(part)
            assert rig.consumer.wait(1.0)
            loop.step()

        loop.preprocess = stalled  # type: ignore[method-assign]
        for part in range(1, 17):
            feed(part)
        assert loop.expected_ns > budget_ms * 1e6, "the stalls should have raised it beyond the budget"
        loop.preprocess = fast  # type: ignore[method-assign]
        feed(17)  # fresh, but the expected time does not fit its budget: not started
        time.sleep(0.25)
        feed(18)
    bases = [r["basis"] for r in rig.frame_records()]
    assert bases[16:] == ["deadline_unreachable", "model"]


def test_a_frame_taken_with_others_waiting_tells_the_plc_worker_not_to_poll(
    tmp_path: Path, demo_config: Config
) -> None:
    """Two frames wait: the first is taken with the backlog mark (the PLC worker sleeps until its
    verdict instead of polling, off the engine's CPU); the second, alone, with the time its verdict
    is due (polled for shortly before, as at a sustainable rate)."""
    from linegate.pipeline.inflight import BACKLOG_DUE, InFlight

    inflight = InFlight.local()
    log_path = tmp_path / "frames.jsonl"
    with loop_on_a_ring(demo_config, log_path, inflight=inflight) as rig:
        rig.publish(1)
        rig.publish(2)
        assert rig.consumer.wait(1.0)
        rig.loop.step()
        first_due = inflight.verdict_due_ns
        t_second = time.monotonic_ns()
        assert rig.consumer.wait(1.0)
        rig.loop.step()
        second_due = inflight.verdict_due_ns
    decided = [r["part_id"] for r in records(log_path) if r["event"] == "frame"]  # written out at the rig's end
    assert decided == [1, 2]
    assert first_due == BACKLOG_DUE
    assert second_due >= t_second
