"""A soak run's samples and final summary turned into figures, pass/fail criteria and Markdown (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from linegate.soak.duration import format_duration
from linegate.soak.sampler import TOTAL, Sample

WARMUP_MAX_S = 60.0
WARMUP_SHARE = 0.1
SHORT_WINDOW_S = 600.0
"""Below this, a slope says little: the report says so."""
ROLE_ORDER = ("supervisor", "plc", "infer", "acquire", "resource-tracker", "other", TOTAL)


@dataclass(frozen=True)
class Criteria:
    """What a soak must meet to pass (besides reconciling with no restarts)."""

    max_misses: int = 0
    max_growth_mb_per_h: float = 5.0


@dataclass
class RunOutcome:
    """What the session observed; times in seconds after the run was started."""

    config: str
    duration_s: float
    sample_s: float
    ready_s: float | None
    stopped_s: float
    exit_code: int | None
    summary: dict[str, Any] | None
    samples: list[Sample]
    forced: str = ""
    """Why linegate was killed instead of stopped by SIGTERM, if it was."""
    cut_short: str = ""
    """Why the run ended before the duration had passed (Ctrl-C, linegate exited by itself), if it did."""
    logged_frames: int = 0
    max_latency_ms: float | None = None
    logged_failures: list[str] = field(default_factory=list)
    plc_check: tuple[str, bool] | None = None
    """The PLC simulator's own count of what it received, and whether it matches linegate's."""
    files: dict[str, str] = field(default_factory=dict)


def warmup_s(duration_s: float) -> float:
    """Warm-up after READY: 60 s, or 10% of the run for runs shorter than 10 minutes."""
    return min(WARMUP_MAX_S, WARMUP_SHARE * duration_s)


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour; None for fewer than two distinct times."""
    n = len(points)
    if n < 2:
        return None
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in points)
    if var_t == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var_t * 3600.0


def _mb(kb: int | None) -> float | None:
    return None if kb is None else kb / 1024.0


def memory_rows(samples: Sequence[Sample], from_s: float) -> list[dict[str, Any]]:
    """Per role (and the total, and processes outside linegate): RSS and PSS after warm-up, at the
    end, growth in MB and MB/h (least squares over the samples from *from_s* on)."""
    window = [s for s in samples if s.t_s >= from_s]
    names = {name for s in window for name in s.memory}
    ordered = [n for n in ROLE_ORDER if n in names] + sorted(names - set(ROLE_ORDER))
    rows = [_row(name, [(s.t_s, s.memory.get(name)) for s in window], outside=False) for name in ordered]
    outside = sorted({name for s in window for name in s.outside})
    rows += [_row(name, [(s.t_s, s.outside.get(name)) for s in window], outside=True) for name in outside]
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _row(name: str, series: list[tuple[float, Any]], outside: bool) -> dict[str, Any]:
    present = [(t, u) for t, u in series if u is not None]
    row: dict[str, Any] = {"process": name, "outside_linegate": outside, "samples": len(present),
                           "pids": sorted({p for _, u in present for p in u.pids})}
    for metric in ("rss", "pss"):
        points = [(t, _mb(getattr(u, f"{metric}_kb"))) for t, u in present]
        full = [(t, v) for t, v in points if v is not None]
        ok = bool(full) and len(full) == len(points)
        first, last = (full[0][1], full[-1][1]) if ok else (None, None)
        slope = slope_per_hour(full) if ok else None
        row[f"{metric}_warm_mb"] = _round(first)
        row[f"{metric}_end_mb"] = _round(last)
        row[f"{metric}_growth_mb"] = None if first is None or last is None else _round(last - first)
        row[f"{metric}_mb_per_h"] = _round(slope)
    return row


def _count(summary: dict[str, Any] | None, key: str) -> int:
    return int(summary.get(key, 0)) if summary else 0


