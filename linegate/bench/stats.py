"""Latency distributions: p50/p99/p99.9/max of a list of milliseconds, and their table cells."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

QUANTILES = (50.0, 99.0, 99.9)
"""The percentiles every distribution reports (then the max)."""


@dataclass(frozen=True)
class Dist:
    """A distribution in ms: count, p50, p99, p99.9, max (None when empty)."""

    n: int
    p50: float | None
    p99: float | None
    p999: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float] | npt.NDArray[np.floating[Any]]) -> Dist:
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            return cls(0, None, None, None, None)
        p50, p99, p999 = (float(v) for v in np.percentile(arr, QUANTILES))
        return cls(int(arr.size), p50, p99, p999, float(arr.max()))

    def cells(self) -> list[str]:
        """Four table cells: p50, p99, p99.9, max ("-" when empty)."""
        return [fmt_ms(v) for v in (self.p50, self.p99, self.p999, self.max)]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fmt_ms(value: float | None) -> str:
    """A time in ms for a table: 3 decimals below 10 ms, 2 below 100, 1 above; "-" for none."""
    if value is None:
        return "-"
    if abs(value) < 10:
        return f"{value:.3f}"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.1f}"


def fmt_share(part: int, whole: int) -> str:
    """*part* of *whole* as a percentage with one decimal ("-" when *whole* is 0)."""
    return "-" if whole <= 0 else f"{100.0 * part / whole:.1f}%"
