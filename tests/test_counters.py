"""SharedCounters: the counters, then the run-long histograms and per-class counts after them, each in its own cells."""

from __future__ import annotations

import math
import multiprocessing as mp

from linegate.counters import (
    CLASS_OTHER,
    MAX_CLASSES,
    SIZE,
    STAGES,
    Count,
    SharedCounters,
    Snapshot,
    reconcile,
)
from linegate.timing import histogram

CTX = mp.get_context("spawn")


def test_every_block_has_its_own_cells_and_leaves_the_counters_alone() -> None:
    """Histograms and class counts fill the array after the counters: adding to each one shows only in its own
    reader; the snapshot, its record and the reconciliation see nothing of them."""
    counters = SharedCounters.create(CTX)
    assert len(counters.array) == SIZE + (len(STAGES) + 2) * histogram.BINS + MAX_CLASSES + 1
    counters.add_latency(3_000_000)
    counters.add_stage_latencies(20_000, 40_000, 80_000, 160_000, 320_000, 640_000)
    counters.add_plc_write_latency(1_500_000)
    counters.add_class_verdict(1)
    assert counters.snapshot() == Snapshot.of({})
    assert set(counters.snapshot().as_record().values()) == {0}
    assert reconcile(counters.snapshot()) == []
    assert sum(counters.latency_bins()) == 1 and counters.latency_bins()[histogram.bin_of(3_000_000)] == 1
    assert counters.plc_write_bins()[histogram.bin_of(1_500_000)] == 1 and sum(counters.plc_write_bins()) == 1
    assert counters.class_verdicts() == [0, 1] + [0] * (MAX_CLASSES - 1)
    counters.add(Count.DECIDED, 5)
    assert counters.get(Count.DECIDED) == 5 and sum(counters.latency_bins()) == 1


def test_stage_latencies_go_to_each_stages_histogram_in_order() -> None:
    """The six stage times of one frame land in write, queued, preprocess, infer, postprocess, handoff, in the
    argument order; each histogram counts every frame once."""
    counters = SharedCounters.create(CTX)
    times = [11_000 * 3**i for i in range(len(STAGES))]  # a different bin for each stage
    for _ in range(3):
        counters.add_stage_latencies(*times)
    bins = counters.stage_bins()
    assert list(bins) == ["write", "queued", "preprocess", "infer", "postprocess", "handoff"]
    for stage, ns in zip(STAGES, times, strict=True):
        assert len(bins[stage]) == histogram.BINS
        assert bins[stage][histogram.bin_of(ns)] == 3 and sum(bins[stage]) == 3, stage


def test_class_verdicts_past_the_counted_classes_go_to_other() -> None:
    """Positions 0..MAX_CLASSES-1 are counted one by one; a later position or none (-1) counts as other."""
    counters = SharedCounters.create(CTX)
    for index in (0, 0, 2, MAX_CLASSES - 1, MAX_CLASSES, 40, -1):
        counters.add_class_verdict(index)
    counts = counters.class_verdicts()
    assert len(counts) == MAX_CLASSES + 1
    assert counts[0] == 2 and counts[2] == 1 and counts[MAX_CLASSES - 1] == 1 and counts[CLASS_OTHER] == 3
    assert sum(counts) == 7


def test_latency_percentiles_read_only_the_frame_latency() -> None:
    """The whole-run percentiles come from the frame latency histogram alone, not the stage or PLC ones."""
    counters = SharedCounters.create(CTX)
    assert all(math.isnan(p) for p in counters.latency_percentiles((50, 99)))
    counters.add_stage_latencies(*[900_000_000] * len(STAGES))
    counters.add_plc_write_latency(900_000_000)
    assert all(math.isnan(p) for p in counters.latency_percentiles((50,)))
    for _ in range(10):
        counters.add_latency(5_000_000)
    (p50,) = counters.latency_percentiles((50,))
    assert math.isclose(p50, 5_000_000, rel_tol=0.04)


def test_shared_with_a_child_process() -> None:
    """A worker process's additions are seen by the parent (one array, pickled at start)."""
    counters = SharedCounters.create(CTX)
    child = CTX.Process(target=_add_in_child, args=(counters,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert sum(counters.stage_bins()["infer"]) == 1 and sum(counters.plc_write_bins()) == 1
    assert counters.class_verdicts()[3] == 1


def _add_in_child(counters: SharedCounters) -> None:
    counters.add_stage_latencies(1, 2, 3, 4_000_000, 5, 6)
    counters.add_plc_write_latency(2_000_000)
    counters.add_class_verdict(3)
