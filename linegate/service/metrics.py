"""Prometheus metrics, built at scrape time from one snapshot of the shared counters (pure).

Nothing here runs per frame: on each scrape the supervisor's HTTP thread calls
:meth:`LinegateCollector.collect`, which reads the counters, the run-long latency histogram, what
the supervisor knows (:class:`RunView`) and the board's sysfs files, and :func:`families` turns
them into metric families. Counters are the workers' own reconciliation counters: a scrape shows
what the ``run_summary`` record will show, at that moment.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from linegate import __version__
from linegate.counters import CLASS_OTHER, MAX_CLASSES, STAGES, Count, SharedCounters, Snapshot
from linegate.service.jetson_stats import BoardReading, BoardStats
from linegate.timing import histogram

LATENCY_TARGETS_MS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 40, 50, 75, 100, 200, 500, 1000)
"""Bucket bounds asked for (a 50 ms budget: fine below it, a few past it); each becomes the
nearest edge of the run histogram's bins (at most 3.7% away), so every bucket count is exact."""


@dataclass(frozen=True)
class RunView:
    """What the supervisor knows beyond the counters, read at scrape time."""

    ready: bool
    """READY=1 was sent (every worker up once) and no stop has begun."""
    faults: int
    """Reasons linegate is not inspecting right now (as in STATUS)."""
    model_id: str
    backend: str
    budget_ms: float
    ring_slots: int
    ring_used: int
    """Slots holding a frame (being written, waiting, or being decided)."""
    archive: Mapping[str, int] = field(default_factory=dict)
    """The image archive writer's counters (:meth:`linegate.archive.writer.ArchiveWriter.stats`); empty when off."""
    classes: tuple[str, ...] = ()
    """The running model's ``postprocess.classes``: the names of the per-class verdict counters."""


@dataclass(frozen=True)
class Histograms:
    """The run-long histograms and per-class counts beyond the frame latency (empty: all zero)."""

    stages: Mapping[str, Sequence[int]] = field(default_factory=dict)
    """Bins of each stage in :data:`linegate.counters.STAGES`, by name."""
    plc_write: Sequence[int] = ()
    """Bins of the PLC write round trip."""
    classes: Sequence[int] = ()
    """Model-decided frames by class position (:meth:`SharedCounters.class_verdicts`)."""

    @classmethod
    def of(cls, counters: SharedCounters) -> Histograms:
        """Everything read from the shared counters now."""
        return cls(counters.stage_bins(), counters.plc_write_bins(), counters.class_verdicts())