def figures(run: RunOutcome, criteria: Criteria) -> dict[str, Any]:
    """Everything the report shows (soak.json), failed criteria included."""
    s = run.summary
    ready = run.ready_s
    inspected = run.stopped_s - ready if ready is not None else 0.0
    cut = ready + warmup_s(inspected) if ready is not None else float("inf")  # never ready: no memory figures
    rows = memory_rows(run.samples, cut)
    decided, dropped = _count(s, "decided"), _count(s, "dropped")
    missed, unreachable = _count(s, "deadline_missed"), _count(s, "deadline_unreachable")
    out: dict[str, Any] = {
        "config": run.config,
        "duration_requested_s": run.duration_s,
        "sample_s": run.sample_s,
        "ready_after_s": None if ready is None else round(ready, 2),
        "inspected_s": round(inspected, 2),
        "warmup_ends_s": round(cut, 2) if ready is not None else None,
        "samples": len(run.samples),
        "samples_after_warmup": sum(1 for x in run.samples if x.t_s >= cut),
        "linegate_exit_code": run.exit_code,
        "forced": run.forced,
        "cut_short": run.cut_short,
        "summary_found": s is not None,
        "stop_reason": s.get("stop_reason") if s else None,
        "frames": {"acquired": _count(s, "acquired"), "decided": decided, "dropped": dropped,
                   "fps": round((decided + dropped) / inspected, 2) if inspected > 0 else None},
        "deadline_misses": {"total": missed + unreachable, "missed": missed, "unreachable": unreachable},
        "worker_restarts": _count(s, "worker_restarts"),
        "worker_stalls": _count(s, "worker_stalls"),
        "plc": {"rejects": _count(s, "rejected"), "delivered": _count(s, "plc_delivered"),
                "undelivered": _count(s, "plc_undelivered") + _count(s, "plc_queue_full"),
                "simulator": run.plc_check[0] if run.plc_check else None},
        "problems": list(s.get("problems", [])) if s else None,
        "lasting": list(s.get("lasting", [])) if s else None,
        "latency_ms": {"p50": s.get("latency_p50_ms") if s else None, "p99": s.get("latency_p99_ms") if s else None,
                       "max": None if run.max_latency_ms is None else round(run.max_latency_ms, 3),
                       "logged_frames": run.logged_frames},
        "memory": rows,
        "criteria": {"max_misses": criteria.max_misses, "max_growth_mb_per_h": criteria.max_growth_mb_per_h},
        "files": run.files,
    }
    out["failures"] = failed_criteria(out, run, criteria)
    out["passed"] = not out["failures"]
    return out


def total_growth(rows: Sequence[dict[str, Any]]) -> tuple[str, float | None]:
    """The criterion: the slope of the total RSS in MB/h. Not PSS: a process's PSS also moves when
    processes outside linegate that map the same libraries start or stop."""
    total = next((r for r in rows if r["process"] == TOTAL), None)
    return "rss", None if total is None else total["rss_mb_per_h"]


def failed_criteria(f: dict[str, Any], run: RunOutcome, criteria: Criteria) -> list[str]:
    """One line per criterion the soak failed (empty: passed)."""
    out = []
    if run.ready_s is None:  # nothing else was measured
        out.append("linegate never became ready: " + ("; ".join(run.logged_failures) or "see its stderr and log"))
        if run.exit_code not in (0, None):
            out.append(f"linegate exited with code {run.exit_code}")
        return out
    if not f["summary_found"]:
        out.append("no run_summary record: linegate did not stop cleanly (see the log)")
    elif f["problems"]:
        out.append("not reconciled: " + "; ".join(f["problems"]))
    if run.cut_short:
        out.append(run.cut_short)
    if run.exit_code not in (0, None) or run.forced:
        out.append(f"linegate exited with code {run.exit_code}" + (f" ({run.forced})" if run.forced else ""))
    if f["summary_found"] and f["frames"]["decided"] + f["frames"]["dropped"] == 0:
        out.append("no frame was decided")
    if f["worker_restarts"]:
        out.append(f"worker restarts: {f['worker_restarts']} (stalls {f['worker_stalls']})")
    misses = f["deadline_misses"]["total"]
    if misses > criteria.max_misses:
        out.append(f"deadline misses {misses} > --max-misses {criteria.max_misses}")
    metric, slope = total_growth(f["memory"])
    if slope is None:
        out.append(f"memory growth unknown: {f['samples_after_warmup']} samples after warm-up (need 2 or more)")
    elif slope >= criteria.max_growth_mb_per_h:
        out.append(f"memory growth {slope:.2f} MB/h (total {metric.upper()}) >= --max-growth-mb-per-h "
                   f"{criteria.max_growth_mb_per_h:g}")
    if run.plc_check is not None and not run.plc_check[1]:
        out.append(f"PLC simulator mismatch: {run.plc_check[0]}")
    return out


