"""How a run ended, and the one-line progress the demo prints each second."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunSummary:
    """How a run ended, with its final counters and any broken invariant."""

    counters: dict[str, int]
    problems: list[str]
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    elapsed_s: float = 0.0
    stop_reason: str = ""
    removed_stale_ring: bool = False

    @property
    def exit_code(self) -> int:
        if self.failures:
            return max(code for _, code, _ in self.failures)
        return 1 if self.problems else 0


def live_line(snapshot: dict[str, int], elapsed_s: float, previous: dict[str, int] | None, dt_s: float) -> str:
    """The one-line summary printed each second."""
    done = snapshot["decided"] + snapshot["dropped"]
    fps = (done - (previous["decided"] + previous["dropped"] if previous else 0)) / dt_s if dt_s > 0 else 0.0
    return (
        f"[{elapsed_s:6.1f}s] fps {fps:6.1f} | latency p50 {snapshot['latency_p50_us'] / 1000:6.2f} ms "
        f"p99 {snapshot['latency_p99_us'] / 1000:6.2f} ms | frames {done} | rejects {snapshot['rejected']} "
        f"(delivered {snapshot['plc_delivered']}) | deadline misses "
        f"{snapshot['deadline_missed'] + snapshot['deadline_unreachable']} | drops {snapshot['dropped']} "
        f"| lost {snapshot['camera_lost']}"
    )
