"""`linegate run` serves /metrics from its own counters: scraped over HTTP, checked against its own frame records.

The bound that makes the check exact: the inference loop counts a frame (counters, then the latency
histogram) before it picks the next one, and only after the frame's ``t_done_ns``. So a scrape
between ``t0`` and ``t1`` (``CLOCK_MONOTONIC``, shared by every process) must show at least every
frame recorded before the last frame picked before ``t0``, and at most the frames done before ``t1``.
A stale, wrong or mislabelled value falls outside that window of a frame or two at 100 fps.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import linegate
from linegate.demo.runner import PlcSimProcess, free_port
from linegate.timing import histogram
from tests.pipeline.harness import LinegateRun, assert_every_frame_and_reject_accounted

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
Record = dict[str, Any]


def metrics_on(port: int) -> dict[str, str]:
    """Edits to the demo config (metrics off there) that serve metrics on *port*."""
    return {"enabled = false": "enabled = true", "port = 9108": f"port = {port}"}


def scrape(url: str) -> tuple[Samples, dict[str, str], int, int]:
    """Every sample, each family's type, and CLOCK_MONOTONIC just before the request and after the reply."""
    t0 = time.monotonic_ns()
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    t1 = time.monotonic_ns()
    samples, types = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types, t0, t1


def window(frames: list[Record], t0: int, t1: int, which: Callable[[Record], bool]) -> tuple[int, int]:
    """(at least, at most) frames matching *which* that a snapshot taken between t0 and t1 has counted."""
    picked_before = [i for i, r in enumerate(frames) if "t_picked_ns" in r and r["t_picked_ns"] < t0]
    counted = frames[: picked_before[-1]] if picked_before else []
    done = [r for r in frames if r["t_done_ns"] < t1]
    return sum(map(which, counted)), sum(map(which, done))


def plc_window(recs: list[Record], t0: int, t1: int) -> tuple[int, int]:
    """(at least, at most) PLC write round trips a snapshot taken between t0 and t1 has counted: one per reject
    delivered on the ON write's reply, counted by the one PLC thread before it sends the next reject's write."""
    delivered = [r for r in recs if r["event"] == "reject_delivered"]
    by_reply = [r["confirmed_by"] == "reply" for r in delivered]
    sent_before = [i for i, r in enumerate(delivered) if r["t_pulse_ns"] < t0]
    low = sum(by_reply[: sent_before[-1]]) if sent_before else 0
    return low, sum(b for b, r in zip(by_reply, delivered, strict=True) if r["t_pulse_ns"] < t1)


def under(le_s: float) -> Callable[[Record], bool]:
    """A frame the loop decided whose latency (exactly as the histogram got it) is in a bin below *le_s*."""
    top_bin = histogram.bin_of(int(le_s * 1e9 * 0.999))  # the bucket's bound is the upper edge of this bin

    def which(r: Record) -> bool:
        return "t_picked_ns" in r and histogram.bin_of(int(r["t_done_ns"] - r["t_acquired_ns"])) <= top_bin

    return which


