"""Frames the camera delivers incomplete or mis-sized: acquisition's ring writer -> real ring -> inference loop
(real ONNX Runtime engine) give each one the fail-safe verdict with basis incomplete_frame, one record naming
the defect, a PLC hand-off and a count, and the acquisition side never raises on them."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linegate.camera.defects import UNKNOWN_BYTES, DefectKind, FrameDefect, check_payload
from linegate.camera.genicam import CameraFrame
from linegate.config import Config
from linegate.counters import Count, SharedCounters
from linegate.logs import get_logger, shutdown_logging
from linegate.pipeline.acquire import FrameWriter
from linegate.pipeline.infer import InferenceLoop
from linegate.pipeline.inflight import InFlight, Outcome
from linegate.plc.reject_pipe import RejectInbox
from linegate.ring import FrameMeta, RingConsumer
from linegate.timing.deadline import Basis
from tests.pipeline.harness import records
from tests.pipeline.loop_rig import loop_on_a_ring

pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test model")

CTX = mp.get_context("spawn")
SHAPE = (480, 640)
FRAME_BYTES = 480 * 640


@dataclass
class Line:
    """A real ring between the acquisition side's FrameWriter and an inference loop, in this process."""

    writer: FrameWriter
    loop: InferenceLoop
    consumer: RingConsumer
    counters: SharedCounters
    inbox: RejectInbox
    log_path: Path

    def decide_all(self, frames: int) -> None:
        """Step the loop until *frames* frames are decided and recorded (or 10 s pass)."""
        end = time.monotonic() + 10
        while self.counters.get(Count.LOGGED) < frames and time.monotonic() < end:
            self.consumer.wait(0.1)
            self.loop.step()

    def frame_records(self) -> list[dict[str, Any]]:
        """The frame records, once the log writer thread has written everything out."""
        shutdown_logging()
        return [r for r in records(self.log_path) if r["event"] == "frame"]


@pytest.fixture
def line_for(tmp_path: Path, demo_config: Config) -> Iterator[Any]:
    def make(slots: int = 8, inflight: InFlight | None = None) -> Line:
        # A generous budget: these frames are about defects, not deadlines.
        cfg = demo_config.model_copy(
            update={"deadline": demo_config.deadline.model_copy(update={"budget_ms": 10_000.0})}
        )
        rig = stack.enter_context(loop_on_a_ring(cfg, tmp_path / "frames.jsonl", slots, inflight))
        rig.loop.warm_up(3)
        return Line(FrameWriter(rig.producer, rig.counters, get_logger()), rig.loop, rig.consumer, rig.counters,
                    RejectInbox(rig.reader), rig.log_path)  # fmt: skip

    with ExitStack() as stack:
        yield make


def whole(frame_id: int) -> CameraFrame:
    """A whole Mono8 frame as the camera module hands it: white field, the ball far from the reject zone."""
    data = np.full(FRAME_BYTES, 255, dtype=np.uint8)
    pixels, defect = check_payload(data, SHAPE)
    assert pixels is not None and defect is None
    pixels[10:30, 10:30] = 0
    return CameraFrame(pixels, frame_id, time.monotonic_ns(), None)


def short(frame_id: int, nbytes: int = 1234) -> CameraFrame:
    """A frame whose payload is *nbytes* long, decided by the camera module's own check on a real buffer."""
    pixels, defect = check_payload(np.zeros(nbytes, dtype=np.uint8), SHAPE)
    return CameraFrame(pixels, frame_id, time.monotonic_ns(), None, defect)


def incomplete_unread() -> CameraFrame:
    """A buffer the producer flagged incomplete and Harvesters discarded: no pixels, no readable id."""
    return CameraFrame(None, None, time.monotonic_ns(), None, FrameDefect(DefectKind.INCOMPLETE, UNKNOWN_BYTES,
                                                                           FRAME_BYTES))  # fmt: skip


