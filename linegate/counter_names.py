"""Counter names: one slot each in the shared counter array (:mod:`linegate.counters`).

The bottom floor: imports nothing from linegate, so the role table (:mod:`linegate.roles`) and the
counters themselves can both name counters.
"""

from __future__ import annotations

from enum import IntEnum


class Count(IntEnum):
    """Counter names. The comment says which process writes it."""

    # acquisition
    ACQUIRED = 0
    CAMERA_TIMEOUTS = 1
    CAMERA_LOST = 2  # frame-id gaps: frames the camera numbered but never delivered
    CAMERA_ERRORS = 3
    RING_LOCK_TIMEOUTS = 4  # frames that never got the ring lock, reported by part id by acquisition itself
    ACQ_HEARTBEAT_NS = 5
    CAMERA_DOWN = 6  # 1 while the camera is lost and being reopened
    CAMERA_RECONNECTS = 7
    CAMERA_DOWNTIME_MS = 8
    CAMERA_MISSED_ESTIMATE = 9  # frames the camera would have sent while down (downtime x frame rate)
    RING_LOCK_WAITS = 47  # times the ring lock was busy beyond its timeout (those frames were deferred)
    ACQ_LOST = 48  # frames a killed acquisition worker had counted but not yet put in the ring (by part id)
    # inference
    DECIDED = 10  # frames that reached the model loop (any basis but dropped)
    DROPPED = 11  # frames the ring dropped, decided fail-safe without the model
    PASSED = 12
    REJECTED = 13
    FAIL_SAFE = 14
    DEADLINE_MISSED = 15
    DEADLINE_UNREACHABLE = 16
    ENGINE_ERRORS = 17
    LOGGED = 18
    LOG_DROPPED = 19
    JOURNAL_OVERFLOW = 20
    PLC_QUEUED = 21
    PLC_QUEUE_FULL = 22  # rejects undelivered because the PLC queue was full
    PLC_PASS_QUEUED = 79  # handshake.results = "all": pass verdicts handed to the PLC worker
    PLC_PASS_QUEUE_FULL = 80  # pass verdicts not handed over (PLC queue full; result_undelivered)
    INFER_HEARTBEAT_NS = 23
    LATENCY_P50_US = 24
    LATENCY_P99_US = 25
    ENGINE_P99_US = 26
    READY = 27
    INCOMPLETE_FRAMES = 28  # frames the camera delivered incomplete or mis-sized, decided fail-safe uninspected
    # plc
    PLC_DELIVERED = 30
    PLC_UNDELIVERED = 31
    PLC_RETRIES = 32
    PLC_RECONNECTS = 33
    PLC_LATE = 34
    PLC_CONNECTED = 35
    PLC_HEARTBEAT_NS = 36
    PLC_RECEIVED = 37
    PLC_FAULT = 38  # the fault state last written to the PLC's fault coil (1 = not inspecting)
    PLC_PENDING = 39
    PLC_READ_BACKS = 62  # writes whose reply did not come, resolved by reading back
    PLC_DELIVERY_UNKNOWN = 63  # rejects whose write could not be resolved in time (reported, part id named)
    PLC_ALIVE_STALE = 64  # 1 while the PLC's alive counter (handshake) has stopped changing
    PLC_LATE_ACKS = 65  # handshake: acknowledgements that came after the result was reported undelivered
    PLC_RESULT_WRITES = 66  # handshake: vision-block writes carrying a result (first writes and re-writes)
    PLC_RECIPE = 67  # handshake: the PLC's recipe word + 1 (0: not read yet)
    PLC_OFFLINE = 69  # handshake: 1 while the PLC's control word asks for offline (no results sent)
    PLC_ENCODER_SLOW_READS = 81  # encoder readings that place no part: request to reply took over tracking.max_read_ms
    PLC_OVERRUNS = 70  # handshake: rejects dropped because plc.handshake.buffer results already waited
    PART_ID_BASE = 73  # plc.part_ids = "plc": the first frame's part id, taken from the PLC (0: not known yet)
    PLC_PASS_DELIVERED = 77  # handshake.results = "all": pass results acknowledged by the PLC
    PLC_PASS_UNDELIVERED = 78  # pass results reported undelivered (result_undelivered; no part to pull)
    AWAITING_PART_ID = 76  # acquisition: 1 while the camera waits for the PLC's first part id (plc.part_ids = "plc")
    PLC_PART_ID_DRIFT = 74  # 1 while the PLC's plc_part_id and linegate's next part id differ by more than 1
    # supervisor
    RECIPE_UNKNOWN = 68  # 1 while the PLC names a recipe the configuration has no model for
    ACTIVE_RECIPE = 71  # the recipe whose model runs + 1 (0: none applied, the configured model)
    RECIPE_SWITCHING = 72  # 1 while a recipe change is being applied
    RECIPE_FAILED = 75  # 1 while the recipe the PLC named could not be applied (its workers failed to start)
    # supervisor
    WORKER_RESTARTS = 40
    WORKER_STALLS = 41
    RELOADS = 42
    RELOAD_FAILURES = 43
    PRODUCER_LOST = 44  # frames a dying acquisition worker left half-written, journaled fail-safe
    UNRESOLVED = 45  # frames still in the ring when linegate stopped for good (each logged by part id)
    INSPECTING = 46  # 1 while every worker runs and the camera delivers (the PLC's fault coil is off)
    # log pipes, one block per process role: records queued, dropped (pipe full), failed to write out
    LOG_QUEUED_ACQUIRE = 50
    LOG_QUEUE_FULL_ACQUIRE = 51
    LOG_WRITE_FAILED_ACQUIRE = 52
    LOG_QUEUED_INFER = 53
    LOG_QUEUE_FULL_INFER = 54
    LOG_WRITE_FAILED_INFER = 55
    LOG_QUEUED_PLC = 56
    LOG_QUEUE_FULL_PLC = 57
    LOG_WRITE_FAILED_PLC = 58
    LOG_QUEUED_SUPERVISOR = 59
    LOG_QUEUE_FULL_SUPERVISOR = 60
    LOG_WRITE_FAILED_SUPERVISOR = 61
