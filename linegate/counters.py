"""Reconciliation counters shared by all worker processes (one writer per counter).

A flat array of int64 in shared memory: each counter is written by exactly one process and read
by the supervisor for the live summary, STATUS, the final reconciliation and the metrics. Layout
(each histogram is :data:`linegate.timing.histogram.BINS` log-spaced bins):

- ``[0, SIZE)``: the counters, indexed by :class:`Count`;
- ``[LATENCY, +BINS)``: acquisition-to-verdict latency of every frame the loop decided (infer);
- ``[STAGE_LATENCY + i * BINS, +BINS)``: stage :data:`STAGES` ``[i]`` of every frame the model
  decided (infer);
- ``[PLC_WRITE_LATENCY, +BINS)``: round trip of each PLC write delivering a result (PLC worker);
- ``[CLASS_VERDICTS, +MAX_CLASSES + 1)``: frames the model decided, by the label's position in
  ``model.postprocess.classes``; the last cell (:data:`CLASS_OTHER`) counts any other label (infer).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

from linegate.counter_names import Count
from linegate.roles import LOG_ROLES, ROLES, Role
from linegate.timing import histogram

SIZE = max(Count) + 1

STAGES = ("write", "queued", "preprocess", "infer", "postprocess", "handoff")
"""The stages of a frame the model decided, as its ``frame`` record times them (``write_ms``, ...)."""
MAX_CLASSES = 16
"""Classes counted one by one; a label at a later position (or none of the classes) counts in :data:`CLASS_OTHER`."""
CLASS_OTHER = MAX_CLASSES

LATENCY = SIZE
STAGE_LATENCY = LATENCY + histogram.BINS
PLC_WRITE_LATENCY = STAGE_LATENCY + len(STAGES) * histogram.BINS
CLASS_VERDICTS = PLC_WRITE_LATENCY + histogram.BINS
TOTAL = CLASS_VERDICTS + MAX_CLASSES + 1
"""Cells in the shared array."""


@dataclass(frozen=True)
class SharedCounters:
    """Typed access to the shared array; picklable to worker processes at start."""

    array: Any  # multiprocessing.sharedctypes.RawArray of c_int64

    @classmethod
    def create(cls, ctx: BaseContext) -> SharedCounters:
        return cls(ctx.RawArray("q", TOTAL))

    def add_latency(self, ns: int) -> None:
        """Count one frame's acquisition-to-verdict latency in the run-long histogram (infer worker)."""
        self.array[LATENCY + histogram.bin_of(ns)] += 1

    def latency_percentiles(self, qs: Sequence[float]) -> list[float]:
        """Percentiles (ns) over every frame of the run so far; NaN before the first."""
        return histogram.percentiles(self.latency_bins(), qs)

    def add_stage_latencies(
        self, write_ns: int, queued_ns: int, preprocess_ns: int, infer_ns: int, post_ns: int, handoff_ns: int
    ) -> None:
        """Count one model-decided frame's stage times, in :data:`STAGES` order (infer worker)."""
        a, bin_of, b = self.array, histogram.bin_of, histogram.BINS
        a[STAGE_LATENCY + bin_of(write_ns)] += 1
        a[STAGE_LATENCY + b + bin_of(queued_ns)] += 1
        a[STAGE_LATENCY + 2 * b + bin_of(preprocess_ns)] += 1
        a[STAGE_LATENCY + 3 * b + bin_of(infer_ns)] += 1
        a[STAGE_LATENCY + 4 * b + bin_of(post_ns)] += 1
        a[STAGE_LATENCY + 5 * b + bin_of(handoff_ns)] += 1

    def add_class_verdict(self, index: int) -> None:
        """Count one model-decided frame under its label's position in the classes (infer worker)."""
        self.array[CLASS_VERDICTS + (index if 0 <= index < MAX_CLASSES else CLASS_OTHER)] += 1

    def add_plc_write_latency(self, ns: int) -> None:
        """Count one confirmed PLC write's round trip, request sent to reply (PLC worker)."""
        self.array[PLC_WRITE_LATENCY + histogram.bin_of(ns)] += 1

    def latency_bins(self) -> list[int]:
        """The frame latency histogram's bins now."""
        return [int(v) for v in self.array[LATENCY : LATENCY + histogram.BINS]]

    def stage_bins(self) -> dict[str, list[int]]:
        """Each stage's histogram bins now, by stage name (:data:`STAGES`)."""
        b = histogram.BINS
        return {
            stage: [int(v) for v in self.array[STAGE_LATENCY + i * b : STAGE_LATENCY + (i + 1) * b]]
            for i, stage in enumerate(STAGES)
        }

    def plc_write_bins(self) -> list[int]:
        """The PLC write latency histogram's bins now."""
        return [int(v) for v in self.array[PLC_WRITE_LATENCY : PLC_WRITE_LATENCY + histogram.BINS]]

    def class_verdicts(self) -> list[int]:
        """Model-decided frames by class position: :data:`MAX_CLASSES` cells, then :data:`CLASS_OTHER`."""
        return [int(v) for v in self.array[CLASS_VERDICTS:TOTAL]]

    def add(self, name: Count, n: int = 1) -> None:
        self.array[name] += n

    def set(self, name: Count, value: int) -> None:
        self.array[name] = value

    def get(self, name: Count) -> int:
        return int(self.array[name])

    def snapshot(self) -> Snapshot:
        return Snapshot(tuple(int(v) for v in self.array[:SIZE]))

    def add_log_drops(self, role: Role, dropped: int) -> None:
        """Count records a *role* process dropped at a full pipe since its last report (added, so a
        restarted worker's drops add to its predecessor's; the supervisor's log collector owns
        ``LOG_QUEUED_<role>``, the records it received, and ``LOG_WRITE_FAILED_<role>``)."""
        if dropped:  # a read-modify-write: skipped when there is nothing to add (reload overlaps)
            self.array[ROLES[role].log.queue_full] += dropped


