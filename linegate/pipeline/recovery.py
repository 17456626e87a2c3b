"""What a dead worker leaves behind, and what no worker is left to handle at the very end."""

from __future__ import annotations

import json
from typing import Any

from linegate.counters import Count, first_part_id
from linegate.pipeline.inflight import InFlight, Outcome, Stage
from linegate.pipeline.workers import LaneShared, Shared, Worker
from linegate.plc.pending import RowState, unpack_result
from linegate.plc.reject_pipe import REJECT, RejectInbox
from linegate.ring import FrameMeta
from linegate.roles import Role

LAST_WORDS_TIMEOUT_S = 0.5
"""How long the supervisor waits for the collector to read a dead inference worker's pipe to its end."""


def recover_after(w: Worker, shared: Shared, log: Any, fail_safe: str) -> None:
    """Free a ring lock it held; for acquisition, settle its part-id count and journal the frames
    it left half-written (inference gives them the fail-safe verdict). Inference and PLC leftovers
    (in-flight frame, claimed slots, pending rejects) are taken over by their successor, once
    what the dead loop's log shows it finished is marked so (:func:`found_record`)."""
    if w.role is Role.INFER:
        shared.counters.set(Count.READY, 0)
        for each in shared.lanes:  # it takes from every camera's ring
            if each.ring.recover_lock():
                log.warning("ring_lock_recovered", worker=w.name, **_camera(shared, each))
        if w.log_end is not None:
            names = [each.lane.name for each in shared.lanes] if shared.several else None
            found = found_record(shared.inflight, w.log_end.last_words(LAST_WORDS_TIMEOUT_S), names)
            if found is not None:
                log.warning("frame_record_found", worker=w.name, part_id=found.part_id, seq=found.seq,
                            action="its successor counts it without writing it again")  # fmt: skip
        return
    if w.role is not Role.ACQUIRE:
        return
    lane = shared.lanes[w.lane]
    if lane.ring.recover_lock():
        log.warning("ring_lock_recovered", worker=w.name, **_camera(shared, lane))
    _reconcile_acquired(w, lane, log)
    lost = lane.ring.journal_unpublished()
    if lost:
        lane.counters.add(Count.PRODUCER_LOST, len(lost))
        log.warning("frames_in_flight_recovered", worker=w.name, part_ids=[m.part_id for m in lost], verdict=fail_safe,
                    **_camera(shared, lane))  # fmt: skip


def found_record(inflight: InFlight, last_line: bytes, cameras: list[str] | None) -> FrameMeta | None:
    """The in-flight frame, marked recorded, when a killed loop had written its record but not yet
    the stage saying so: the record is the last line it wrote (nothing is logged between the two).
    Without this its successor wrote the record a second time. *cameras*: the names records carry
    with several cameras (None: one camera, no name). None when there was nothing to mark."""
    left = inflight.current()
    if left is None or left.stage is not Stage.HANDED or not last_line:
        return None
    try:
        record = json.loads(last_line)
    except ValueError:
        return None
    meta = left.meta
    camera = cameras[meta.camera] if cameras is not None else None
    if not isinstance(record, dict) or (record.get("event"), record.get("seq"), record.get("part_id"),
                                        record.get("camera")) != ("frame", meta.seq, meta.part_id, camera):  # fmt: skip
        return None
    inflight.recorded(Outcome.OK)
    return meta


def _camera(shared: Shared, lane: LaneShared) -> dict[str, str]:
    """``{"camera": name}`` for a record, with several cameras."""
    return {"camera": lane.lane.name} if shared.several else {}


def _reconcile_acquired(w: Worker, lane: LaneShared, log: Any) -> None:
    """Part ids run first, first + 1, ... and ACQUIRED counts them, right after each frame enters
    the ring. A frame that entered it just before the worker died is counted here; frames counted
    but still waiting in the dead worker for a busy ring lock are reported by part id."""
    counters = lane.counters
    first = first_part_id(counters)
    acquired, last = counters.get(Count.ACQUIRED), max(0, lane.ring.last_part_id - first + 1)
    if last > acquired:
        counters.set(Count.ACQUIRED, last)
    elif acquired > last:
        lost = [first + n for n in range(last, acquired)]
        counters.add(Count.ACQ_LOST, len(lost))
        log.error("frames_lost_in_flight", worker=w.name, part_ids=lost, reason="died while the ring lock was busy",
                  **({"camera": w.camera} if w.camera else {}))  # fmt: skip


def final_sweep(shared: Shared, log: Any, fail_safe: str) -> None:
    """After every worker has exited: each frame still in a ring and each reject still held or
    queued gets a record with its part id (and camera, with several)."""
    for lane in shared.lanes:
        _sweep_lane(lane, log.bind(**_camera(shared, lane)), fail_safe)


def _sweep_lane(lane: LaneShared, log: Any, fail_safe: str) -> None:
    counters = lane.counters
    for meta in lane.ring.unresolved():
        counters.add(Count.UNRESOLVED)
        log.error(
            "frame_unresolved",
            part_id=meta.part_id,
            seq=meta.seq,
            frame_id=meta.frame_id,
            verdict=fail_safe,
            reason="no inference worker left to decide it",
        )
    for held in lane.table.held():
        if held.state is RowState.ON:  # delivered and logged; only its OFF edge was not confirmed
            log.error("reject_off_unconfirmed", part_id=held.part_id, seq=held.seq, action="check the reject output")
            continue
        why = "plc_worker_lost" if held.state is RowState.PENDING else "delivery_unknown"
        _undelivered(counters, log, held.part_id, held.seq, why, unpack_result(held.result)[0])
    for reject in RejectInbox(lane.reject_reader).take(0):
        if reject.verdict == REJECT:
            counters.add(Count.PLC_RECEIVED)
        _undelivered(counters, log, reject.part_id, reject.seq, "plc_worker_lost", reject.verdict)


def _undelivered(counters: Any, log: Any, part_id: int, seq: int, reason: str, verdict: int) -> None:
    why = "no PLC worker was left to deliver it"
    if verdict != REJECT:  # a pass result (handshake.results = "all")
        counters.add(Count.PLC_PASS_UNDELIVERED)
        log.warning("result_undelivered", part_id=part_id, seq=seq, verdict="pass", reason=reason, error=why)
        return
    counters.add(Count.PLC_UNDELIVERED)
    log.error("reject_undelivered", part_id=part_id, seq=seq, reason=reason, error=why)
