"""What the supervisor settles after an inference worker dies, before its successor starts: a frame
whose record the dead loop had written, but not yet the stage saying so, is marked recorded, so
the successor does not write a second record for it."""

from __future__ import annotations

import json
import time

from linegate.counters import Count
from linegate.pipeline.inflight import InFlight, Outcome, Stage
from linegate.pipeline.recovery import found_record
from linegate.ring import FrameMeta

META = FrameMeta(41, 42, 42, 1, 2)


def handed(meta: FrameMeta = META) -> InFlight:
    """An entry the dead loop left after the hand-off, before its record's stage store."""
    inflight = InFlight.local()
    inflight.take(meta, Count.DECIDED, time.monotonic_ns())
    inflight.settle(True, 0)
    inflight.handed(Outcome.OK)
    return inflight


def line(**fields: object) -> bytes:
    return json.dumps({"event": "frame", "seq": 41, "part_id": 42, "verdict": "reject", **fields}).encode()


def test_the_frames_record_as_last_line_marks_it_recorded() -> None:
    inflight = handed()
    assert found_record(inflight, line(), None) == META
    left = inflight.current()
    assert left is not None and left.stage is Stage.RECORDED and left.logged is Outcome.OK


def test_another_frames_record_or_another_event_changes_nothing() -> None:
    for last in (line(seq=40, part_id=41), json.dumps({"event": "reject_delivered"}).encode(), b"", b"{cut sh"):
        inflight = handed()
        assert found_record(inflight, last, None) is None
        left = inflight.current()
        assert left is not None and left.stage is Stage.HANDED


def test_with_several_cameras_the_camera_must_match_too() -> None:
    """Cameras in step share seq and part id: only the named camera's record counts."""
    meta = FrameMeta(41, 42, 42, 1, 2, camera=1)
    assert found_record(handed(meta), line(camera="cam0"), ["cam0", "cam1"]) is None
    assert found_record(handed(meta), line(camera="cam1"), ["cam0", "cam1"]) == meta


def test_an_entry_not_handed_off_yet_or_idle_is_left_to_the_successor() -> None:
    """TAKEN: no record can exist yet (the hand-off comes first); none: nothing in flight."""
    taken = InFlight.local()
    taken.take(META, Count.DECIDED)
    assert found_record(taken, line(), None) is None
    assert found_record(InFlight.local(), line(), None) is None