class Snapshot(Mapping[Count, int]):
    """Every counter at one moment, read by name: ``s[Count.PLC_DELIVERED]`` (mypy sees a rename).

    Plus the log totals over every process; :meth:`as_record` is the flat form the ``run_summary``
    record carries (``{"plc_delivered": ..., "log_queued": ...}``).
    """

    __slots__ = ("_values",)

    def __init__(self, values: Sequence[int]) -> None:
        self._values = tuple(values)  # indexed by Count value

    @classmethod
    def of(cls, counts: Mapping[Count, int]) -> Snapshot:
        """A snapshot with these counters set and every other one 0 (tests, tools)."""
        values = [0] * SIZE
        for name, value in counts.items():
            values[name] = value
        return cls(values)

    @classmethod
    def total(cls, snapshots: Sequence[Snapshot]) -> Snapshot:
        """Several cameras' snapshots as one: each counter summed (a gauge then says how many
        cameras have it set, e.g. ``PLC_CONNECTED``; a heartbeat sum means nothing)."""
        return cls([sum(values) for values in zip(*(s._values for s in snapshots), strict=True)])

    def __getitem__(self, name: Count) -> int:
        return self._values[name]

    def __iter__(self) -> Iterator[Count]:
        return iter(Count)

    def __len__(self) -> int:
        return len(Count)

    @property
    def log_queued(self) -> int:
        """Records the collector received from every process."""
        return sum(self._values[ROLES[role].log.queued] for role in LOG_ROLES)

    @property
    def log_queue_full(self) -> int:
        """Records every process dropped at a full pipe."""
        return sum(self._values[ROLES[role].log.queue_full] for role in LOG_ROLES)

    @property
    def log_write_failed(self) -> int:
        """Records received but not written out (the output failed)."""
        return sum(self._values[ROLES[role].log.write_failed] for role in LOG_ROLES)

    def as_record(self) -> dict[str, int]:
        """Every counter by its lower-case name, then the log totals (the ``run_summary`` record's keys)."""
        out = {c.name.lower(): self._values[c] for c in Count}
        out["log_queued"] = self.log_queued
        out["log_queue_full"] = self.log_queue_full
        out["log_write_failed"] = self.log_write_failed
        return out


def first_part_id(counters: SharedCounters) -> int:
    """The part id of the run's first frame: 1, or the PLC's (plc.part_ids = "plc") once read.
    Part ids are this plus the frame's ordinal: ``ACQUIRED`` counts them."""
    return counters.get(Count.PART_ID_BASE) or 1


def reconcile(s: Snapshot) -> list[str]:
    """Broken invariants in a final snapshot; empty when every frame and reject is accounted for.

    acquired = decided + dropped (+ frames reported by the acquisition side itself), decided +
    dropped = logged (one record per frame), and every reject (and pass result) handed to the PLC
    side was delivered or reported undelivered. Frames left unresolved at the very end are reported one by one but
    still break the invariant: they never got a verdict the PLC saw.
    """
    c = Count
    problems = []
    frames = s[c.DECIDED] + s[c.DROPPED]
    if s[c.ACQUIRED] != frames + s[c.RING_LOCK_TIMEOUTS] + s[c.ACQ_LOST]:
        problems.append(
            f"acquired {s[c.ACQUIRED]} != decided {s[c.DECIDED]} + dropped {s[c.DROPPED]}"
            + (f" + lock-timeouts {s[c.RING_LOCK_TIMEOUTS]}" if s[c.RING_LOCK_TIMEOUTS] else "")
            + (f" + lost in flight {s[c.ACQ_LOST]}" if s[c.ACQ_LOST] else "")
            + (f" ({s[c.UNRESOLVED]} left in the ring unresolved)" if s[c.UNRESOLVED] else "")
        )
    if s[c.LOGGED] + s[c.LOG_DROPPED] != frames:
        problems.append(f"frame records {s[c.LOGGED]} (+{s[c.LOG_DROPPED]} dropped) != frames {frames}")
    if s[c.REJECTED] != s[c.PLC_QUEUED] + s[c.PLC_QUEUE_FULL]:
        problems.append(f"rejects {s[c.REJECTED]} != queued {s[c.PLC_QUEUED]} + queue-full {s[c.PLC_QUEUE_FULL]}")
    if s[c.PLC_RECEIVED] != s[c.PLC_QUEUED] or s[c.PLC_QUEUED] != s[c.PLC_DELIVERED] + s[c.PLC_UNDELIVERED]:
        problems.append(
            f"rejects queued {s[c.PLC_QUEUED]} != received {s[c.PLC_RECEIVED]} or delivered "
            f"{s[c.PLC_DELIVERED]} + undelivered {s[c.PLC_UNDELIVERED]}"
        )
    if s[c.PLC_PASS_QUEUED] != s[c.PLC_PASS_DELIVERED] + s[c.PLC_PASS_UNDELIVERED]:
        problems.append(
            f"pass results queued {s[c.PLC_PASS_QUEUED]} != delivered {s[c.PLC_PASS_DELIVERED]} + undelivered "
            f"{s[c.PLC_PASS_UNDELIVERED]}"
        )
    return problems


__all__ = [
    "CLASS_OTHER",
    "MAX_CLASSES",
    "SIZE",
    "STAGES",
    "Count",
    "SharedCounters",
    "Snapshot",
    "first_part_id",
    "reconcile",
]
