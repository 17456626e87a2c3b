"""The final summary a run prints: counters that must reconcile, and why the run ended."""

from __future__ import annotations

from typing import TextIO

from linegate.pipeline.summary import RunSummary


def print_summary(summary: RunSummary, out: TextIO) -> None:
    s = summary.counters
    frames = s["decided"] + s["dropped"]
    stopped = summary.stop_reason or "done"
    if summary.forced:
        stopped += f"; FORCED: {summary.forced}, what they held is reported by part id"
    lines = [
        f"linegate: stopped after {summary.elapsed_s:.1f} s ({stopped})",
        f"  frames   acquired {s['acquired']} = decided {s['decided']} + dropped {s['dropped']}"
        + (f" + lock-timeouts {s['ring_lock_timeouts']}" if s["ring_lock_timeouts"] else "")
        + (f" + lost in a killed acquisition worker {s['acq_lost']}" if s["acq_lost"] else ""),
        f"  verdicts pass {s['passed']}, reject {s['rejected']} (fail-safe {s['fail_safe']}: deadline missed "
        f"{s['deadline_missed']}, unreachable {s['deadline_unreachable']}, engine errors {s['engine_errors']}, "
        f"incomplete frames {s['incomplete_frames']})",
        f"  records  logged {s['logged']} of {frames} frames (dropped {s['log_dropped']})",
        f"  rejects  {s['rejected']} = delivered {s['plc_delivered']} + undelivered {s['plc_undelivered']} "
        f"+ queue-full {s['plc_queue_full']} (retries {s['plc_retries']}, late {s['plc_late']})",
        f"  camera   timeouts {s['camera_timeouts']}, frames lost {s['camera_lost']}, reconnects "
        f"{s['camera_reconnects']} (down {s['camera_downtime_ms'] / 1000:.1f} s, ~{s['camera_missed_estimate']} "
        f"frames not taken)",
        f"  workers  restarts {s['worker_restarts']} (stalls {s['worker_stalls']}), frames recovered from a dead "
        f"acquisition worker {s['producer_lost']}, reloads {s['reloads']} (refused {s['reload_failures']})",
        f"  logs     records {s['log_queued']} queued by all processes, {s['log_queue_full']} dropped (pipe full), "
        f"{s['log_write_failed']} not written (output failed)"
        + (f", frame records unresolved {s['unresolved']}" if s["unresolved"] else ""),
        f"  latency  p50 {summary.latency_ms[0]:.2f} ms, p99 {summary.latency_ms[1]:.2f} ms over all {frames} frames "
        f"(engine path p99 at warm-up {s['engine_p99_us'] / 1000:.2f} ms)",
    ]
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
        lines.append("  reconciled: every frame has one verdict and one record; every reject is accounted for")
    lines += [f"  NOT WELL {w}" for w in summary.lasting]
    print("\n".join(lines), file=out, flush=True)
