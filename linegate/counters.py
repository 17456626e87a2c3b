"""Reconciliation counters shared by all worker processes (one writer per counter).

A flat array of int64 in shared memory: each counter is written by exactly one process and read
by the supervisor for the live summary, STATUS and the final reconciliation.
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


@dataclass(frozen=True)
class SharedCounters:
    """Typed access to the shared array; picklable to worker processes at start."""

    array: Any  # multiprocessing.sharedctypes.RawArray of c_int64

    @classmethod
    def create(cls, ctx: BaseContext) -> SharedCounters:
        return cls(ctx.RawArray("q", SIZE + histogram.BINS))

    def add_latency(self, ns: int) -> None:
        """Count one frame's acquisition-to-verdict latency in the run-long histogram (infer worker)."""
        self.array[SIZE + histogram.bin_of(ns)] += 1

    def latency_percentiles(self, qs: Sequence[float]) -> list[float]:
        """Percentiles (ns) over every frame of the run so far; NaN before the first."""
        return histogram.percentiles(self.array[SIZE : SIZE + histogram.BINS], qs)

    def add(self, name: Count, n: int = 1) -> None:
        self.array[name] += n

    def set(self, name: Count, value: int) -> None:
        self.array[name] = value

    def get(self, name: Count) -> int:
        return int(self.array[name])

    def snapshot(self) -> Snapshot:
        return Snapshot(tuple(int(v) for v in self.array[:SIZE]))

    def publish_log_drops(self, role: Role, queue_full: int) -> None:
        """Record a process's records dropped at a full pipe (each role's process owns this one; the
        supervisor's log collector owns ``LOG_QUEUED_<role>``, the records it received, and
        ``LOG_WRITE_FAILED_<role>``)."""
        self.array[ROLES[role].log.queue_full] = queue_full


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


__all__ = ["SIZE", "Count", "SharedCounters", "Snapshot", "first_part_id", "reconcile"]