# (name, counter, help) for counters exported as they are. The names get ``_total`` on the wire.
PLAIN_COUNTERS: tuple[tuple[str, Count, str], ...] = (
    ("linegate_frames_acquired", Count.ACQUIRED,
     "Frames taken from the camera since start; each ends decided, dropped or reported lost."),
    ("linegate_frames_decided", Count.DECIDED,
     "Frames the inference loop gave a verdict (by the model, or fail-safe: late, engine error, incomplete)."),
    ("linegate_frames_dropped", Count.DROPPED,
     "Frames the ring dropped (full, or half-written by a dying acquisition worker): fail-safe verdict, no model."),
    ("linegate_engine_errors", Count.ENGINE_ERRORS,
     "Frames the model failed on (exception in pre/postprocessing or inference): fail-safe verdict."),
    ("linegate_camera_frames_lost", Count.CAMERA_LOST,
     "Frames the camera numbered but never delivered (network drops): parts not inspected."),
    ("linegate_camera_timeouts", Count.CAMERA_TIMEOUTS,
     "Camera fetches that timed out (no frame within camera.fetch_timeout_ms); restarts with its worker."),
    ("linegate_camera_reconnects", Count.CAMERA_RECONNECTS, "Times the camera was lost and reopened."),
    ("linegate_ring_journal_overflows", Count.JOURNAL_OVERFLOW,
     "Dropped frames whose header did not fit the drop journal (raise ring.journal_size)."),
    ("linegate_plc_rejects_delivered", Count.PLC_DELIVERED,
     "Rejects the PLC took (pulse fired or result acknowledged)."),
    ("linegate_plc_retries", Count.PLC_RETRIES, "PLC writes repeated after a failed or unanswered attempt."),
    ("linegate_plc_reconnects", Count.PLC_RECONNECTS, "Connections made to the PLC, the first one included."),
    ("linegate_plc_late", Count.PLC_LATE,
     "Rejects that could no longer reach the PLC within plc.max_late_ms of their due time (reported undelivered)."),
    ("linegate_plc_result_writes", Count.PLC_RESULT_WRITES,
     "Handshake: writes of the vision block carrying a result (first writes and re-writes)."),
    ("linegate_plc_read_backs", Count.PLC_READ_BACKS, "PLC writes whose reply did not come, resolved by reading back."),
    ("linegate_plc_encoder_slow_reads", Count.PLC_ENCODER_SLOW_READS,
     "Encoder tracking: readings that place no part (request to reply took over tracking.max_read_ms)."),
    ("linegate_plc_late_acks", Count.PLC_LATE_ACKS,
     "Handshake: acknowledgements that came after the result was reported undelivered (check those parts)."),
    ("linegate_plc_results_buffer_overruns", Count.PLC_OVERRUNS,
     "Handshake: results reported undelivered because plc.handshake.buffer results already waited."),
    ("linegate_plc_pass_results_delivered", Count.PLC_PASS_DELIVERED,
     "Handshake with results = all: pass results the PLC acknowledged."),
    ("linegate_worker_restarts", Count.WORKER_RESTARTS, "Worker processes restarted after dying or stalling."),
    ("linegate_worker_stalls", Count.WORKER_STALLS, "Workers killed because their loop stopped turning."),
    ("linegate_reloads", Count.RELOADS, "Configuration reloads (SIGHUP, recipe changes) applied."),
    ("linegate_reload_failures", Count.RELOAD_FAILURES, "Configuration reloads refused; nothing changed."),
)

# (name, counter, help) for 0/1 states and levels exported as they are.
PLAIN_GAUGES: tuple[tuple[str, Count, str], ...] = (
    ("linegate_inspecting", Count.INSPECTING,
     "1 while every worker runs and nothing is at fault (the PLC's fault output is off); 0: parts not inspected."),
    ("linegate_camera_down", Count.CAMERA_DOWN, "1 while the camera is lost and being reopened."),
    ("linegate_plc_connected", Count.PLC_CONNECTED,
     "1 while the PLC connection is up (after connections lost right after being made: once one holds 1 s)."),
    ("linegate_plc_pending", Count.PLC_PENDING, "Rejects (and results) waiting for the PLC right now."),
    ("linegate_plc_alive_stale", Count.PLC_ALIVE_STALE,
     "Handshake: 1 while the PLC's alive counter has stopped (its program is not taking results)."),
    ("linegate_plc_offline", Count.PLC_OFFLINE, "Handshake: 1 while the PLC's control word switched linegate offline."),
    ("linegate_plc_fault_output", Count.PLC_FAULT, "The fault state last written to the PLC (1: not inspecting)."),
)


