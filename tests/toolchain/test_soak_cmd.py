"""linegate soak: the duration option, the growth computation and criteria, and a real short soak of the demo."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from linegate.cli import build_parser
from linegate.soak.duration import format_duration, parse_duration
from linegate.soak.report import Criteria, RunOutcome, figures, memory_rows, render_markdown, slope_per_hour, warmup_s
from linegate.soak.sampler import TOTAL, Sample, Usage

REPO = Path(__file__).resolve().parents[2]
MB = 1024  # kB


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h", 3600.0), ("30m", 1800.0), ("90s", 90.0), ("1h30m", 5400.0), ("1.5h", 5400.0), (" 2m 5s ", 125.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "60", "5x", "0s", "1h1h", "-1h", "h", "1 hour"])
def test_bad_durations_say_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration such as 1h, 30m, 90s"):
        parse_duration(text)


def test_bad_duration_on_the_command_line_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["soak", "--duration", "5x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --duration: expected a duration such as 1h, 30m, 90s" in err and "'5x'" in err


def test_bad_sample_interval_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["soak", "--sample-s", "0"])
    assert "argument --sample-s" in capsys.readouterr().err


def test_defaults() -> None:
    args = build_parser().parse_args(["soak"])
    assert (args.duration, args.sample_s, args.max_misses, args.max_growth_mb_per_h) == (3600.0, 10.0, 0, 5.0)
    assert args.config is None


def test_format_duration() -> None:
    assert (format_duration(3600), format_duration(125), format_duration(20.04)) == ("1h 0m 0s", "2m 5s", "20.0s")


def test_slope_of_a_straight_line_in_mb_per_hour() -> None:
    points = [(t, 100.0 + 2.0 * t / 3600) for t in range(60, 3600, 10)]
    assert slope_per_hour(points) == pytest.approx(2.0)


def test_slope_fits_through_noise() -> None:
    points = [(float(t), 50.0 + 3.0 * t / 3600 + (0.5 if t % 20 else -0.5)) for t in range(0, 3600, 10)]
    assert slope_per_hour(points) == pytest.approx(3.0, abs=0.05)


def test_slope_needs_two_distinct_times() -> None:
    assert slope_per_hour([]) is None
    assert slope_per_hour([(5.0, 1.0)]) is None
    assert slope_per_hour([(5.0, 1.0), (5.0, 2.0)]) is None


def test_warmup_is_60_s_or_a_tenth_of_a_short_run() -> None:
    assert warmup_s(3600) == 60.0
    assert warmup_s(20) == pytest.approx(2.0)


def _samples(mb_per_h: float, pss: bool = True, n: int = 40, step_s: float = 10.0) -> list[Sample]:
    """Samples every *step_s* from t = 0; the infer worker grows at *mb_per_h*, the rest stays flat."""
    out = []
    for i in range(n):
        t = i * step_s
        infer = int((80 + mb_per_h * t / 3600) * MB)
        roles = {"supervisor": (60 * MB, 1), "infer": (infer, 2), "plc": (50 * MB, 3), "acquire": (200 * MB, 4)}
        memory = {r: Usage(kb, kb // 2 if pss else None, (pid,)) for r, (kb, pid) in roles.items()}
        total = sum(u.rss_kb for u in memory.values())
        memory[TOTAL] = Usage(total, total // 2 if pss else None, (1, 2, 3, 4))
        out.append(Sample(t, memory, {"plc-sim": Usage(40 * MB, None, (9,))}, {"frames": i * 1000}))
    return out


def _outcome(samples: list[Sample], **summary: object) -> RunOutcome:
    final = {"acquired": 1000, "decided": 1000, "dropped": 0, "problems": [], "lasting": [], "rejected": 10,
             "plc_delivered": 10, "latency_p50_ms": 1.0, "latency_p99_ms": 2.0, "stop_reason": "SIGTERM", **summary}
    return RunOutcome(config="demo", duration_s=390.0, sample_s=10.0, ready_s=0.0, stopped_s=390.0, exit_code=0,
                      summary=final, samples=samples, logged_frames=1000, max_latency_ms=3.0)


def test_memory_rows_start_after_warmup_and_give_growth() -> None:
    rows = {r["process"]: r for r in memory_rows(_samples(36.0), from_s=39.0)}
    infer = rows["infer"]
    assert infer["samples"] == 36  # t = 40 .. 390
    assert infer["rss_warm_mb"] == pytest.approx(80 + 36 * 40 / 3600, abs=0.01)
    assert infer["rss_growth_mb"] == pytest.approx(36 * 350 / 3600, abs=0.01)
    assert infer["rss_mb_per_h"] == pytest.approx(36.0, rel=0.01)
    assert infer["pss_mb_per_h"] == pytest.approx(18.0, rel=0.01)
    assert rows["plc"]["rss_mb_per_h"] == pytest.approx(0.0)
    assert rows[TOTAL]["rss_mb_per_h"] == pytest.approx(36.0, rel=0.01)
    assert rows["plc-sim"]["outside_linegate"] and rows["plc-sim"]["pss_warm_mb"] is None


def test_a_clean_flat_soak_passes() -> None:
    f = figures(_outcome(_samples(0.0)), Criteria())
    assert f["passed"] and f["failures"] == []
    text = render_markdown(f)
    assert "**PASS**" in text and "| reconciliation | reconciled |" in text and "| infer |" in text


def test_each_failed_criterion_is_named() -> None:
    run = _outcome(_samples(36.0), worker_restarts=2, deadline_missed=3, deadline_unreachable=1,
                   problems=["acquired 1000 != decided 999 + dropped 0"])
    f = figures(run, Criteria(max_misses=2, max_growth_mb_per_h=5.0))
    failures = "\n".join(f["failures"])
    assert "not reconciled: acquired 1000 != decided 999" in failures
    assert "worker restarts: 2" in failures
    assert "deadline misses 4 > --max-misses 2" in failures
    assert "memory growth 36.00 MB/h (total RSS) >= --max-growth-mb-per-h 5" in failures
    assert "**FAIL**" in render_markdown(f)


def test_too_few_samples_after_warmup_fail() -> None:
    f = figures(_outcome(_samples(0.0, n=2, step_s=1.0)), Criteria())
    assert any("memory growth unknown" in x for x in f["failures"])


def test_no_summary_fails() -> None:
    run = _outcome(_samples(0.0))
    run.summary, run.exit_code, run.forced = None, -9, "killed: not stopped 60 s after SIGTERM"
    failures = "\n".join(figures(run, Criteria())["failures"])
    assert "no run_summary record" in failures and "code -9 (killed" in failures


@pytest.mark.slow
def test_a_real_short_soak_of_the_demo(tmp_path: Path) -> None:
    """12 s of the demo with its PLC simulator, a sample every second: the report is complete and sensible."""
    out = tmp_path / "soak"
    proc = subprocess.run(
        [sys.executable, "-m", "linegate", "soak", "--duration", "12s", "--sample-s", "1", "--out", str(out),
         "--instance", f"t{uuid.uuid4().hex[:10]}"],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert (out / "soak.md").is_file(), proc.stdout + proc.stderr
    f = json.loads((out / "soak.json").read_text())
    assert f["samples"] > 5 and len(f["sample_records"]) == f["samples"]
    assert f["summary_found"] and f["stop_reason"] == "SIGTERM" and f["linegate_exit_code"] == 0
    assert f["problems"] == [] and f["worker_restarts"] == 0
    assert f["frames"]["decided"] > 0 and f["frames"]["acquired"] == f["frames"]["decided"] + f["frames"]["dropped"]
    assert 11.0 <= f["inspected_s"] <= 22.0 and f["frames"]["fps"] > 10
    assert f["plc"]["undelivered"] == 0 and f["plc"]["simulator"].startswith("saw ")
    assert 0 < f["latency_ms"]["p50"] <= f["latency_ms"]["p99"] <= f["latency_ms"]["max"]
    rows = {r["process"]: r for r in f["memory"]}
    assert {"supervisor", "acquire", "infer", "plc", TOTAL} <= set(rows)
    for role in ("supervisor", "acquire", "infer", "plc"):
        assert 5 < rows[role]["rss_warm_mb"] < 4096 and rows[role]["rss_end_mb"] > 5
        assert rows[role]["rss_mb_per_h"] is not None
    assert rows[TOTAL]["rss_end_mb"] >= sum(rows[r]["rss_end_mb"] for r in ("supervisor", "acquire", "infer", "plc"))
    assert "plc-sim" in rows and rows["plc-sim"]["outside_linegate"]
    # 12 s is too short for a meaningful slope: a failure may only be the growth criterion.
    assert proc.returncode in (0, 1)
    assert all(x.startswith("memory growth") for x in f["failures"]), f["failures"]
    text = (out / "soak.md").read_text()
    assert "| reconciliation | reconciled |" in text and "## Memory (MB)" in text
    assert text in proc.stdout
    assert (out / "soak-records.jsonl").stat().st_size > 0


def test_never_ready_says_why_and_nothing_else() -> None:
    run = _outcome(_samples(0.0, n=3))
    run.ready_s, run.summary, run.exit_code = None, None, 78
    run.logged_failures = ["linegate: instance 'demo' is already running"]
    f = figures(run, Criteria())
    assert f["failures"] == ["linegate never became ready: linegate: instance 'demo' is already running",
                             "linegate exited with code 78"]
    assert f["memory"] == [] and "**FAIL**" in render_markdown(f)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_a_soak_stopped_by_a_signal_stops_linegate_and_reports(tmp_path: Path, how: str) -> None:
    """kill (SIGTERM), or Ctrl-C even where a background shell started the soak with SIGINT ignored:
    linegate and the simulator are stopped in order, nothing is left running, the report says why."""
    import os
    import signal
    import time

    out, instance = tmp_path / "soak", f"t{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "linegate", "soak", "--duration", "1h", "--sample-s", "1", "--out", str(out),
         "--instance", instance],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `cmd &` in a script does
    )
    import threading

    guard = threading.Timer(180, proc.kill)  # never hang the suite if linegate never starts inspecting
    guard.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "] inspecting | " in line:
                break
        proc.send_signal(getattr(signal, how))
        rest, _ = proc.communicate(timeout=120)
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.kill()
    f = json.loads((out / "soak.json").read_text())
    assert proc.returncode == 1
    why = "Ctrl-C" if how == "SIGINT" else how
    assert any(f"interrupted ({why})" in failure for failure in f["failures"]), f["failures"]
    assert f["stop_reason"] == "SIGTERM" and f["linegate_exit_code"] == 0 and f["problems"] == []
    time.sleep(0.5)
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and instance.encode() in _cmdline(pid)]
    assert left == [], f"still running for instance {instance}: {left}"
    assert f"interrupted ({why})" in rest


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""
