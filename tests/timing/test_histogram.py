"""The run-long latency histogram: percentiles within the bin width of the exact ones (pure)."""

from __future__ import annotations

import numpy as np

from linegate.timing.histogram import BINS, bin_of, percentiles


def test_percentiles_are_within_four_percent_of_numpy_for_a_skewed_sample() -> None:
    """1e5 log-normal latencies around 1 ms: p50, p99, p99.9 within 4% of the exact values."""
    rng = np.random.default_rng(3)
    samples = (rng.lognormal(mean=np.log(1e6), sigma=0.6, size=100_000)).astype(np.int64)
    counts = [0] * BINS
    for ns in samples:
        counts[bin_of(int(ns))] += 1
    for q, got in zip((50, 99, 99.9), percentiles(counts, (50, 99, 99.9)), strict=True):
        exact = float(np.percentile(samples, q))
        assert abs(got - exact) / exact < 0.04, (q, got, exact)


def test_out_of_range_values_land_in_the_end_bins_and_empty_is_nan() -> None:
    """Below 10 us and above 10 s are counted, not lost; no samples gives NaN."""
    assert bin_of(1) == 0 and bin_of(10**12) == BINS - 1
    assert all(p != p for p in percentiles([0] * BINS, (50, 99)))