class HighWater:
    """Keeps a counter computed as a difference of two counters from ever going down: the two are
    written a moment apart, so one snapshot may see one without the other (a one-frame blip that
    Prometheus would take for a reset)."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(self, key: str, value: int) -> int:
        value = max(value, self._seen.get(key, 0))
        self._seen[key] = value
        return value


def latency_buckets(targets_ms: Sequence[float] = LATENCY_TARGETS_MS) -> tuple[tuple[int, float], ...]:
    """For each target, the nearest bin edge of the run histogram: (index k, edge in seconds).

    Bins 0..k hold exactly the samples below edge k."""
    out: dict[int, float] = {}
    for target in targets_ms:
        k = round(math.log10(target * 1e6 / histogram.LOW_NS) * histogram.PER_DECADE)
        k = min(max(k, 0), histogram.BINS - 2)
        out[k] = histogram.LOW_NS * 10 ** (k / histogram.PER_DECADE) / 1e9
    return tuple(sorted(out.items()))


BUCKETS = latency_buckets()


BOUNDS_DOC = (
    f"Bucket bounds are the run histogram's bin edges nearest {', '.join(f'{t:g}' for t in LATENCY_TARGETS_MS)} ms; "
    "the sum is estimated from bin centres (within about 4%)."
)


def prometheus_buckets(bins: Sequence[int]) -> tuple[list[tuple[str, float]], float]:
    """Run histogram bins as cumulative Prometheus buckets (:data:`BUCKETS`, then +Inf) and the estimated sum (s)."""
    bins = list(bins) or [0] * histogram.BINS
    cumulative, buckets, k0 = 0, [], 0
    for k, edge_s in BUCKETS:
        cumulative += sum(bins[k0 : k + 1])
        k0 = k + 1
        buckets.append((f"{edge_s:.4g}", float(cumulative)))
    buckets.append(("+Inf", float(sum(bins))))
    estimated_sum = sum(c * histogram.bin_mid_ns(i) for i, c in enumerate(bins) if c) / 1e9
    return buckets, estimated_sum


def latency_histogram(bins: Sequence[int]) -> HistogramMetricFamily:
    """The run-long histogram as cumulative Prometheus buckets; the sum is estimated from bin centres."""
    buckets, estimated_sum = prometheus_buckets(bins)
    return HistogramMetricFamily(
        "linegate_frame_latency_seconds",
        "Acquisition to verdict hand-off, every frame the inference loop decided since start. " + BOUNDS_DOC,
        buckets=buckets,
        sum_value=estimated_sum,
    )


def stage_histograms(stages: Mapping[str, Sequence[int]]) -> HistogramMetricFamily:
    """One histogram per stage of the frames the model decided (labelled ``stage``), same bounds as the frame's."""
    family = HistogramMetricFamily(
        "linegate_stage_latency_seconds",
        "Each stage of every frame the model decided since start (basis model), as its frame record times it: "
        "write (acquired to in the ring), queued (in the ring to picked), preprocess, infer, postprocess (the "
        "first model's), handoff (verdict to handed off). " + BOUNDS_DOC,
        labels=["stage"],
    )
    for stage in STAGES:
        buckets, estimated_sum = prometheus_buckets(stages.get(stage, ()))
        family.add_metric([stage], buckets, estimated_sum)
    return family


def plc_write_histogram(bins: Sequence[int]) -> HistogramMetricFamily:
    """The round trip of the PLC writes that deliver a result."""
    buckets, estimated_sum = prometheus_buckets(bins)
    return HistogramMetricFamily(
        "linegate_plc_write_latency_seconds",
        "Round trip (request sent to reply) of each PLC write delivering a result that the PLC answered: pulse "
        "mode, a reject's part id and output ON writes; handshake mode, each write of the vision block carrying a "
        "result (re-writes included). " + BOUNDS_DOC,
        buckets=buckets,
        sum_value=estimated_sum,
    )


OTHER_CLASS = "(other)"
"""The class label of model verdicts whose label is not one of the first MAX_CLASSES classes."""


def class_verdicts(names: Sequence[str], counts: Sequence[int]) -> CounterMetricFamily:
    """Model-decided frames by class name; ``(other)`` for positions past the names or MAX_CLASSES."""
    counts = list(counts) or [0] * (MAX_CLASSES + 1)
    named = list(names)[:MAX_CLASSES]
    family = CounterMetricFamily(
        "linegate_verdicts_by_class",
        "Frames the model decided (basis model), by the class it labelled them: the name at that position in the "
        f"running model's postprocess.classes (after a recipe change, the new model's names). {OTHER_CLASS}: a "
        f"label past the first {MAX_CLASSES} classes or of a further stage ([[stages]]) only.",
        labels=["class"],
    )
    for i, name in enumerate(named):
        family.add_metric([name], counts[i])
    family.add_metric([OTHER_CLASS], sum(counts[len(named) : MAX_CLASSES]) + counts[CLASS_OTHER])
    return family