def summary(line: Line) -> list[tuple[Any, ...]]:
    return [(r["part_id"], r["frame_id"], r["verdict"], r["basis"], r.get("defect")) for r in line.frame_records()]


def test_defective_frames_get_fail_safe_reject_record_handoff_and_count(line_for: Any) -> None:
    """Each defective frame keeps its part id and gets a fail-safe reject record naming the defect, hand-off, count."""
    line = line_for()
    for frame in (whole(1), short(2), incomplete_unread(), whole(4), short(5, 2 * FRAME_BYTES)):
        line.writer(frame)  # the acquisition side's per-frame callback: must not raise
    line.decide_all(5)
    assert summary(line) == [
        (1, 1, "pass", "model", None),
        (2, 2, "reject", "incomplete_frame", "payload 1234 bytes, expected 307200"),
        (3, 3, "reject", "incomplete_frame", "incomplete"),  # no readable id: it took the next one
        (4, 4, "pass", "model", None),
        (5, 5, "reject", "incomplete_frame", "payload 614400 bytes, expected 307200"),
    ]
    assert [r[0] for r in line.inbox.take(1.0)] == [2, 3, 5]
    s = line.counters.snapshot()
    assert (s[Count.ACQUIRED], s[Count.DECIDED], s[Count.DROPPED], s[Count.LOGGED]) == (5, 5, 0, 5)
    assert (s[Count.INCOMPLETE_FRAMES], s[Count.FAIL_SAFE], s[Count.REJECTED], s[Count.PASSED],
            s[Count.PLC_QUEUED]) == (3, 3, 3, 2, 3)  # fmt: skip
    assert s[Count.CAMERA_LOST] == 0


def test_defective_frame_dropped_by_a_full_ring_is_still_incomplete_frame(line_for: Any) -> None:
    """A defective frame the full ring journals is still decided incomplete_frame (counted dropped and incomplete)."""
    line = line_for(slots=2)
    for frame in (whole(1), whole(2), short(3), whole(4)):
        line.writer(frame)
    line.decide_all(4)
    by_part = {r[0]: r for r in summary(line)}
    assert by_part[3] == (3, 3, "reject", "incomplete_frame", "payload 1234 bytes, expected 307200")
    assert by_part[4][2:4] == ("reject", "dropped")
    assert sorted(by_part) == [1, 2, 3, 4]
    s = line.counters.snapshot()
    assert (s[Count.ACQUIRED], s[Count.DECIDED], s[Count.DROPPED], s[Count.INCOMPLETE_FRAMES],
            s[Count.LOGGED]) == (4, 2, 2, 1, 4)  # fmt: skip


@pytest.mark.parametrize("stage", ["TAKEN", "HANDED"])
def test_successor_of_a_killed_loop_keeps_the_defect(line_for: Any, stage: str) -> None:
    """A successor finishing a killed loop's defective frame records incomplete_frame and the defect, once."""
    inflight = InFlight.local()
    meta = FrameMeta(6, 7, 8, time.monotonic_ns(), time.monotonic_ns(), 0, int(DefectKind.PAYLOAD_SIZE), 1234)
    inflight.take(meta, Count.DECIDED)
    if stage == "HANDED":  # the predecessor had handed off its reject, nothing more
        inflight.settle(True, list(Basis).index(Basis.INCOMPLETE_FRAME))
        inflight.handed(Outcome.OK)
    line = line_for(inflight=inflight)
    line.loop.recover()
    assert summary(line) == [(8, 7, "reject", "incomplete_frame", "payload 1234 bytes, expected 307200")]
    assert [r[0] for r in line.inbox.take(0.2)] == ([8] if stage == "TAKEN" else [])
    s = line.counters.snapshot()
    assert (s[Count.DECIDED], s[Count.INCOMPLETE_FRAMES], s[Count.REJECTED], s[Count.PLC_QUEUED],
            s[Count.LOGGED]) == (1, 1, 1, 1, 1)  # fmt: skip
    assert inflight.current() is None
