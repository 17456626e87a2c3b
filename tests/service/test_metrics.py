"""Prometheus metrics: the families built from a counters snapshot, their wire form, the endpoint, the config."""

from __future__ import annotations

import math
import multiprocessing as mp
import socket
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pydantic
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from linegate import __version__
from linegate.config import load_config
from linegate.config.schema import MetricsSection
from linegate.counters import CLASS_OTHER, MAX_CLASSES, STAGES, Count, SharedCounters, Snapshot
from linegate.demo.runner import free_port
from linegate.errors import ConfigError
from linegate.service.jetson_stats import BoardReading, BoardStats, PowerMode, ThermalZone
from linegate.service.metrics import (
    BUCKETS,
    OTHER_CLASS,
    PLAIN_COUNTERS,
    PLAIN_GAUGES,
    HighWater,
    Histograms,
    LinegateCollector,
    RunView,
    families,
)
from linegate.service.metrics_server import MetricsServer, serve_metrics, unavailable
from linegate.service.reload import plan_reload
from linegate.timing import histogram

RUN = RunView(
    ready=True, faults=0, model_id="demo-ball-zone-v1", backend="onnxruntime", budget_ms=50.0, ring_slots=8, ring_used=3
)


class _Families:
    """A collector that yields fixed families (what the registry serialises)."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def wire(metrics: Sequence[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The families as a scraper sees them: sample (name, sorted labels) -> value, parsed from the text."""
    registry = CollectorRegistry()
    registry.register(_Families(metrics))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


NO_BOARD = BoardReading()


