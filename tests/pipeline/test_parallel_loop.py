"""model.parallel: under a backlog the inference loop decides frames on several one-frame sessions
at once, each taking the next waiting frame as its run ends, and a frame alone on the main session
with every thread; every frame still gets exactly one verdict (the same as one at a time), one
record and one hand-off, also with several cameras' rings. In-process loop on real rings, the
demo's ONNX Runtime model and real reject pipes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from linegate.config import Config
from linegate.counters import Count
from linegate.demo.ground_truth import expected_reject
from linegate.engine.base import FrameRun
from linegate.engine.ort_backend import OnnxRuntimeEngine
from linegate.logs import shutdown_logging
from linegate.plc.reject_pipe import RejectInbox
from linegate.timing.run_time import PathTime
from tests.pipeline.harness import records
from tests.pipeline.loop_rig import POSITIONS, LoopRig, ball_frame, loop_on_a_ring, loop_on_camera_rings

MS = 1_000_000


def with_parallel(cfg: Config, sessions: int) -> Config:
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"parallel": sessions})})


def decide_all(rig: LoopRig, frames: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Step the loop (as its worker does: wait, then step) until *frames* records are written;
    then the log is flushed and closed (nothing more is logged) and its frame records returned."""
    end = time.monotonic() + timeout_s
    while rig.counters.get(Count.LOGGED) < frames:
        assert time.monotonic() < end, f"{rig.counters.get(Count.LOGGED)} of {frames} frames decided"
        rig.consumer.wait(0.05)
        rig.loop.step()
    shutdown_logging()
    return rig.frame_records()


def test_a_backlog_is_decided_on_every_session_with_the_verdicts_of_one_at_a_time(
    tmp_path: Path, demo_config: Config
) -> None:
    """Eight waiting frames, two sessions: both sessions decide frames, every part once; each
    frame's label and score equal those of the same frame decided one at a time, and match the
    ground truth; the rejects are handed off. Inside and outside the reject zone two by two: a
    frame started on a session holding the frame before last would show as a wrong verdict."""
    frames = [ball_frame(*POSITIONS[i]) for i in (0, 2, 1, 3, 4, 6, 5, 7)]
    results: dict[int, list[dict[str, Any]]] = {}
    for sessions in (1, 2):
        with loop_on_a_ring(with_parallel(demo_config, sessions), tmp_path / f"p{sessions}.jsonl", slots=16) as rig:
            rig.loop.warm_up(10)
            for part, pixels in enumerate(frames, start=1):
                rig.publish(part, pixels=pixels)
            results[sessions] = sorted(decide_all(rig, len(frames)), key=lambda r: r["part_id"])
            c = rig.counters
            assert (c.get(Count.DECIDED), c.get(Count.LOGGED), c.get(Count.FAIL_SAFE)) == (8, 8, 0)
            assert c.get(Count.PLC_QUEUED) == sum(expected_reject(f) for f in frames)
    alone, parallel = results[1], results[2]
    assert [r["part_id"] for r in parallel] == list(range(1, 9))
    assert {0, 1} <= {r.get("session") for r in parallel}  # the last frames may run alone, on the main session
    staged = [r for r in parallel if "staged_ms" in r]  # preprocessed while both sessions ran, copied to the first free
    assert staged and all(0 <= r["staged_ms"] <= r["preprocess_ms"] for r in staged)
    assert all("session" not in r for r in alone)
    for one, many, pixels in zip(alone, parallel, frames, strict=True):
        assert many["basis"] == "model" and one["basis"] == "model"
        assert many["label"] == one["label"] and many["score"] == pytest.approx(one["score"], abs=1e-5)
        assert (many["verdict"] == "reject") == expected_reject(pixels)