def families(
    s: Snapshot,
    latency_bins: Sequence[int],
    run: RunView,
    board: BoardReading,
    version: str = __version__,
    monotonic: Callable[[str, int], int] = lambda _key, value: max(value, 0),
    more: Histograms = Histograms(),
) -> list[Metric]:
    """Every metric family of one scrape (*more*: the stage and PLC write histograms, the class counts)."""
    c = Count
    out: list[Metric] = []
    for name, count, doc in PLAIN_COUNTERS:
        out.append(CounterMetricFamily(name, doc, value=s[count]))
    for name, count, doc in PLAIN_GAUGES:
        out.append(GaugeMetricFamily(name, doc, value=s[count]))

    verdicts = CounterMetricFamily("linegate_verdicts", "Verdicts given, by verdict.", labels=["verdict"])
    verdicts.add_metric(["pass"], s[c.PASSED])
    verdicts.add_metric(["reject"], s[c.REJECTED])
    fail_safe_known = {
        "deadline_missed": s[c.DEADLINE_MISSED],
        "deadline_unreachable": s[c.DEADLINE_UNREACHABLE],
        "engine_error": s[c.ENGINE_ERRORS],
        "incomplete_frame": s[c.INCOMPLETE_FRAMES],
    }
    by_basis = {
        "model": monotonic("basis_model", s[c.PASSED] + s[c.REJECTED] - s[c.FAIL_SAFE]),
        **fail_safe_known,
        "dropped_or_lost": monotonic("basis_dropped_or_lost", s[c.FAIL_SAFE] - sum(fail_safe_known.values())),
    }
    basis = CounterMetricFamily(
        "linegate_verdicts_by_basis",
        "Verdicts by what decided them: the model, or the fail-safe verdict for a frame that was late "
        "(deadline_missed, deadline_unreachable), failed in the engine, arrived incomplete, was dropped by a full "
        "ring or lost in a worker crash (dropped_or_lost; the frame records tell which).",
        labels=["basis"],
    )
    for key, value in by_basis.items():
        basis.add_metric([key], value)
    misses = CounterMetricFamily(
        "linegate_deadline_misses",
        "Frames not decided by the model within deadline.budget_ms: the model answered late (missed) or too little "
        "time was left to start it (unreachable); each got the fail-safe verdict.",
        labels=["kind"],
    )
    misses.add_metric(["missed"], s[c.DEADLINE_MISSED])
    misses.add_metric(["unreachable"], s[c.DEADLINE_UNREACHABLE])
    lost = CounterMetricFamily(
        "linegate_frames_reported_lost",
        "Frames acquired that never reached a verdict and were reported by part id instead: the ring lock timed out "
        "or a killed acquisition worker had them. Acquired = decided + dropped + these.",
        labels=["why"],
    )
    lost.add_metric(["ring_lock_timeout"], s[c.RING_LOCK_TIMEOUTS])
    lost.add_metric(["acquisition_worker_killed"], s[c.ACQ_LOST])
    undelivered = CounterMetricFamily(
        "linegate_plc_rejects_undelivered",
        "Rejects that did not reach the PLC: pull those parts by hand (reject_undelivered records name them). "
        "plc_queue_full: the hand-off to the PLC worker was full; delivery_unknown: no reply and no read-back in "
        "time; other: unreachable, too late, not acknowledged, refused... (the records give the reason).",
        labels=["reason"],
    )
    undelivered.add_metric(["plc_queue_full"], s[c.PLC_QUEUE_FULL])
    undelivered.add_metric(["delivery_unknown"], s[c.PLC_DELIVERY_UNKNOWN])
    undelivered.add_metric(["other"], monotonic("undelivered_other", s[c.PLC_UNDELIVERED] - s[c.PLC_DELIVERY_UNKNOWN]))
    out += [verdicts, basis, class_verdicts(run.classes, more.classes), misses, lost, undelivered]
    out.append(CounterMetricFamily(
        "linegate_plc_pass_results_undelivered",
        "Handshake with results = all: pass results the PLC did not get (no part to pull: it diverts the part).",
        value=s[c.PLC_PASS_UNDELIVERED] + s[c.PLC_PASS_QUEUE_FULL],
    ))
    logs = CounterMetricFamily(
        "linegate_log_records_lost",
        "Log records lost: dropped at a full pipe (pipe_full) or not written to the outputs (write_failed).",
        labels=["why"],
    )
    logs.add_metric(["pipe_full"], s.log_queue_full)
    logs.add_metric(["write_failed"], s.log_write_failed)
    out.append(logs)

    out.append(latency_histogram(latency_bins))
    out.append(stage_histograms(more.stages))
    out.append(plc_write_histogram(more.plc_write))
    window = GaugeMetricFamily(
        "linegate_frame_latency_recent_seconds",
        "Acquisition to verdict over the last few thousand frames, by quantile (updated each second).",
        labels=["quantile"],
    )
    window.add_metric(["0.5"], s[c.LATENCY_P50_US] / 1e6)
    window.add_metric(["0.99"], s[c.LATENCY_P99_US] / 1e6)
    out.append(window)
    out.append(GaugeMetricFamily(
        "linegate_engine_expected_seconds",
        "Expected time of the model's per-frame path (p99 at warm-up, or of the last 64 frames where larger): "
        "a frame with less time left is not started.",
        value=s[c.ENGINE_P99_US] / 1e6,
    ))
    out.append(GaugeMetricFamily(
        "linegate_deadline_budget_seconds", "deadline.budget_ms: each frame's time from acquisition to its verdict.",
        value=run.budget_ms / 1e3,
    ))
    out.append(GaugeMetricFamily("linegate_ring_slots", "Slots in the shared-memory frame ring.", value=run.ring_slots))
    out.append(GaugeMetricFamily(
        "linegate_ring_slots_used",
        "Ring slots holding a frame now (written, waiting or being decided); all used means the next frame is dropped.",
        value=run.ring_used,
    ))
    out.append(GaugeMetricFamily(
        "linegate_ready", "1 from READY (every worker started) until the stop begins.", value=int(run.ready)
    ))
    out.append(GaugeMetricFamily(
        "linegate_faults", "Reasons linegate is not inspecting right now (listed in STATUS and `linegate status`).",
        value=run.faults,
    ))
    out.append(GaugeMetricFamily(
        "linegate_active_recipe", "The recipe whose model runs (handshake); -1: the configured [model].",
        value=s[c.ACTIVE_RECIPE] - 1,
    ))
    out.append(InfoMetricFamily(
        "linegate_model", "The model deciding frames (model.id) and its backend.",
        value={"model": run.model_id, "backend": run.backend},
    ))
    out.append(InfoMetricFamily("linegate_build", "The linegate version running.", value={"version": version}))
    out += board_families(board)
    out += archive_families(run.archive)
    return out