def _num(value: Any, fmt: str = ".1f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _signed(value: Any, fmt: str = "+.1f") -> str:
    return "n/a" if value is None else format(value, fmt)


def render_markdown(f: dict[str, Any]) -> str:
    """The report as Markdown (soak.md, and what the command prints)."""
    fr, dm, plc, lat = f["frames"], f["deadline_misses"], f["plc"], f["latency_ms"]
    verdict = "**PASS**" if f["passed"] else "**FAIL**: " + "; ".join(f["failures"])
    reconciled = ("n/a (no run_summary)" if f["problems"] is None
                  else "reconciled" if not f["problems"] else "NOT reconciled: " + "; ".join(f["problems"]))
    lines = [
        f"# linegate soak: {format_duration(f['inspected_s'])} of inspection",
        "",
        f"Result: {verdict}",
        "",
        "| what | figure |",
        "|---|---|",
        f"| config | {f['config']} |",
        f"| duration | {format_duration(f['inspected_s'])} inspecting (asked "
        f"{format_duration(f['duration_requested_s'])}; ready after {_num(f['ready_after_s'])} s; stop: "
        f"{f['stop_reason'] or 'n/a'}) |",
        f"| frames | acquired {fr['acquired']}, decided {fr['decided']}, dropped {fr['dropped']}; "
        f"{_num(fr['fps'])} fps |",
        f"| deadline misses | {dm['total']} (missed {dm['missed']}, unreachable {dm['unreachable']}) |",
        f"| drops | {fr['dropped']} |",
        f"| worker restarts | {f['worker_restarts']} (stalls {f['worker_stalls']}) |",
        f"| PLC | rejects {plc['rejects']}: delivered {plc['delivered']}, undelivered {plc['undelivered']} |",
        *([f"| PLC simulator | {plc['simulator']} |"] if plc["simulator"] else []),
        f"| reconciliation | {reconciled} |",
        *([f"| lasting | {'; '.join(f['lasting'])} |"] if f["lasting"] else []),
        f"| latency (end to end) | p50 {_num(lat['p50'], '.2f')} ms, p99 {_num(lat['p99'], '.2f')} ms, max "
        f"{_num(lat['max'], '.2f')} ms (max over {lat['logged_frames']} logged frames) |",
        f"| samples | {f['samples']} every {f['sample_s']:g} s, {f['samples_after_warmup']} after warm-up "
        f"(t >= {_num(f['warmup_ends_s'])} s) |",
        "",
        "## Memory (MB)",
        "",
        "After warm-up: the first sample from READY + min(60 s, 10% of the run). MB/h: least-squares slope "
        "over the samples after warm-up. PSS shares pages (the frame ring, libraries) among the processes "
        "that map them, so it also moves when other processes mapping the same libraries start or stop; RSS "
        "counts shared pages in each process that maps them. The criterion is the total RSS's slope.",
        "",
        "| process | RSS warm | RSS end | RSS growth | RSS MB/h | PSS warm | PSS end | PSS growth | PSS MB/h |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in f["memory"]:
        name = r["process"] + (" (not linegate)" if r["outside_linegate"] else "")
        if r["process"] == TOTAL:
            name = "**total**"
        lines.append(
            f"| {name} | {_num(r['rss_warm_mb'])} | {_num(r['rss_end_mb'])} | {_signed(r['rss_growth_mb'])} | "
            f"{_signed(r['rss_mb_per_h'])} | {_num(r['pss_warm_mb'])} | {_num(r['pss_end_mb'])} | "
            f"{_signed(r['pss_growth_mb'])} | {_signed(r['pss_mb_per_h'])} |"
        )
    window = f["inspected_s"] - ((f["warmup_ends_s"] or 0.0) - (f["ready_after_s"] or 0.0))
    if f["ready_after_s"] is not None and window < SHORT_WINDOW_S:
        lines += ["", f"Note: the slope covers {format_duration(max(window, 0.0))}; under 10 minutes it is "
                  "indicative only (allocator and cache noise dominate)."]
    metric, slope = total_growth(f["memory"])
    lines += [
        "",
        f"Criteria: reconciled, no worker restart, deadline misses <= {f['criteria']['max_misses']}, total "
        f"{metric.upper()} growth < {f['criteria']['max_growth_mb_per_h']:g} MB/h (measured "
        f"{_signed(slope, '+.2f')} MB/h).",
    ]
    if f["files"]:
        lines += ["", "Files: " + ", ".join(f"{k} `{v}`" for k, v in f["files"].items())]
    return "\n".join(lines) + "\n"