def scrape(s: Snapshot, bins: Sequence[int] = (), run: RunView = RUN, board: BoardReading = NO_BOARD,
           monotonic: Any = None, more: Histograms | None = None,
           ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # fmt: skip
    """One scrape of the families built from these inputs, as parsed from the text exposition."""
    bins = list(bins) or [0] * histogram.BINS
    if more is not None:
        return wire(families(s, bins, run, board, "9.9.9", monotonic or HighWater(), more))
    args = (monotonic,) if monotonic is not None else ()
    return wire(families(s, bins, run, board, "9.9.9", *args))


def bins_of(samples_ns: Sequence[int]) -> list[int]:
    """Run histogram bins counting *samples_ns*."""
    bins = [0] * histogram.BINS
    for ns in samples_ns:
        bins[histogram.bin_of(ns)] += 1
    return bins


def buckets_of(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
               **labels: str) -> dict[str, float]:  # fmt: skip
    """le -> cumulative count of histogram *name*'s series with *labels*."""
    out = {}
    for (sample, sample_labels), value in got.items():
        as_dict = dict(sample_labels)
        le = as_dict.pop("le", None)
        if sample == f"{name}_bucket" and as_dict == labels and le is not None:
            out[le] = value
    return out


def test_every_plain_counter_and_gauge_carries_its_own_counter() -> None:
    """Each counter is exported as NAME_total and each gauge as NAME with exactly its counter's value."""
    values = {count: 1000 + i for i, (_, count, _) in enumerate(PLAIN_COUNTERS + PLAIN_GAUGES)}
    got = scrape(Snapshot.of(values))
    for name, count, _ in PLAIN_COUNTERS:
        assert got[(f"{name}_total", ())] == values[count], name
    for name, count, _ in PLAIN_GAUGES:
        assert got[(name, ())] == values[count], name
    names = [name for name, _, _ in PLAIN_COUNTERS + PLAIN_GAUGES]
    assert len(set(names)) == len(names) and all(n.startswith("linegate_") for n in names)


def test_verdicts_by_verdict_and_by_basis_add_up() -> None:
    """Pass/reject come straight from the counters; by basis, model = verdicts - fail-safe, and the fail-safe
    verdicts not named by a counter of their own are dropped_or_lost; the bases sum to every verdict."""
    s = Snapshot.of({
        Count.PASSED: 700, Count.REJECTED: 300, Count.FAIL_SAFE: 40, Count.DEADLINE_MISSED: 5,
        Count.DEADLINE_UNREACHABLE: 7, Count.ENGINE_ERRORS: 2, Count.INCOMPLETE_FRAMES: 1,
    })  # fmt: skip
    got = scrape(s)
    assert got[("linegate_verdicts_total", (("verdict", "pass"),))] == 700
    assert got[("linegate_verdicts_total", (("verdict", "reject"),))] == 300
    by_basis = {labels[0][1]: v for (name, labels), v in got.items() if name == "linegate_verdicts_by_basis_total"}
    assert by_basis == {
        "model": 960, "deadline_missed": 5, "deadline_unreachable": 7, "engine_error": 2, "incomplete_frame": 1,
        "dropped_or_lost": 25,
    }  # fmt: skip
    assert sum(by_basis.values()) == 1000
    assert got[("linegate_deadline_misses_total", (("kind", "missed"),))] == 5
    assert got[("linegate_deadline_misses_total", (("kind", "unreachable"),))] == 7


def test_undelivered_rejects_by_reason_sum_to_what_status_reports() -> None:
    """Undelivered = PLC-side undelivered + queue-full at the hand-off, split into the reasons the counters know."""
    s = Snapshot.of({Count.PLC_UNDELIVERED: 9, Count.PLC_DELIVERY_UNKNOWN: 2, Count.PLC_QUEUE_FULL: 4})
    got = scrape(s)
    reasons = {labels[0][1]: v for (name, labels), v in got.items() if name == "linegate_plc_rejects_undelivered_total"}
    assert reasons == {"plc_queue_full": 4, "delivery_unknown": 2, "other": 7}


def test_a_counter_derived_from_two_never_goes_down() -> None:
    """A snapshot taken between a verdict's count and its fail-safe count over-counts model verdicts by one;
    the next scrape keeps that value instead of going down (a drop would read as a counter reset)."""
    high_water = HighWater()
    sequence = [
        {Count.PASSED: 10},  # the 10th verdict counted, its fail-safe mark not yet: model 10
        {Count.PASSED: 10, Count.FAIL_SAFE: 1, Count.DEADLINE_MISSED: 1},  # complete: model 9, kept at 10
        {Count.PASSED: 12, Count.FAIL_SAFE: 1, Count.DEADLINE_MISSED: 1},  # two model verdicts later: 11
    ]
    model = [
        scrape(Snapshot.of(v), monotonic=high_water)[("linegate_verdicts_by_basis_total", (("basis", "model"),))]
        for v in sequence
    ]
    assert model == [10, 10, 11]


def test_latency_histogram_buckets_are_cumulative_counts_below_each_bound() -> None:
    """Each bucket counts exactly the samples below its bound; +Inf and _count are every sample, over-range
    included; bounds rise and the one for 50 ms is within one bin's half width of it. Samples sit 1% either side
    of every bound (the bins around it), and under and over the histogram's range."""
    samples_ms = [0.004, 0.3, 0.7, 1.5, 3.0, 8.0, 45.0, 52.0, 80.0, 2_000.0, 20_000.0]
    samples_ms += [edge_s * 1e3 * f for _, edge_s in BUCKETS for f in (0.99, 1.01)]
    bins = [0] * histogram.BINS
    for ms in samples_ms:
        bins[histogram.bin_of(int(ms * 1e6))] += 1
    got = scrape(Snapshot.of({}), bins)
    buckets = {labels[0][1]: v for (name, labels), v in got.items() if name == "linegate_frame_latency_seconds_bucket"}
    bounds = [float(le) for le in buckets if le != "+Inf"]
    assert bounds == sorted(bounds) and len(bounds) == len(BUCKETS)
    for le, count in buckets.items():
        assert count == sum(ms / 1e3 < float(le) for ms in samples_ms), le
    assert got[("linegate_frame_latency_seconds_count", ())] == len(samples_ms)
    assert min(abs(b - 0.050) for b in bounds) <= 0.050 * (10 ** (0.5 / histogram.PER_DECADE) - 1)


def test_latency_sum_is_estimated_within_the_bin_width() -> None:
    """The exported sum (from bin centres) is within 4% of the true sum for samples inside the histogram's range."""
    samples_ns = [137_000 + 7_919 * i for i in range(2_000)]
    bins = [0] * histogram.BINS
    for ns in samples_ns:
        bins[histogram.bin_of(ns)] += 1
    exported = scrape(Snapshot.of({}), bins)[("linegate_frame_latency_seconds_sum", ())]
    assert math.isclose(exported, sum(samples_ns) / 1e9, rel_tol=0.04)


def test_run_view_and_identity() -> None:
    """Ready, faults, ring use, budget, the model and version as info metrics, the active recipe."""
    run = RunView(ready=False, faults=2, model_id="m-7", backend="tensorrt", budget_ms=40.0, ring_slots=16, ring_used=5)
    got = scrape(Snapshot.of({Count.ACTIVE_RECIPE: 4, Count.LATENCY_P99_US: 1_250}), run=run)
    assert got[("linegate_ready", ())] == 0 and got[("linegate_faults", ())] == 2
    assert got[("linegate_ring_slots", ())] == 16 and got[("linegate_ring_slots_used", ())] == 5
    assert got[("linegate_deadline_budget_seconds", ())] == 0.04
    assert got[("linegate_model_info", (("backend", "tensorrt"), ("model", "m-7")))] == 1
    assert got[("linegate_build_info", (("version", "9.9.9"),))] == 1
    assert got[("linegate_active_recipe", ())] == 3
    assert got[("linegate_frame_latency_recent_seconds", (("quantile", "0.99"),))] == 0.00125


def test_board_metrics_only_where_the_board_has_them() -> None:
    """Without readings no board family is exported; with them, one sample per zone, the load and the mode."""
    bare = scrape(Snapshot.of({}))
    assert not [k for k in bare if k[0].startswith(("linegate_thermal", "linegate_gpu", "linegate_power"))]
    board = BoardReading((ThermalZone("thermal_zone1", "gpu-thermal", 45.5),), 0.25, PowerMode(2, "MAXN_SUPER"))
    got = scrape(Snapshot.of({}), board=board)
    assert got[("linegate_thermal_zone_celsius", (("type", "gpu-thermal"), ("zone", "thermal_zone1")))] == 45.5
    assert got[("linegate_gpu_load_ratio", ())] == 0.25
    assert got[("linegate_power_mode_info", (("id", "2"), ("name", "MAXN_SUPER")))] == 1


def test_collector_reads_the_shared_counters_at_each_scrape(tmp_path: Path) -> None:
    """The collector holds no copy: a counter written between two scrapes shows in the second, as do the
    latency histogram and the board files under its root."""
    counters = SharedCounters.create(mp.get_context("spawn"))
    (tmp_path / "sys/devices/platform/gpu.0").mkdir(parents=True)
    (tmp_path / "sys/devices/platform/gpu.0/load").write_text("500\n")
    collector = LinegateCollector(counters, lambda: RUN, BoardStats(tmp_path))
    first = wire(list(collector.collect()))
    counters.add(Count.DECIDED, 42)
    counters.add_latency(3_000_000)
    second = wire(list(collector.collect()))
    assert first[("linegate_frames_decided_total", ())] == 0 and second[("linegate_frames_decided_total", ())] == 42
    assert second[("linegate_frame_latency_seconds_count", ())] == 1
    assert second[("linegate_gpu_load_ratio", ())] == 0.5
    assert second[("linegate_build_info", (("version", __version__),))] == 1


class _Log:
    """Records the structured events it is given (the supervisor's logger has the same two methods)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.events.append(("info", event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self.events.append(("error", event, fields))


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_server_serves_the_collector_and_releases_its_port_on_stop() -> None:
    """GET /metrics returns the collector's families; after stop the port is closed and can be bound again."""
    counters = SharedCounters.create(mp.get_context("spawn"))
    counters.add(Count.ACQUIRED, 7)
    port = free_port()
    log = _Log()
    collector = LinegateCollector(counters, lambda: RUN, BoardStats(Path("/nonexistent")))
    server = serve_metrics(MetricsSection(port=port), collector, log)
    assert server is not None
    assert log.events == [("info", "metrics_listening", {"url": f"http://127.0.0.1:{port}/metrics"})]
    text = _get(server.url)
    assert "linegate_frames_acquired_total 7.0" in text.splitlines()
    server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    again = MetricsServer(LinegateCollector(counters, lambda: RUN), "127.0.0.1", port)
    again.stop()


def test_port_in_use_is_logged_with_its_key_and_is_not_fatal() -> None:
    """A port another process listens on gives metrics_unavailable naming metrics.port, and no server."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        log = _Log()
        collector = LinegateCollector(SharedCounters.create(mp.get_context("spawn")), lambda: RUN)
        assert serve_metrics(MetricsSection(port=port), collector, log) is None
    ((level, event, fields),) = log.events
    assert (level, event, fields["key"], fields["port"]) == ("error", "metrics_unavailable", "metrics.port", port)
    assert "already in use" in fields["reason"]


def test_disabled_metrics_start_nothing() -> None:
    """enabled = false: no server, nothing logged."""
    log = _Log()
    collector = LinegateCollector(SharedCounters.create(mp.get_context("spawn")), lambda: RUN)
    assert serve_metrics(MetricsSection(enabled=False), collector, log) is None and log.events == []


def test_an_address_not_on_this_host_names_the_host_key() -> None:
    """Binding an address this host does not have is reported against metrics.host."""
    with pytest.raises(OSError) as info:
        MetricsServer(LinegateCollector(SharedCounters.create(mp.get_context("spawn")), lambda: RUN), "192.0.2.1", 9)
    key, reason = unavailable(info.value, "192.0.2.1", 9)
    assert key == "metrics.host" and "192.0.2.1" in reason


def test_metrics_section_defaults_to_loopback() -> None:
    """Enabled on 127.0.0.1:9108 unless configured otherwise; a port outside 1..65535 or a URL as host is refused."""
    assert MetricsSection() == MetricsSection(enabled=True, host="127.0.0.1", port=9108)
    for bad in ({"port": 0}, {"port": 65536}, {"host": "http://0.0.0.0"}, {"bind": "x"}):
        with pytest.raises(pydantic.ValidationError):
            MetricsSection.model_validate(bad)


def test_a_bad_metrics_key_in_a_file_is_named(tmp_path: Path) -> None:
    """A wrong [metrics] value in a configuration file names the key."""
    from tests.pipeline.harness import demo_config_file

    path, _ = demo_config_file(tmp_path, 5020, {"port = 9108": "port = 99999"})
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        load_config(path)


def test_changing_metrics_needs_a_restart(tmp_path: Path) -> None:
    """A reload cannot apply a [metrics] change: the plan names the key as needing a restart."""
    from tests.pipeline.harness import demo_config_file

    old = load_config(demo_config_file(tmp_path, 5020)[0])
    new = old.model_copy(update={"metrics": MetricsSection(enabled=True, port=9200)})
    plan = plan_reload(old, new)
    assert set(plan.needs_restart) == {"metrics.enabled", "metrics.port"} and plan.replace == ()


def test_archive_metrics_only_when_the_archive_is_on() -> None:
    """The archive writer's outcomes as one counter by outcome, its size as a gauge; none when off."""
    off = scrape(Snapshot.of({}))
    assert not any(name.startswith("linegate_archive") for name, _ in off)
    stats = {"written": 40, "dropped_queue_full": 3, "dropped_write_error": 2, "dropped_invalid": 0,
             "archive_bytes": 123_456, "evicted": 7}  # fmt: skip
    run = RunView(ready=True, faults=0, model_id="m", backend="onnxruntime", budget_ms=50.0, ring_slots=8,
                  ring_used=0, archive=stats)  # fmt: skip
    got = scrape(Snapshot.of({}), run=run)
    assert got[("linegate_archive_images_total", (("outcome", "written"),))] == 40
    assert got[("linegate_archive_images_total", (("outcome", "dropped_queue_full"),))] == 3
    assert got[("linegate_archive_images_total", (("outcome", "dropped_write_error"),))] == 2
    assert got[("linegate_archive_bytes", ())] == 123_456
    assert got[("linegate_archive_evicted_total", ())] == 7


def test_stage_histograms_one_series_per_stage_with_the_frame_latency_bounds() -> None:
    """Each stage's series counts exactly its own samples below each bound (the frame latency's bounds), its
    count is every sample of that stage, its sum is estimated within 4%; a stage with no samples is all zero."""
    samples = {stage: [20_000 * (i + 1) + 997 * k for k in range(40 * (i + 1))] for i, stage in enumerate(STAGES)}
    samples["handoff"] = []
    more = Histograms(stages={stage: bins_of(ns) for stage, ns in samples.items()})
    got = scrape(Snapshot.of({}), more=more)
    frame_bounds = list(buckets_of(got, "linegate_frame_latency_seconds"))
    for stage, ns in samples.items():
        buckets = buckets_of(got, "linegate_stage_latency_seconds", stage=stage)
        assert list(buckets) == frame_bounds, stage
        for le, count in buckets.items():
            assert count == sum(x / 1e9 < float(le) for x in ns), (stage, le)
        assert got[("linegate_stage_latency_seconds_count", (("stage", stage),))] == len(ns)
        total = got[("linegate_stage_latency_seconds_sum", (("stage", stage),))]
        assert math.isclose(total, sum(ns) / 1e9, rel_tol=0.04) if ns else total == 0
    assert {dict(labels).get("stage") for name, labels in got if name.startswith("linegate_stage_latency")} == set(
        STAGES
    )


def test_stage_and_plc_histograms_are_there_with_nothing_counted() -> None:
    """Before the first frame (or without readings) every series is exported at zero: a rate() has a start."""
    got = scrape(Snapshot.of({}))
    for stage in STAGES:
        assert got[("linegate_stage_latency_seconds_count", (("stage", stage),))] == 0
    assert got[("linegate_plc_write_latency_seconds_count", ())] == 0
    assert got[("linegate_plc_write_latency_seconds_bucket", (("le", "+Inf"),))] == 0
    assert got[("linegate_verdicts_by_class_total", (("class", OTHER_CLASS),))] == 0


def test_plc_write_latency_histogram() -> None:
    """The PLC write round trips as a histogram with the frame latency's bounds: cumulative, exact counts."""
    samples_ns = [400_000, 900_000, 1_100_000, 1_900_000, 2_500_000, 7_000_000, 30_000_000, 400_000_000]
    got = scrape(Snapshot.of({}), more=Histograms(plc_write=bins_of(samples_ns)))
    buckets = buckets_of(got, "linegate_plc_write_latency_seconds")
    assert list(buckets) == list(buckets_of(got, "linegate_frame_latency_seconds"))
    for le, count in buckets.items():
        assert count == sum(ns / 1e9 < float(le) for ns in samples_ns), le
    assert got[("linegate_plc_write_latency_seconds_count", ())] == len(samples_ns)


def test_verdicts_by_class_are_named_from_the_running_models_classes() -> None:
    """Each class position is exported under its name; positions past the names and the overflow cell are
    (other); the classes add up to every count."""
    counts = [0] * (MAX_CLASSES + 1)
    counts[0], counts[1], counts[2], counts[5], counts[CLASS_OTHER] = 70, 25, 4, 2, 1
    run = RunView(ready=True, faults=0, model_id="m", backend="onnxruntime", budget_ms=50.0, ring_slots=8,
                  ring_used=0, classes=("good", "scratch", "dent"))  # fmt: skip
    got = scrape(Snapshot.of({}), run=run, more=Histograms(classes=counts))
    by_class = {labels[0][1]: v for (name, labels), v in got.items() if name == "linegate_verdicts_by_class_total"}
    assert by_class == {"good": 70, "scratch": 25, "dent": 4, OTHER_CLASS: 3}
    assert sum(by_class.values()) == sum(counts)


def test_more_classes_than_counted_go_to_other() -> None:
    """A model with more than MAX_CLASSES classes: the first MAX_CLASSES are named, the rest are (other)."""
    names = tuple(f"c{i}" for i in range(MAX_CLASSES + 4))
    counts = [1] * MAX_CLASSES + [9]
    run = RunView(ready=True, faults=0, model_id="m", backend="onnxruntime", budget_ms=50.0, ring_slots=8,
                  ring_used=0, classes=names)  # fmt: skip
    got = scrape(Snapshot.of({}), run=run, more=Histograms(classes=counts))
    by_class = {labels[0][1]: v for (name, labels), v in got.items() if name == "linegate_verdicts_by_class_total"}
    assert by_class == {**{f"c{i}": 1 for i in range(MAX_CLASSES)}, OTHER_CLASS: 9}


def test_collector_reads_the_stage_plc_and_class_cells_at_each_scrape() -> None:
    """The collector reads the stage, PLC write and class cells of the shared counters at each scrape."""
    counters = SharedCounters.create(mp.get_context("spawn"))
    run = RunView(ready=True, faults=0, model_id="m", backend="onnxruntime", budget_ms=50.0, ring_slots=8,
                  ring_used=0, classes=("pass", "reject"))  # fmt: skip
    collector = LinegateCollector(counters, lambda: run, BoardStats(Path("/nonexistent")))
    first = wire(list(collector.collect()))
    counters.add_stage_latencies(50_000, 100_000, 700_000, 4_000_000, 60_000, 30_000)
    counters.add_stage_latencies(50_000, 100_000, 700_000, 4_000_000, 60_000, 30_000)
    counters.add_class_verdict(1)
    counters.add_class_verdict(0)
    counters.add_class_verdict(1)
    counters.add_plc_write_latency(1_800_000)
    second = wire(list(collector.collect()))
    for stage in STAGES:
        key = ("linegate_stage_latency_seconds_count", (("stage", stage),))
        assert first[key] == 0 and second[key] == 2, stage
    assert second[("linegate_stage_latency_seconds_bucket", (("le", "0.00487"), ("stage", "infer")))] == 2
    assert second[("linegate_stage_latency_seconds_bucket", (("le", "0.002054"), ("stage", "infer")))] == 0
    assert second[("linegate_verdicts_by_class_total", (("class", "reject"),))] == 2
    assert second[("linegate_verdicts_by_class_total", (("class", "pass"),))] == 1
    assert first[("linegate_plc_write_latency_seconds_count", ())] == 0
    assert second[("linegate_plc_write_latency_seconds_count", ())] == 1


def test_with_several_cameras_totals_sum_them_and_each_camera_has_its_own_series(tmp_path: Path) -> None:
    """[[cameras]]: the run's counters are every camera's summed, and the linegate_per_camera_* families
    carry one sample per camera (frames, rejects, deliveries, down, PLC link, inspecting)."""
    ctx = mp.get_context("spawn")
    left, right = SharedCounters.create(ctx), SharedCounters.create(ctx)
    left.add(Count.ACQUIRED, 10)
    left.add(Count.REJECTED, 3)
    left.add(Count.PLC_DELIVERED, 3)
    left.set(Count.PLC_CONNECTED, 1)
    left.set(Count.INSPECTING, 1)
    left.add_plc_write_latency(2_000_000)
    right.add(Count.ACQUIRED, 5)
    right.add(Count.REJECTED, 2)
    right.add(Count.PLC_UNDELIVERED, 2)
    right.set(Count.CAMERA_DOWN, 1)
    right.add_plc_write_latency(3_000_000)
    collector = LinegateCollector(left, lambda: RUN, BoardStats(tmp_path), cameras=[("left", left), ("right", right)])
    got = wire(list(collector.collect()))
    assert got[("linegate_frames_acquired_total", ())] == 15
    assert got[("linegate_plc_write_latency_seconds_count", ())] == 2
    per = {(n, dict(labels)["camera"]): v for (n, labels), v in got.items() if n.startswith("linegate_per_camera_")}
    assert per[("linegate_per_camera_frames_total", "left")] == 10
    assert per[("linegate_per_camera_frames_total", "right")] == 5
    assert per[("linegate_per_camera_rejects_total", "right")] == 2
    assert per[("linegate_per_camera_plc_delivered_total", "left")] == 3
    assert per[("linegate_per_camera_plc_undelivered_total", "right")] == 2
    assert (per[("linegate_per_camera_down", "left")], per[("linegate_per_camera_down", "right")]) == (0, 1)
    assert (per[("linegate_per_camera_inspecting", "left")], per[("linegate_per_camera_inspecting", "right")]) == (1, 0)
    assert per[("linegate_per_camera_plc_connected", "left")] == 1
    single = wire(list(LinegateCollector(left, lambda: RUN, BoardStats(tmp_path)).collect()))
    assert not any(name.startswith("linegate_per_camera_") for name, _ in single)