def archive_families(stats: Mapping[str, int]) -> list[Metric]:
    """The reject image archive's outcomes and size; nothing when the archive is off."""
    if not stats:
        return []
    images = CounterMetricFamily(
        "linegate_archive_images",
        "Frames offered to the reject image archive, by outcome: written, or dropped because the queue was full "
        "(the disk too slow) or the write failed (disk full, read-only, ...); dropped images are never waited for.",
        labels=["outcome"],
    )
    images.add_metric(["written"], stats.get("written", 0))
    images.add_metric(["dropped_queue_full"], stats.get("dropped_queue_full", 0))
    images.add_metric(["dropped_write_error"], stats.get("dropped_write_error", 0))
    images.add_metric(["dropped_invalid"], stats.get("dropped_invalid", 0))
    return [
        images,
        GaugeMetricFamily("linegate_archive_bytes", "Bytes in the archive directory (images and metadata).",
                          value=stats.get("archive_bytes", 0)),
        CounterMetricFamily("linegate_archive_evicted", "Archive files removed to stay under max_bytes and max_age.",
                            value=stats.get("evicted", 0)),
    ]  # fmt: skip


def board_families(board: BoardReading) -> list[Metric]:
    """Temperatures, GPU load and power mode, each only where the board has it."""
    out: list[Metric] = []
    if board.zones:
        temps = GaugeMetricFamily(
            "linegate_thermal_zone_celsius", "Temperature of each thermal zone (/sys/class/thermal).",
            labels=["zone", "type"],
        )
        for z in board.zones:
            temps.add_metric([z.zone, z.type], z.celsius)
        out.append(temps)
    if board.gpu_load is not None:
        out.append(GaugeMetricFamily(
            "linegate_gpu_load_ratio", "Jetson GPU busy share over its last sampling window (0..1).",
            value=board.gpu_load,
        ))
    if board.power_mode is not None:
        out.append(InfoMetricFamily(
            "linegate_power_mode", "The Jetson's nvpmodel power mode (id and name).",
            value={"id": str(board.power_mode.id), "name": board.power_mode.name},
        ))
    return out


