"""``linegate bench``: the quick run end to end, and the pure parts (percentiles, table, rates, matching)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from linegate.bench.floor import engine_floor
from linegate.bench.records import Frame, plc_times
from linegate.bench.report import COLUMNS, floor_shares, notes, table
from linegate.bench.runner import STAGES, ScenarioResult, Side, late, shortfall
from linegate.bench.scenarios import MAX_SCENARIO_S, Scenario, capped_frames, model_spec, plan, with_model
from linegate.bench.stats import Dist, fmt_ms, fmt_share
from linegate.config import Config

PNG = b"\x89PNG\r\n\x1a\n"
NUMBER = re.compile(r"^-?\d+(\.\d+)?%?$")


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


# --- the quick run ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.peer
def test_quick_run_prints_the_table_and_writes_results_and_plots(tmp_path: Path) -> None:
    """linegate bench --quick: three rows with numbers, counts that reconcile, every reject at the PLC once."""
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "linegate", "bench", "--quick", "--frames", "300", "--out", str(out)],
                          capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [cells(line) for line in proc.stdout.splitlines() if line.startswith("| demo |")]
    assert [r[3] for r in rows] == ["linegate", "naive", "floor"]
    for row in rows:
        assert len(row) == COLUMNS and row[:3] == ["demo", "sustainable", "100"]
        assert all(NUMBER.match(c) for c in [row[4], row[6], row[8], *row[11:15]]), row  # frames .. verdict times
    for row in rows[:2]:  # linegate and naive: achieved, share, misses, lost, coil ON times, rejects at the PLC
        assert all(NUMBER.match(c) for c in [row[5], row[7], *row[9:11], *row[15:19]]), row
        assert re.fullmatch(r"(\d+)/\1", row[19]), row

    data = json.loads((out / "results.json").read_text())
    assert data["command"].startswith("linegate bench --quick --frames 300 --models demo --out ")
    (scenario,) = data["scenarios"]
    lg, naive, floor = scenario["sides"]
    assert (lg["side"], naive["side"], floor["side"]) == ("linegate", "naive", "floor")
    assert lg["frames"] == 300 and lg["by_model"] + lg["fail_safe"] == lg["frames"]
    assert lg["problems"] == [] and naive["problems"] == []
    assert lg["rejects"] > 0 and lg["at_plc"] == lg["rejects"] and lg["plc_duplicates"] == 0
    assert lg["verdict"]["n"] == lg["frames"] and lg["coil"]["n"] == lg["at_plc"]
    assert naive["frames"] == 300 and naive["at_plc"] == naive["rejects"]
    assert floor["frames"] == floor["verdict"]["n"] > 0
    md = (out / "results.md").read_text()
    assert data["command"] in md and "| demo | sustainable | 100 | linegate |" in md
    for name in ("latency-demo-sustainable.png", "stages-demo-sustainable.png"):
        png = (out / name).read_bytes()
        assert png.startswith(PNG) and len(png) > 5000, name
        assert png.find(b"IEND") > 0


# --- pure parts ---------------------------------------------------------------------------------------------


def test_dist_percentiles_and_cells() -> None:
    d = Dist.of(list(range(1, 1001)))  # 1 .. 1000 ms
    assert d.n == 1000 and d.p50 == pytest.approx(500.5) and d.max == 1000.0
    assert d.p99 == pytest.approx(np.percentile(np.arange(1, 1001), 99))
    assert d.p999 == pytest.approx(999.001)
    assert d.cells() == ["500.5", "990.0", "999.0", "1000.0"]
    assert Dist.of([]).cells() == ["-"] * 4 and Dist.of([]).n == 0


def test_number_formats() -> None:
    assert [fmt_ms(v) for v in (0.01234, 9.9994, 12.345, 123.45, None)] == ["0.012", "9.999", "12.35", "123.5", "-"]
    assert fmt_share(1, 3) == "33.3%" and fmt_share(0, 0) == "-"


def side(name: str, **kw: object) -> Side:
    base: dict[str, object] = {"frames": 10, "by_model": 9, "camera_frames": 10, "throughput_fps": 99.5,
                               "achieved_fps": 100.0, "verdict": Dist.of([1.0, 2.0])}
    base.update(kw)
    return Side(name, **base)  # type: ignore[arg-type]


def test_table_rows_columns_and_skipped_model() -> None:
    r = ScenarioResult(Scenario("demo", "overload", 200.0, 10, "capped"),
                       [side("linegate", coil=Dist.of([3.0]), rejects=1, at_plc=1, deadline_misses=1),
                        side("naive", by_model=10, lost=2, camera_frames=12), side("floor", by_model=10)], 50.0)
    lines = table([r], {"resnet18": "skipped: x.onnx missing, see engines/resnet18/README.md"}).splitlines()
    assert len(lines) == 2 + 3 + 1 and all(len(cells(line)) == COLUMNS for line in lines)
    head = cells(lines[0])
    assert head[11:15] == ["in hand -> verdict p50", "p99", "p99.9", "max"] and head[15] == "in hand -> coil ON p50"
    lg, naive, floor, skipped = (cells(line) for line in lines[2:])
    assert lg[:11] == ["demo", "overload", "200", "linegate", "10", "100.0", "9", "90.0%", "99.5", "1", "0"]
    assert lg[11:13] == ["1.500", "1.990"] and lg[15] == "3.000" and lg[19] == "1/1"
    assert naive[7] == "83.3%" and naive[10] == "2" and naive[15:19] == ["-"] * 4
    assert floor[5] == floor[7] == floor[9] == floor[10] == floor[19] == "-"
    assert skipped[0] == "resnet18" and skipped[3].startswith("skipped: ") and set(skipped[4:]) == {"-"}


def test_rates_from_the_engine_floor() -> None:
    demo = plan("demo", 0.0001, 10_000.0, 200.0, 2000)
    assert [(s.load, s.fps) for s in demo] == [("sustainable", 100.0), ("overload", 200.0)]
    assert "capped at the camera's max 200 fps" in demo[1].note
    r18 = plan("resnet18", 0.035, 25.0, 200.0, 2000)
    assert r18[0].fps == pytest.approx(0.5 / 0.035, abs=0.05) and r18[1].fps == 62.5
    assert r18[0].frames == capped_frames(2000, r18[0].fps) <= r18[0].fps * MAX_SCENARIO_S + 1
    assert [s.load for s in plan("demo", 0.0001, 10_000.0, 200.0, 300, quick=True)] == ["sustainable"]
    assert capped_frames(300, 1.0) == 100 and capped_frames(50, 1.0) == 50


def test_the_parallel_floor_is_the_intervals_between_results(demo_config: Config) -> None:
    """model.parallel: the floor keeps both sessions busy and returns one interval per result (after
    the warm ones), which add up to the time the runs took: frames per second, not one run's time."""
    import time

    cfg = with_model(demo_config, parallel=2)
    t0 = time.monotonic_ns()
    intervals = engine_floor(cfg, 200, warm=10)
    wall = time.monotonic_ns() - t0
    assert intervals.size == 200 and (intervals >= 0).all()
    assert 0 < intervals.sum() < wall


