"""The final summary a run prints: counters that must reconcile, and why the run ended."""

from __future__ import annotations

from typing import TextIO

from linegate.counters import Count
from linegate.pipeline.summary import RunSummary, camera_counts


def print_summary(summary: RunSummary, out: TextIO) -> None:
    s, c = summary.counters, Count
    frames = s[c.DECIDED] + s[c.DROPPED]
    stopped = summary.stop_reason or "done"
    if summary.forced:
        stopped += f"; FORCED: {summary.forced}, what they held is reported by part id"
    p50, p99 = summary.latency_ms
    latency = f"p50 {p50:.2f} ms, p99 {p99:.2f} ms over all {frames} frames" if frames else "none (no frames)"
    lines = [
        f"linegate: stopped after {summary.elapsed_s:.1f} s ({stopped})",
        f"  frames   acquired {s[c.ACQUIRED]} = decided {s[c.DECIDED]} + dropped {s[c.DROPPED]}"
        + (f" + lock-timeouts {s[c.RING_LOCK_TIMEOUTS]}" if s[c.RING_LOCK_TIMEOUTS] else "")
        + (f" + lost in a killed acquisition worker {s[c.ACQ_LOST]}" if s[c.ACQ_LOST] else ""),
        f"  verdicts pass {s[c.PASSED]}, reject {s[c.REJECTED]} (fail-safe {s[c.FAIL_SAFE]}: deadline missed "
        f"{s[c.DEADLINE_MISSED]}, unreachable {s[c.DEADLINE_UNREACHABLE]}, engine errors {s[c.ENGINE_ERRORS]}, "
        f"incomplete frames {s[c.INCOMPLETE_FRAMES]})",
        f"  records  logged {s[c.LOGGED]} of {frames} frames (dropped {s[c.LOG_DROPPED]})",
        f"  rejects  {s[c.REJECTED]} = delivered {s[c.PLC_DELIVERED]} + undelivered {s[c.PLC_UNDELIVERED]} "
        f"+ queue-full {s[c.PLC_QUEUE_FULL]} (retries {s[c.PLC_RETRIES]}, past their window {s[c.PLC_LATE]})",
        *(
            [f"  passes   sent to the PLC {s[c.PLC_PASS_QUEUED]} = acknowledged {s[c.PLC_PASS_DELIVERED]} + "
             f"undelivered {s[c.PLC_PASS_UNDELIVERED]} (+ queue-full {s[c.PLC_PASS_QUEUE_FULL]})"]
            if s[c.PLC_PASS_QUEUED] + s[c.PLC_PASS_QUEUE_FULL] else []
        ),
        f"  camera   timeouts {s[c.CAMERA_TIMEOUTS]}, frames lost {s[c.CAMERA_LOST]}, reconnects "
        f"{s[c.CAMERA_RECONNECTS]} (down {s[c.CAMERA_DOWNTIME_MS] / 1000:.1f} s, ~{s[c.CAMERA_MISSED_ESTIMATE]} "
        f"frames not taken)",
        f"  workers  restarts {s[c.WORKER_RESTARTS]} (stalls {s[c.WORKER_STALLS]}), frames recovered from a dead "
        f"acquisition worker {s[c.PRODUCER_LOST]}, reloads {s[c.RELOADS]} (refused {s[c.RELOAD_FAILURES]})",
        f"  logs     records {s.log_queued} queued by all processes, {s.log_queue_full} dropped (pipe full), "
        f"{s.log_write_failed} not written (output failed)"
        + (f", frame records unresolved {s[c.UNRESOLVED]}" if s[c.UNRESOLVED] else ""),
        f"  latency  {latency}"
        f" (engine path expected {s[c.ENGINE_P99_US] / 1000:.2f} ms: its p99 at warm-up or over recent frames)",
    ]
    for name, cs in summary.cameras:
        n = camera_counts(cs)
        lines.append(
            f"  camera {name}: acquired {n['acquired']}, decided {n['decided']}, reject {n['rejected']} (delivered "
            f"{n['plc_delivered']}, undelivered {n['plc_undelivered']})"
            + (", down at the end" if n["camera_down"] else "")
        )
    lines += [f"  fault    {f}" for f in summary.faults] or ["  faults   none"]
    if summary.removed_stale_ring:
        lines.append("  note     removed a shared-memory ring left by an earlier run that was killed")
    for role, code, message in summary.failures:
        lines.append(f"  FAILED   {role} worker (exit {code}): {message}")
    if summary.problems:
        lines += [f"  MISMATCH {p}" for p in summary.problems]
    elif summary.failures and not frames:
        lines.append("  NOT INSPECTING: linegate failed before it decided any frame (see FAILED above)")
    else:
        lines.append(_reconciled(summary))
    lines += [f"  NOT WELL {w}" for w in summary.lasting]
    print("\n".join(lines), file=out, flush=True)


def _reconciled(summary: RunSummary) -> str:
    """The all-counted line; it claims one record per frame only where no record was lost on its
    way to the log (a full log pipe drops a record; a failed output, a disk full, loses lines)."""
    s = summary.counters
    lost = []
    if s[Count.LOG_DROPPED]:
        lost.append(f"{s[Count.LOG_DROPPED]} frame records were dropped (log pipe full)")
    if s.log_write_failed:
        lost.append(f"{s.log_write_failed} records were not written to every output (see log_write_failed)")
    if not lost:
        return "  reconciled: every frame has one verdict and one record; every reject is accounted for"
    return "  reconciled: every frame has one verdict; every reject is accounted for; but " + "; ".join(lost)
