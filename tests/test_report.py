"""The final summary's last lines say exactly what was counted: one record per frame only where
none was lost on the way to the log."""

from __future__ import annotations

import io

from linegate.counters import Count, Snapshot
from linegate.pipeline.summary import RunSummary
from linegate.report import print_summary


def summary_text(counts: dict[Count, int]) -> str:
    out = io.StringIO()
    print_summary(RunSummary(Snapshot.of(counts), problems=[]), out)
    return out.getvalue()


ALL_LOGGED = {Count.ACQUIRED: 10, Count.DECIDED: 10, Count.LOGGED: 10, Count.PASSED: 10}


def test_every_record_logged_is_reconciled_with_one_record_per_frame() -> None:
    assert "reconciled: every frame has one verdict and one record" in summary_text(ALL_LOGGED)


def test_dropped_frame_records_are_not_called_one_record_per_frame() -> None:
    text = summary_text({**ALL_LOGGED, Count.LOGGED: 7, Count.LOG_DROPPED: 3})
    assert "one record" not in text
    assert "but 3 frame records were dropped (log pipe full" in text


def test_lines_an_output_could_not_take_are_named() -> None:
    text = summary_text({**ALL_LOGGED, Count.LOG_WRITE_FAILED_INFER: 4})
    assert "one record" not in text and "but 4 records were not written to every output" in text