def test_scrape_matches_the_runs_own_records(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """Frames, verdicts, bases and every latency bucket scraped mid-run lie within what the frame records say
    was counted at that moment; the identity and state gauges are the run's; the final summary is never below."""
    port = free_port()
    run = LinegateRun(tmp_path, plc_sim.port, metrics_on(port))
    url = run.wait_event("metrics_listening")["url"]
    assert url == f"http://127.0.0.1:{port}/metrics"
    run.wait_event("inspection_resumed")
    run.wait_frames(100)
    first, types, t0, t1 = scrape(url)
    run.wait_frames(50)
    run.wait_event("reject_delivered")
    second, _, s0, s1 = scrape(url)
    run.stop()
    assert run.proc.returncode == 0, run.stderr
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(coil=0))
    frames = [r for r in recs if r["event"] == "frame"]  # one inference worker, no restart: in the order decided

    def check(sample: tuple[str, tuple[tuple[str, str], ...]], which: Callable[[Record], bool]) -> tuple[int, int]:
        low, high = window(frames, t0, t1, which)
        assert low <= first[sample] <= high, (sample, low, first[sample], high)
        return low, high

    decided, dropped = ("linegate_frames_decided_total", ()), ("linegate_frames_dropped_total", ())
    low, high = window(frames, t0, t1, lambda r: True)
    assert 50 < low <= first[decided] + first[dropped] <= high, (low, first[decided], first[dropped], high)
    check(("linegate_verdicts_total", (("verdict", "reject"),)), lambda r: r["verdict"] == "reject")  # 0 so far, maybe
    assert check(("linegate_verdicts_total", (("verdict", "pass"),)), lambda r: r["verdict"] == "pass")[0] > 0
    assert check(("linegate_verdicts_by_basis_total", (("basis", "model"),)), lambda r: r["basis"] == "model")[0] > 0
    looped_sample = ("linegate_frame_latency_seconds_count", ())
    looped = check(looped_sample, lambda r: "t_picked_ns" in r)  # the frames the loop decided: each in the histogram
    frame_buckets = [labels for name, labels in first if name == "linegate_frame_latency_seconds_bucket"]
    bounds = [le for labels in frame_buckets for (_, le) in labels]
    assert len(bounds) > 10 and bounds[-1] == "+Inf" and types["linegate_frame_latency_seconds"] == "histogram"
    below = []
    for le in bounds[:-1]:
        below.append(check(("linegate_frame_latency_seconds_bucket", (("le", le),)), under(float(le))))
    assert first[("linegate_frame_latency_seconds_bucket", (("le", "+Inf"),))] == first[looped_sample]
    assert any(high < looped[0] for _, high in below)  # some frames lie above a bound: the buckets discriminate

    def by_model(r: Record) -> bool:
        return bool(r["basis"] == "model")

    model = check(("linegate_verdicts_by_basis_total", (("basis", "model"),)), by_model)
    for stage in ("write", "queued", "preprocess", "infer", "postprocess", "handoff"):  # one sample per model frame
        assert check(("linegate_stage_latency_seconds_count", (("stage", stage),)), by_model)[0] > 0, stage
        top = first[("linegate_stage_latency_seconds_bucket", (("le", "+Inf"), ("stage", stage)))]
        assert top == first[("linegate_stage_latency_seconds_count", (("stage", stage),))], stage
    assert types["linegate_stage_latency_seconds"] == "histogram"
    by_class = {dict(labels)["class"]: v for (name, labels), v in first.items()
                if name == "linegate_verdicts_by_class_total"}  # fmt: skip
    assert set(by_class) == {"pass", "reject", "(other)"} and by_class["(other)"] == 0
    for name in ("pass", "reject"):

        def labelled(r: Record, n: str = name) -> bool:
            return by_model(r) and r["label"] == n

        check(("linegate_verdicts_by_class_total", (("class", name),)), labelled)
    assert model[0] <= sum(by_class.values()) <= model[1] and sum(by_class.values()) > 0

    plc_sample = ("linegate_plc_write_latency_seconds_count", ())
    assert types["linegate_plc_write_latency_seconds"] == "histogram"
    for samples, (u0, u1) in ((first, (t0, t1)), (second, (s0, s1))):
        low, high = plc_window(recs, u0, u1)
        assert low <= samples[plc_sample] <= high, (low, samples[plc_sample], high)
    assert second[("linegate_plc_rejects_delivered_total", ())] > 0 and second[plc_sample] > 0

    (summary,) = [r for r in recs if r["event"] == "run_summary"]
    for key, sample in [("decided", decided), ("plc_delivered", ("linegate_plc_rejects_delivered_total", ())),
                        ("acquired", ("linegate_frames_acquired_total", ()))]:  # fmt: skip
        assert first[sample] <= second[sample] <= summary[key], key
    assert second[decided] > first[decided]
    assert first[("linegate_model_info", (("backend", "onnxruntime"), ("model", "demo-ball-zone-v1")))] == 1
    assert first[("linegate_build_info", (("version", linegate.__version__),))] == 1
    assert types["linegate_frames_decided"] == "counter" and types["linegate_inspecting"] == "gauge"
    for gauge, value in [("linegate_inspecting", 1), ("linegate_ready", 1), ("linegate_plc_connected", 1),
                         ("linegate_faults", 0), ("linegate_deadline_budget_seconds", 0.05),
                         ("linegate_ring_slots", 8)]:  # fmt: skip
        assert first[(gauge, ())] == value, gauge
    assert 0 <= first[("linegate_ring_slots_used", ())] <= 8


def test_metrics_port_in_use_is_logged_and_the_line_keeps_inspecting(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """Another process on the metrics port: metrics_unavailable names metrics.port, frames are still decided,
    the stop is clean and everything reconciles."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        run = LinegateRun(tmp_path, plc_sim.port, metrics_on(port))
        event = run.wait_event("metrics_unavailable")
        run.wait_event("inspection_resumed")
        run.wait_frames(50)
        run.stop()
    assert (event["level"], event["key"], event["port"]) == ("error", "metrics.port", port)
    assert run.proc.returncode == 0, run.stderr
    recs = run.records()
    assert not [r for r in recs if r["event"] == "metrics_listening"]
    assert_every_frame_and_reject_accounted(recs, plc_sim.rising_part_ids(coil=0))
