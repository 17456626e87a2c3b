"""Latency percentiles over a sliding window (for the live summary) and over a whole run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


class LatencyWindow:
    """The last *capacity* samples in a preallocated array; ``percentiles`` reads it without copying."""

    def __init__(self, capacity: int = 4096) -> None:
        self._samples = np.zeros(capacity, dtype=np.int64)
        self._count = 0

    def add(self, ns: int) -> None:
        self._samples[self._count % self._samples.size] = ns
        self._count += 1

    def __len__(self) -> int:
        return min(self._count, self._samples.size)

    def percentiles(self, qs: Sequence[float]) -> list[float]:
        """Percentiles in nanoseconds; NaN while empty."""
        n = len(self)
        if n == 0:
            return [float("nan")] * len(qs)
        return [float(v) for v in np.percentile(self._samples[:n], qs)]


def summarize_ns(samples: Iterable[int], qs: Sequence[float] = (50, 99, 99.9)) -> dict[str, float]:
    """``{"p50": ms, "p99": ms, ..., "max": ms, "n": count}`` from nanosecond samples."""
    arr = np.fromiter(samples, dtype=np.int64)
    out: dict[str, float] = {"n": float(arr.size)}
    if arr.size == 0:
        return out
    for q, v in zip(qs, np.percentile(arr, qs), strict=True):
        out[f"p{q:g}"] = float(v) / 1e6
    out["max"] = float(arr.max()) / 1e6
    return out