def test_missing_resnet18_says_where_to_look(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("linegate.bench.scenarios.CHECKOUT", tmp_path)
    spec = model_spec("resnet18")
    assert spec.config is None
    assert spec.skipped == f"skipped: {tmp_path}/engines/resnet18/resnet18.onnx missing, see engines/resnet18/README.md"
    assert model_spec("demo").config is not None


def test_plc_times_by_part_id_and_by_send_order() -> None:
    frames = [Frame(1, 1, 0, 10, True, t_sent=20), Frame(2, 2, 100, 110, False), Frame(3, 3, 200, 210, True, 220)]
    by_id = [{"part_id": 3, "t_ns": 300}, {"part_id": 1, "t_ns": 30}, {"part_id": 1, "t_ns": 40}]
    assert plc_times(frames, by_id) == {1: 30, 3: 300}
    no_id = [{"part_id": 0, "t_ns": 25}, {"part_id": 0, "t_ns": 230}]
    assert plc_times(frames, no_id) == {1: 25, 3: 230}


def test_naive_deadline_misses_count_from_in_hand() -> None:
    frames = [Frame(i, i, i * 10_000_000, i * 10_000_000 + ms * 1_000_000, False) for i, ms in enumerate((1, 49, 51))]
    assert late(frames, 50.0) == 1 and late([], 50.0) == 0


def test_shortfall_charges_a_side_the_camera_waited_for() -> None:
    """The simulated camera slows to a slow reader: frames at the rate set that were never taken in count as lost."""
    at = [Frame(i, i, i * 10_000_000, i * 10_000_000, False) for i in range(11)]  # 100 fps over 100 ms
    assert shortfall(at, 100.0) == 0 and shortfall(at, 102.0) == 0  # within 5% of the rate set
    assert shortfall(at, 200.0) == 10  # 21 frames at 200 fps over 100 ms, 11 taken in
    assert shortfall(at[:1], 200.0) == 0


def test_stage_columns_are_linegates_record_fields() -> None:
    source = (Path(__file__).resolve().parents[2] / "linegate" / "pipeline" / "infer.py").read_text()
    assert all(f'"{stage}"' in source for stage in STAGES)


def test_overload_shares_compare_each_side_with_the_floor_at_its_batch_size() -> None:
    """The overload goal's figure: by-model fps / bare engine fps, one-frame sides against the
    one-frame floor, the batching side against the floor at its batch size; only where that floor
    is slower than the camera."""
    sides = [side("linegate oldest_first", throughput_fps=27.0), side("linegate batch 4", throughput_fps=36.0),
             side("linegate parallel 2", throughput_fps=38.0), side("linegate parallel 1", throughput_fps=30.0),
             side("naive", throughput_fps=33.0),
             side("floor", throughput_fps=40.0), side("floor batch 4", throughput_fps=45.0),
             side("floor parallel 2", throughput_fps=50.0)]
    assert floor_shares(sides, 100.0) == [
        "linegate oldest_first: decided by the model 27.0 fps = 0.68 x the floor's 40.0 fps",
        "linegate batch 4: decided by the model 36.0 fps = 0.80 x the floor batch 4's 45.0 fps",
        "linegate parallel 2: decided by the model 38.0 fps = 0.76 x the floor parallel 2's 50.0 fps",
        "linegate parallel 1: decided by the model 30.0 fps = 0.75 x the floor's 40.0 fps",  # one at a time
    ]
    # An engine faster than the camera at a batch size: the camera bounds that side, no share.
    assert floor_shares(sides, 42.0) == [floor_shares(sides, 100.0)[i] for i in (0, 3)]


def test_overload_shares_use_the_engine_measured_beside_each_side_and_flag_drift() -> None:
    """Where the engine alone was timed right before and after a side, the share is against their
    mean, and a machine that sped up or slowed down by more than 15% meanwhile is named."""
    steady = side("linegate oldest_first", throughput_fps=36.0)
    steady.floor_beside = (39.0, 41.0)
    drifted = side("linegate batch 4", throughput_fps=36.0)
    drifted.floor_beside = (30.0, 50.0)
    sides = [steady, drifted, side("floor", throughput_fps=80.0), side("floor batch 4", throughput_fps=90.0)]
    assert floor_shares(sides, 100.0) == [
        "linegate oldest_first: decided by the model 36.0 fps = 0.90 x the engine alone at batch 1 beside it "
        "(39.0 fps before, 41.0 after)",
        "linegate batch 4: decided by the model 36.0 fps = 0.90 x the engine alone at batch 4 beside it "
        "(30.0 fps before, 50.0 after); the machine's speed drifted across this side: an unreliable share",
    ]


def test_a_fixed_batch_model_gets_a_checked_batch_dynamic_copy(tmp_path: Path) -> None:
    """The demo model (batch fixed at 1) gets a copy whose batch dimension is symbolic and whose
    rows match single runs; a model already dynamic is used as it is."""
    pytest.importorskip("onnx", reason="the onnx package makes the copy")
    import onnxruntime as ort

    from linegate.bench.batch_model import batch_dynamic
    from linegate.config import load_config
    from linegate.demo.runner import DEMO_CONFIG

    model = load_config(DEMO_CONFIG).model.path
    copy = batch_dynamic(model, tmp_path)
    assert copy != model
    assert ort.InferenceSession(str(copy)).get_inputs()[0].shape[0] == "batch"
    assert batch_dynamic(copy, tmp_path) == copy


def test_the_batching_side_is_validated_as_a_configuration_file_is(tmp_path: Path) -> None:
    """The bench's batch-4 configuration goes through linegate's own validation: the demo batches
    (8 ring slots); with 6 slots a batch of 4 would take more than half the ring, so the side is
    left out with linegate's own reason instead of running a configuration linegate refuses."""
    pytest.importorskip("onnx", reason="the onnx package makes the batch-dynamic copy")
    from linegate.bench.runner import with_batching
    from linegate.config import load_config
    from linegate.demo.runner import DEMO_CONFIG

    demo = load_config(DEMO_CONFIG)
    batched, why = with_batching(demo, 4, tmp_path)
    assert why == "" and batched is not None
    assert batched.model.max_batch == 4 and batched.deadline.backlog == "oldest_first"
    small_ring = demo.model_copy(update={"ring": demo.ring.model_copy(update={"slots": 6})})
    batched, why = with_batching(small_ring, 4, tmp_path)
    assert batched is None and "model.max_batch = 4" in why and "ring.slots = 6" in why, why


def test_notes_split_a_linegate_sides_fail_safe_verdicts_by_why() -> None:
    """Dropped frames, frames not started because they could no longer make it, frames the model
    answered after their deadline (what bounds latency) and the rest (engine errors, incomplete
    frames, ...) are told apart."""
    lg = side("linegate oldest_first", frames=100, by_model=80, dropped=10, deadline_misses=5, answered_late=2)
    r = ScenarioResult(Scenario("demo", "overload", 200.0, 100), [lg], 50.0)
    assert ("  - linegate oldest_first: fail-safe 20 (dropped 10, not started in time 3, answered late 2, "
            "other 5), PLC undelivered 0") in notes([r])


def test_sessions_at_load_is_what_auto_gives_the_engine(demo_config: Config) -> None:
    """The overload scenario's extra side is the parallel setting the engine does not run with:
    "auto" gives the demo model (well under 2 ms a run) one session, a number is kept."""
    from linegate.bench.floor import sessions_at_load

    assert sessions_at_load(demo_config) == 1
    assert sessions_at_load(with_model(demo_config, parallel=2)) == 2