def test_with_two_cameras_the_sessions_take_both_cameras_frames_and_each_verdict_goes_to_its_camera(
    tmp_path: Path, demo_config: Config
) -> None:
    """[[cameras]]: eight frames waiting in each of two cameras' rings, two sessions: both sessions
    decide frames of both cameras, every frame once per camera, each verdict matches the ground
    truth, each record names its camera, and each reject reaches its own camera's pipe once (the
    cameras are given mirrored frames, so a verdict sent to the wrong camera shows)."""
    frames = [ball_frame(*POSITIONS[i]) for i in (0, 2, 1, 3, 4, 6, 5, 7)]
    order = {0: frames, 1: frames[::-1]}
    with loop_on_camera_rings(with_parallel(demo_config, 2), tmp_path / "cams.jsonl", cameras=2, slots=16) as rig:
        rig.loop.warm_up(10)
        for part in range(1, len(frames) + 1):
            for camera in (0, 1):
                rig.publish(camera, part, order[camera][part - 1])
        end = time.monotonic() + 20
        while sum(c.get(Count.LOGGED) for c in rig.counters) < 2 * len(frames):
            assert time.monotonic() < end, "not every frame was decided"
            rig.consumer.wait(0.05)
            rig.loop.step()
        shutdown_logging()
        recs = [r for r in records(rig.log_path) if r["event"] == "frame"]
        sent = {camera: sorted(r.part_id for r in RejectInbox(rig.readers[camera]).take(1.0)) for camera in (0, 1)}
        counted = [(c.get(Count.DECIDED), c.get(Count.LOGGED), c.get(Count.PLC_QUEUED)) for c in rig.counters]
    for camera in (0, 1):
        mine = sorted((r for r in recs if r["camera"] == f"cam{camera}"), key=lambda r: r["part_id"])
        assert [r["part_id"] for r in mine] == list(range(1, 9)), camera
        assert all(r["basis"] == "model" for r in mine)
        rejects = [p for p, pixels in enumerate(order[camera], start=1) if expected_reject(pixels)]
        assert [r["part_id"] for r in mine if r["verdict"] == "reject"] == rejects, camera
        assert sent[camera] == rejects, camera
        assert counted[camera] == (8, 8, len(rejects)), camera
        assert any(r.get("session") is not None for r in mine), camera  # on a session, not alone
    assert {0, 1} <= {r.get("session") for r in recs}
    assert sent[0] != sent[1]  # mirrored: the test would not notice verdicts sent to the other camera otherwise


