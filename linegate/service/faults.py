"""How long each fault lasted over a run (pure): what the final summary tells about a run's faults.

A fault is named by its reason (``fault_reasons``). Each update gives the reasons present now; the
tracker adds up each reason's time and episodes, and knows which are still present at the end.
"""

from __future__ import annotations

from collections.abc import Iterable


def _kind(reason: str) -> str:
    """The reason without its changing numbers ("PLC unreachable for 3 s" -> "PLC unreachable")."""
    return reason.split(" for ", 1)[0]


class FaultTimes:
    """Time and episodes per fault kind; ``update`` at every supervision turn."""

    def __init__(self) -> None:
        self._since: dict[str, int] = {}
        self._total_ns: dict[str, int] = {}
        self._episodes: dict[str, int] = {}
        self._last: dict[str, str] = {}

    def update(self, reasons: Iterable[str], now_ns: int) -> None:
        present = {}
        for reason in reasons:
            present[_kind(reason)] = reason
        for kind in list(self._since):
            if kind not in present:
                self._total_ns[kind] = self._total_ns.get(kind, 0) + now_ns - self._since.pop(kind)
        for kind, reason in present.items():
            if kind not in self._since:
                self._since[kind] = now_ns
                self._episodes[kind] = self._episodes.get(kind, 0) + 1
            self._last[kind] = reason

    @property
    def active(self) -> list[str]:
        return list(self._since)

    def report(self, now_ns: int) -> list[str]:
        """One line per fault kind seen: total time, episodes, and whether it was still there."""
        out = []
        for kind, episodes in self._episodes.items():
            total = self._total_ns.get(kind, 0) + (now_ns - self._since[kind] if kind in self._since else 0)
            still = ", still at the end" if kind in self._since else ""
            times = "1 time" if episodes == 1 else f"{episodes} times"
            out.append(f"{kind}: {total / 1e9:.1f} s in all, {times}{still}")
        return out