class LinegateCollector(Collector):
    """Reads everything at scrape time; registered in the metrics server's own registry."""

    def __init__(
        self,
        counters: SharedCounters,
        run: Callable[[], RunView],
        board: BoardStats | None = None,
        version: str = __version__,
        cameras: Sequence[tuple[str, SharedCounters]] = (),
    ) -> None:
        self.counters = counters
        self.cameras = cameras
        """With several cameras ([[cameras]]): each one's name and counters, the first being *counters*.
        Summed into the metrics, and per camera in the ``linegate_per_camera_*`` families."""
        self.run = run
        self.board = board if board is not None else BoardStats()
        self.version = version
        self._high_water = HighWater()

    def collect(self) -> Iterable[Metric]:
        bins = self.counters.latency_bins()
        more = Histograms.of(self.counters)
        # each camera's own counts (acquisition, PLC) live in its own counters: summed for the run
        per_camera = [(name, c.snapshot()) for name, c in self.cameras]
        snapshot = Snapshot.total([s for _, s in per_camera]) if per_camera else self.counters.snapshot()
        if per_camera:
            plc_write = [sum(b) for b in zip(*(c.plc_write_bins() for _, c in self.cameras), strict=True)]
            more = Histograms(more.stages, plc_write, more.classes)
        out = families(snapshot, bins, self.run(), self.board.read(), self.version, self._high_water, more)
        return [*out, *camera_families(per_camera)] if per_camera else out


CAMERA_METRICS: tuple[tuple[str, tuple[Count, ...], str, bool], ...] = (
    ("linegate_per_camera_frames", (Count.ACQUIRED,), "Frames this camera delivered into its ring.", True),
    ("linegate_per_camera_decided", (Count.DECIDED, Count.DROPPED), "This camera's frames that got a verdict.", True),
    ("linegate_per_camera_rejects", (Count.REJECTED,), "This camera's frames with a reject verdict.", True),
    ("linegate_per_camera_plc_delivered", (Count.PLC_DELIVERED,), "This camera's rejects delivered.", True),
    ("linegate_per_camera_plc_undelivered", (Count.PLC_UNDELIVERED, Count.PLC_QUEUE_FULL),
     "This camera's rejects that did not reach the PLC (pull those parts).", True),
    ("linegate_per_camera_down", (Count.CAMERA_DOWN,), "1 while this camera is lost and being reopened.", False),
    ("linegate_per_camera_plc_connected", (Count.PLC_CONNECTED,), "1 while this camera's PLC link is up.", False),
    ("linegate_per_camera_inspecting", (Count.INSPECTING,), "1 while this camera inspects (fault output off).", False),
)  # fmt: skip
"""With several cameras: (name, counters summed, help, is a counter) of each per-camera family."""


def camera_families(cameras: Sequence[tuple[str, Snapshot]]) -> list[Metric]:
    """The ``linegate_per_camera_*`` families, one sample per camera (label ``camera``)."""
    out: list[Metric] = []
    for name, counts, doc, counter in CAMERA_METRICS:
        family: CounterMetricFamily | GaugeMetricFamily
        family = (CounterMetricFamily if counter else GaugeMetricFamily)(name, doc, labels=["camera"])
        for camera, s in cameras:
            family.add_metric([camera], sum(s[c] for c in counts))
        out.append(family)
    return out


__all__ = [
    "BUCKETS",
    "OTHER_CLASS",
    "HighWater",
    "Histograms",
    "LinegateCollector",
    "RunView",
    "camera_families",
    "families",
    "latency_buckets",
]
