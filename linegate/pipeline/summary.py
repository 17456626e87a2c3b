"""How a run ended, and the one-line progress the demo prints each second."""

from __future__ import annotations

from dataclasses import dataclass, field

from linegate.counters import Count, Snapshot


@dataclass
class RunSummary:
    """How a run ended, with its final counters and any broken invariant."""

    counters: Snapshot
    problems: list[str]
    """Broken invariants (a frame or reject not accounted for): a defect, always exit 1."""
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    elapsed_s: float = 0.0
    stop_reason: str = ""
    removed_stale_ring: bool = False
    faults: list[str] = field(default_factory=list)
    """Each fault kind of the run: time, episodes, and whether it was still there at the end."""
    lasting: list[str] = field(default_factory=list)
    """What was still wrong at the end: faults still present, rejects that never reached the PLC."""
    bounded: bool = False
    """Ended by --max-frames (a test or commissioning run), not by a stop request."""
    forced: str = ""
    """Why workers were killed instead of stopped in order, if they were."""
    latency_ms: tuple[float, float] = (float("nan"), float("nan"))
    """p50, p99 from acquisition to verdict over every frame of the run."""
    cameras: list[tuple[str, Snapshot]] = field(default_factory=list)
    """With several cameras ([[cameras]]): each one's name and final counters (``counters`` sums them)."""

    @property
    def exit_code(self) -> int:
        """0 all well; 1 an invariant broke, or a bounded run ended with a lasting fault; a
        worker's own code (78: configuration, no restart helps) when one failed."""
        if self.failures:
            return max(code for _, code, _ in self.failures)
        if self.problems or (self.bounded and self.lasting):
            return 1
        return 0


def live_line(snapshot: Snapshot, elapsed_s: float, previous: Snapshot | None, dt_s: float) -> str:
    """The one-line summary printed each second."""
    s, c = snapshot, Count
    done = s[c.DECIDED] + s[c.DROPPED]
    fps = (done - (previous[c.DECIDED] + previous[c.DROPPED] if previous else 0)) / dt_s if dt_s > 0 else 0.0
    return (
        f"[{elapsed_s:6.1f}s] fps {fps:6.1f} | latency p50 {s[c.LATENCY_P50_US] / 1000:6.2f} ms "
        f"p99 {s[c.LATENCY_P99_US] / 1000:6.2f} ms | frames {done} | rejects {s[c.REJECTED]} "
        f"(delivered {s[c.PLC_DELIVERED]}) | deadline misses "
        f"{s[c.DEADLINE_MISSED] + s[c.DEADLINE_UNREACHABLE]} | drops {s[c.DROPPED]} "
        f"| lost {s[c.CAMERA_LOST]}"
    )


def camera_counts(s: Snapshot) -> dict[str, int]:
    """One camera's figures for the ``run_summary`` record (several cameras)."""
    c = Count
    return {
        "acquired": s[c.ACQUIRED],
        "decided": s[c.DECIDED] + s[c.DROPPED],
        "rejected": s[c.REJECTED],
        "plc_delivered": s[c.PLC_DELIVERED],
        "plc_undelivered": s[c.PLC_UNDELIVERED] + s[c.PLC_QUEUE_FULL],
        "camera_down": s[c.CAMERA_DOWN],
    }
