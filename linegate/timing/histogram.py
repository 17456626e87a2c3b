"""A run-long latency histogram in fixed log-spaced bins (pure): cheap to add to, exact in count.

32 bins per decade from 10 us to 10 s (each bin 7.5% wide), plus one under and one over: a
percentile read from it is within about 4% of the true value, for any number of samples, in a
fixed block of shared memory. Used for the whole-run latency in the final summary (the live
window only holds the last few thousand frames).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

LOW_NS = 10_000
PER_DECADE = 32
DECADES = 6
BINS = PER_DECADE * DECADES + 2  # [0]: below LOW_NS, [-1]: at or above LOW_NS * 10**DECADES


def bin_of(ns: int) -> int:
    """The bin a latency of *ns* falls in."""
    if ns < LOW_NS:
        return 0
    return min(BINS - 1, 1 + int(math.log10(ns / LOW_NS) * PER_DECADE))


def bin_mid_ns(index: int) -> float:
    """A representative value of bin *index* (its geometric middle; the edges for the end bins)."""
    if index <= 0:
        return float(LOW_NS)
    return LOW_NS * 10 ** ((min(index, BINS - 2) - 0.5) / PER_DECADE)


def percentiles(counts: Sequence[int], qs: Sequence[float]) -> list[float]:
    """Percentiles (ns) of the samples counted in *counts*; NaN when there are none."""
    total = sum(counts)
    if total == 0:
        return [float("nan")] * len(qs)
    out = []
    for q in qs:
        rank = q / 100 * total
        seen = 0
        for i, c in enumerate(counts):
            seen += c
            if c and seen >= rank:
                out.append(bin_mid_ns(i))
                break
    return out