def test_a_failing_session_fails_its_frames_safe_and_the_other_session_goes_on(
    tmp_path: Path, demo_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session 1's runs raise once the loop is warm: each frame it took gets the fail-safe verdict
    (basis engine_error) with an engine_failed record naming the part and the session; session 0's
    frames are decided by the model; still one record per frame."""
    broken = threading.Event()
    real = OnnxRuntimeEngine.frame_runs

    def one_broken(self: OnnxRuntimeEngine) -> list[FrameRun]:
        runs = real(self)
        good = runs[1].run

        def run() -> object:
            if broken.is_set():
                raise RuntimeError("session 1 lost its device")
            return good()

        return [runs[0], FrameRun(runs[1].input, runs[1].output, run)]

    monkeypatch.setattr(OnnxRuntimeEngine, "frame_runs", one_broken)
    with loop_on_a_ring(with_parallel(demo_config, 2), tmp_path / "broken.jsonl", slots=16) as rig:
        rig.loop.warm_up(10)
        broken.set()
        for part, (x, y) in enumerate(POSITIONS, start=1):
            rig.publish(part, pixels=ball_frame(x, y))
        recs = decide_all(rig, len(POSITIONS))
        failed = [r for r in records(rig.log_path) if r["event"] == "engine_failed"]
    assert sorted(r["part_id"] for r in recs) == list(range(1, 9))
    on = {s: [r for r in recs if r.get("session") == s] for s in (0, 1, None)}
    assert on[0] and on[1], "both sessions took frames"
    assert all(r["basis"] == "model" for r in on[0] + on[None])  # None: a frame alone, on the main session
    assert all(r["basis"] == "engine_error" and r["verdict"] == "reject" for r in on[1])
    assert sorted(r["part_id"] for r in failed) == sorted(r["part_id"] for r in on[1])
    assert all(r["session"] == 1 and "session 1 lost its device" in r["error"] for r in failed)


def test_frames_on_the_sessions_when_the_worker_dies_get_one_fail_safe_verdict_each(
    tmp_path: Path, demo_config: Config
) -> None:
    """Two frames started on the sessions, a third staged, a fourth waiting, then the worker is
    gone before it collects the runs: its successor's recover() gives the three it had claimed the
    fail-safe verdict (basis lost_in_flight), once each, and decides the waiting frame by the model."""
    with loop_on_a_ring(with_parallel(demo_config, 2), tmp_path / "dead.jsonl", slots=16) as rig:
        loop = rig.loop
        loop.warm_up(10)
        for part, (x, y) in enumerate(POSITIONS[:4], start=1):
            rig.publish(part, pixels=ball_frame(x, y))
        rig.consumer.wait(1.0)
        loop.step()
        assert loop.parallel is not None and loop.parallel.busy == 2 and loop._staged is not None
        loop.close()  # the runs end, nobody collects them: as if the worker had been killed
        loop.recover()  # the successor (same in-flight entry, same ring), deciding one at a time
        recs = decide_all(rig, 4)
    by_part = {r["part_id"]: r for r in recs}
    assert len(recs) == 4 and sorted(by_part) == [1, 2, 3, 4]
    assert [by_part[p]["basis"] for p in (1, 2, 3)] == ["lost_in_flight"] * 3
    assert by_part[4]["basis"] == "model"


def test_drain_concludes_the_running_frames_before_a_hand_over(tmp_path: Path, demo_config: Config) -> None:
    """drain() (before the baton goes to a successor) returns once every started or staged frame
    has its verdict and record: the successor starts at a frame boundary."""
    with loop_on_a_ring(with_parallel(demo_config, 2), tmp_path / "drain.jsonl", slots=16) as rig:
        loop = rig.loop
        loop.warm_up(10)
        for part in (1, 2, 3):
            rig.publish(part, pixels=ball_frame(*POSITIONS[part - 1]))
        rig.consumer.wait(1.0)
        loop.step()
        assert loop.parallel is not None and loop.parallel.busy == 2 and loop._staged is not None
        loop.drain()
        assert loop.parallel.busy == 0 and loop._staged is None
        shutdown_logging()
        recs = rig.frame_records()
    assert sorted(r["part_id"] for r in recs) == [1, 2, 3] and all(r["basis"] == "model" for r in recs)
    assert ["staged_ms" in r for r in sorted(recs, key=lambda r: r["part_id"])] == [False, False, True]


def test_a_frame_alone_runs_on_the_main_session(tmp_path: Path, demo_config: Config) -> None:
    """Nothing else waiting or running: the frame runs on the main session with every thread (its
    record names no session), as with parallel = 1, so a sustainable rate keeps its latency."""
    with loop_on_a_ring(with_parallel(demo_config, 2), tmp_path / "alone.jsonl", slots=16) as rig:
        rig.loop.warm_up(10)
        for part, (x, y) in enumerate(POSITIONS[:3], start=1):
            rig.publish(part, pixels=ball_frame(x, y))
            rig.consumer.wait(1.0)
            rig.loop.step()
        recs = decide_all(rig, 3)
    assert [r["part_id"] for r in recs] == [1, 2, 3]
    assert all(r["basis"] == "model" and "session" not in r for r in recs)


def test_frames_that_cannot_make_their_deadline_are_not_started(tmp_path: Path, demo_config: Config) -> None:
    """Frames whose deadline the expected run time no longer fits get the fail-safe verdict
    (deadline_unreachable) at once, without taking a session: the first of two waiting against the
    sessions' expected time, the one then alone against the main session's."""
    with loop_on_a_ring(with_parallel(demo_config, 2), tmp_path / "late.jsonl", slots=16) as rig:
        loop = rig.loop
        loop.warm_up(10)
        budget_ms = demo_config.deadline.budget_ms
        for part in (1, 2):
            rig.publish(part, acquired_ns=time.monotonic_ns() - int((budget_ms - 1) * MS))  # 1 ms left
        loop.expected_ns = 20 * MS
        loop.path_time.expire = lambda now_ns: False  # type: ignore[method-assign]  # keep the 20 ms
        loop.session_time = PathTime(20 * MS)
        recs = decide_all(rig, 2)
        assert loop.parallel is not None and loop.parallel.busy == 0
    assert [r["basis"] for r in recs] == ["deadline_unreachable"] * 2
    assert all("session" not in r for r in recs)


def watched_runs(monkeypatch: pytest.MonkeyPatch, hold: dict[int, threading.Event]) -> threading.Semaphore:
    """Each session's run wrapped: session i waits for ``hold[i]`` before running while the test
    has put one there (after the warm-up, say); the returned semaphore is released as each run
    ends (a test can wait for runs to end without stepping the loop)."""
    ended = threading.Semaphore(0)
    real = OnnxRuntimeEngine.frame_runs

    def watched(self: OnnxRuntimeEngine) -> list[FrameRun]:
        def wrap(i: int, run: Any) -> Any:
            def go() -> object:
                if i in hold:
                    hold[i].wait()
                try:
                    return run()
                finally:
                    ended.release()

            return go

        return [FrameRun(r.input, r.output, wrap(i, r.run)) for i, r in enumerate(real(self))]

    monkeypatch.setattr(OnnxRuntimeEngine, "frame_runs", watched)
    return ended


def test_frames_whose_runs_ended_are_concluded_before_a_frame_alone_is_decided(
    tmp_path: Path, demo_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two frames end their runs on the sessions; a third then arrives alone and is decided on the
    main session (made to take 40 ms). The two ended frames get their verdicts (by the model, in
    time) before that run starts, not after it: records in order 1, 2, 3, and part 3's run starts
    after parts 1 and 2 are done."""
    ended = watched_runs(monkeypatch, {})
    with loop_on_a_ring(with_parallel(demo_config, 2), tmp_path / "order.jsonl", slots=16) as rig:
        loop = rig.loop
        loop.warm_up(10)
        real_infer = loop.engine.infer

        def slow_main_session() -> Any:
            time.sleep(0.040)
            return real_infer()

        monkeypatch.setattr(loop.engine, "infer", slow_main_session)
        monkeypatch.setattr(loop, "budget_ns", 10_000 * MS)  # the claim is about order, not time
        rig.publish(1, pixels=ball_frame(*POSITIONS[0]))
        rig.publish(2, pixels=ball_frame(*POSITIONS[1]))
        rig.consumer.wait(1.0)
        loop.step()
        assert loop.parallel is not None and loop.parallel.busy == 2
        assert ended.acquire(timeout=5) and ended.acquire(timeout=5)  # both runs over, not yet collected
        rig.publish(3, pixels=ball_frame(*POSITIONS[2]))
        recs = decide_all(rig, 3)
    assert [r["part_id"] for r in recs] == [1, 2, 3]
    assert [r.get("session") is not None for r in recs] == [True, True, False]
    assert all(r["basis"] == "model" for r in recs)
    part3_started = recs[2]["t_done_ns"] - recs[2]["total_ms"] * MS + recs[2]["queued_ms"] * MS
    assert max(r["t_done_ns"] for r in recs[:2]) <= part3_started + MS  # 1 ms: the records' rounding


def test_a_frame_failed_safe_at_claim_keeps_its_in_flight_entry_until_its_slot_is_free(
    tmp_path: Path, demo_config: Config
) -> None:
    """A claimed frame that cannot make its deadline gets the fail-safe verdict at once; its
    in-flight entry names it before its slot is freed, so a worker killed in between leaves it to
    its successor (never a freed slot and an empty entry: a frame with no verdict)."""
    with loop_on_a_ring(with_parallel(demo_config, 2), tmp_path / "entry.jsonl", slots=16) as rig:
        loop = rig.loop
        loop.warm_up(10)
        budget_ms = demo_config.deadline.budget_ms
        # A session run is expected to take half the budget (not the warm-up's fraction of a
        # millisecond, which a slow host may beat or miss): a frame with 5 ms left is out of reach
        # however late the loop claims it, and a fresh one is not.
        loop.session_time = PathTime(int(budget_ms / 2 * MS))
        rig.publish(1, acquired_ns=time.monotonic_ns() - int((budget_ms - 5) * MS))  # 5 ms left
        rig.publish(2)  # waiting too: part 1 goes to a session's start, which refuses it
        seen: list[int | None] = []
        real_release = rig.consumer.release

        def release(slot: int) -> None:
            entry = loop.inflight.current()
            seen.append(None if entry is None else entry.meta.part_id)
            real_release(slot)

        rig.consumer.release = release  # type: ignore[method-assign]
        recs = decide_all(rig, 2)
    assert [(r["part_id"], r["basis"]) for r in sorted(recs, key=lambda r: r["part_id"])] == [
        (1, "deadline_unreachable"), (2, "model")]  # fmt: skip
    assert seen[0] == 1, seen  # part 1's slot freed with its entry taken


def test_a_session_run_that_hangs_stops_the_heartbeat_and_drain_waits_for_it_beating(
    tmp_path: Path, demo_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session 1's run hangs: the loop goes on turning, but its heartbeat stays at that run's start
    (so the supervisor kills and replaces the worker, as for a blocked engine call); drain() calls
    its beat while it waits, and once the run ends, the frame gets its verdict and the heartbeat is
    now again."""
    release = threading.Event()
    hold: dict[int, threading.Event] = {}
    watched_runs(monkeypatch, hold)
    with loop_on_a_ring(with_parallel(demo_config, 2), tmp_path / "hang.jsonl", slots=16) as rig:
        loop = rig.loop
        loop.warm_up(10)
        monkeypatch.setattr(loop, "budget_ns", 10_000 * MS)  # the verdict after the hang still counts
        hold[1] = release
        try:
            rig.publish(1)
            rig.publish(2)
            rig.consumer.wait(1.0)
            loop.step()
            started = time.monotonic_ns()
            for _ in range(20):
                rig.consumer.wait(0.01)
                loop.step()
            now = time.monotonic_ns()
            assert loop.heartbeat_ns(now) < started  # the hung run's start, though the loop turned
            beats: list[int] = []
            drained = threading.Thread(target=loop.drain, args=(lambda: beats.append(loop.heartbeat_ns(now)),))
            drained.start()
            time.sleep(0.2)
            assert drained.is_alive() and beats and max(beats) < started
        finally:
            release.set()  # else closing the loop waits for the held run for ever
        drained.join(5)
        assert not drained.is_alive()
        assert loop.heartbeat_ns(time.monotonic_ns()) > now
        shutdown_logging()
        recs = rig.frame_records()
    assert sorted((r["part_id"], r["basis"]) for r in recs) == [(1, "model"), (2, "model")]


def test_warming_the_sessions_up_leaves_the_loop_no_wake_up(tmp_path: Path, demo_config: Config) -> None:
    """The sessions' timed warm-up runs do not post the ring's wake-up (a reload's successor warms
    up while its predecessor waits on the same ring): after it, nothing is announced."""
    with loop_on_a_ring(with_parallel(demo_config, 2), tmp_path / "warm.jsonl", slots=16) as rig:
        rig.loop.warm_up(50)
        assert not rig.consumer.poll()
        rig.publish(1)
        assert rig.consumer.poll()  # the wake-up itself still works


def test_with_stages_each_frame_a_session_decides_runs_the_stage_its_label_is_due_for(
    tmp_path: Path, demo_config: Config
) -> None:
    """[[stages]] with two sessions: a backlog of eight frames, a second stage (always "pass") due for
    the frames the demo model labels "reject". Each frame the model flags runs the stage as its
    session's run ends (its record lists the stage, and its session), and ends "pass"; the others
    never reach it; one record per frame; nothing is handed off as a reject."""
    pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the second-stage model")
    from linegate.config.schema import StageSection
    from tests.engine.onnx_models import constant_classifier

    clears = constant_classifier(tmp_path / "clears.onnx", (1, 1, 24, 32), (0.9, 0.1))
    stage = StageSection.model_validate({
        "when": ["reject"],
        "model": {"id": "always-pass", "path": str(clears), "preprocess": {"resize": [32, 24]},
                  "postprocess": {"classes": ["pass", "reject"], "scores": "probabilities",
                                  "reject_thresholds": {"reject": 0.5}}},
    })  # fmt: skip
    cfg = with_parallel(demo_config, 2).model_copy(update={"stages": [stage]})
    frames = [ball_frame(*POSITIONS[i]) for i in (0, 2, 1, 3, 4, 6, 5, 7)]
    with loop_on_a_ring(cfg, tmp_path / "stages.jsonl", slots=16) as rig:
        rig.loop.warm_up(10)
        for part, pixels in enumerate(frames, start=1):
            rig.publish(part, pixels=pixels)
        recs = sorted(decide_all(rig, len(frames)), key=lambda r: r["part_id"])
        assert rig.counters.get(Count.PLC_QUEUED) == 0
    assert [r["part_id"] for r in recs] == list(range(1, 9))
    assert {0, 1} <= {r.get("session") for r in recs}
    flagged = [expected_reject(f) for f in frames]
    assert any(flagged) and not all(flagged)
    for r, first_says_reject in zip(recs, flagged, strict=True):
        assert r["basis"] == "model" and r["verdict"] == "pass"
        if first_says_reject:
            (ran,) = r["stages"]
            assert ran["model"] == "always-pass" and ran["label"] == "pass" and r["label"] == "pass"
        else:
            assert "stages" not in r
    assert any("stages" in r and r.get("session") is not None for r in recs)  # a stage after a session's run
